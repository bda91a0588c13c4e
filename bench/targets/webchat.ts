import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { Agent, type IncomingMessage, request } from "node:http";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { type FakeOpenAi, startFakeOpenAi } from "../../test/support/fake-openai.js";
import type { BenchTarget, DeliveredReply, TargetSettings } from "./target.js";

/** The built CLI the gateway child runs; the bench needs `npx tsc -p .` first, like the command itself. */
export const BUILT_CLI = join(PACKAGE_ROOT, "dist", "src", "cli.js");

const CLOCK_TICKS = 100;

function procCpuSeconds(pid: number): number {
  try {
    // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

function procRssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function spawnGateway(env: NodeJS.ProcessEnv, nodeArgs: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [...nodeArgs, BUILT_CLI, "gateway"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString("utf8");
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not become ready within 15 s: ${stderr}`)), 15_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited with code ${code} before it was ready: ${stderr}`));
    });
    lines.on("line", (line) => {
      if (!line.includes("zeptoclaw gateway ready")) return;
      try {
        const p = (JSON.parse(line) as { port?: number }).port;
        if (typeof p === "number") {
          clearTimeout(timer);
          resolve(p);
        }
      } catch {
        // Not a JSON log line: keep reading.
      }
    });
  });
  // Keep draining the pipes so the child never blocks on a full one.
  lines.on("line", () => undefined);
  child.removeAllListeners("exit");
  return { child, port };
}

/** Splits an SSE byte stream into `reply` events. */
function readReplies(res: IncomingMessage, user: number, emit: (r: DeliveredReply) => void): void {
  let buf = "";
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => {
    buf += chunk;
    let end: number;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      if (!frame.startsWith("event: reply\n")) continue;
      const at = performance.now();
      const data = JSON.parse(frame.slice(frame.indexOf("data: ") + 6)) as { id: string; status: string };
      emit({ user, id: data.id, at, isError: data.status === "error" });
    }
  });
}

/**
 * The web chat path, as a browser uses it: the gateway runs in a child process (so its RSS
 * and CPU are measured apart from the load generator), each user holds one SSE stream and
 * posts over keep-alive connections; the fake LLM answers over HTTP from this process.
 */
export async function startWebchatTarget(s: TargetSettings): Promise<BenchTarget> {
  const llm: FakeOpenAi = await startFakeOpenAi({ latencyMs: s.llmLatencyMs, record: false });
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OPENAI_API_KEY;
  delete env.OPENAI_BASE_URL;
  Object.assign(env, {
    ZEPTOCLAW_HTTP_PORT: "0",
    ZEPTOCLAW_HTTP_HOST: "127.0.0.1",
    ZEPTOCLAW_SESSION_STORE: `sqlite://${join(s.dir, "sessions.sqlite")}`,
    ZEPTOCLAW_LLM_BASE_URL: llm.url,
    ZEPTOCLAW_LLM_API_KEY: "sk-bench-not-a-secret",
    ZEPTOCLAW_LLM_REQUESTS_PER_MINUTE: "0",
    // The bench measures the pipeline, not the per-user flood limit.
    ZEPTOCLAW_LIMITS_MESSAGES_PER_MINUTE: "0",
    // The provider's concurrency is the provider's business: match the bus, so the bench measures the pipeline.
    ZEPTOCLAW_LLM_MAX_CONCURRENCY: "256",
    ZEPTOCLAW_BUS_BUFFER_SIZE: String(s.busBufferSize),
    ZEPTOCLAW_LOG_LEVEL: "info",
  });
  let gateway: { child: ChildProcess; port: number };
  try {
    gateway = await spawnGateway(env, s.gatewayNodeArgs ?? []);
  } catch (err) {
    await llm.close();
    throw err;
  }
  const { child, port } = gateway;
  const pid = child.pid as number;
  const posts = new Agent({ keepAlive: true, maxSockets: 128 });
  const streams = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
  const open = new Set<IncomingMessage>();
  const cpuStart = procCpuSeconds(pid);
  const loadCpuStart = process.cpuUsage();

  const target: BenchTarget = {
    onReply: () => undefined,
    send(user, text) {
      const body = JSON.stringify({ user: `bench-${user}`, text });
      return new Promise<string>((resolve, reject) => {
        const req = request(
          { host: "127.0.0.1", port, method: "POST", path: "/api/messages", agent: posts, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
          (res) => {
            let data = "";
            res.setEncoding("utf8");
            res.on("data", (c: string) => (data += c));
            res.on("end", () => {
              if (res.statusCode === 202) resolve((JSON.parse(data) as { id: string }).id);
              else reject(new Error(`POST /api/messages: ${res.statusCode} ${data}`));
            });
            res.on("error", reject);
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    },
    llmMs: () => s.llmLatencyMs,
    rssBytes: () => procRssBytes(pid),
    cpuSeconds: () => procCpuSeconds(pid) - cpuStart,
    async settle() {
      // The child cannot be asked to collect garbage: give its flush timer and GC a moment.
      await new Promise((r) => setTimeout(r, 500));
    },
    details() {
      const u = process.cpuUsage(loadCpuStart);
      return { gateway_process: "child", gateway_pid: pid, loadgen_and_fake_llm_cpu_s: Math.round((u.user + u.system) / 1e4) / 100, fake_llm_requests: llm.count };
    },
    async close() {
      for (const res of open) res.destroy();
      posts.destroy();
      streams.destroy();
      const exited = new Promise<void>((resolve) => {
        if (child.exitCode !== null) resolve();
        else child.once("exit", () => resolve());
      });
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
      await llm.close();
    },
  };

  const openStream = (user: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: `/api/stream?user=bench-${user}`, agent: streams }, (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`GET /api/stream: ${res.statusCode}`));
          res.resume();
          return;
        }
        open.add(res);
        res.once("data", () => resolve());
        readReplies(res, user, (r) => target.onReply(r));
      });
      req.on("error", reject);
      req.end();
    });
  try {
    // Every user listens before anyone speaks, a few hundred connections at a time.
    for (let u = 0; u < s.users; u += 200) {
      const batch: Promise<void>[] = [];
      for (let v = u; v < Math.min(s.users, u + 200); v++) batch.push(openStream(v));
      await Promise.all(batch);
    }
  } catch (err) {
    await target.close();
    throw err;
  }
  return target;
}

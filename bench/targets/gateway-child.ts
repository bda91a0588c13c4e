import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { ALIASES } from "../../src/config/env.js";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { onInterrupt } from "../interrupt.js";
import type { FakeOpenAi } from "../../test/support/fake-openai.js";
import type { BenchTarget, TargetSettings } from "./target.js";

/** The built, bundled CLI the gateway child runs (what `npm start` runs); `npm run build` makes it. */
export const BUILT_CLI = join(PACKAGE_ROOT, "dist", "app", "cli.js");

/** `--bare-gateway`: the stand-in that does only a web chat message's HTTP legs (bench/bare-gateway.ts). */
export const BARE_GATEWAY = join(PACKAGE_ROOT, "dist", "bench", "bare-gateway.js");

const CLOCK_TICKS = 100;

/** CPU seconds (user + system) used by process `pid`, from /proc; 0 when it cannot be read. */
export function procCpuSeconds(pid: number): number {
  try {
    // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Resident memory of process `pid` in bytes, from /proc; 0 when it cannot be read. */
export function procRssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * The environment every bench gateway child runs with: this process's, minus every variable
 * the gateway reads as config (an operator's shell may export a real bot token, an enabled
 * channel or a production store: the child must reach none of them), plus the overrides that
 * make it measure the pipeline (fake LLM, no flood limit, a bus buffer that never refuses the
 * bench's own users), then `extra`.
 */
export function gatewayEnv(s: TargetSettings, llm: FakeOpenAi, extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  const aliases = new Set(ALIASES.map(([name]) => name));
  for (const name of Object.keys(env)) if (name.startsWith("ZEPTOCLAW_") || aliases.has(name)) delete env[name];
  return Object.assign(env, {
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
    ...extra,
  });
}

/** A gateway child that said it is ready. */
export interface GatewayChild {
  child: ChildProcess;
  pid: number;
  port: number;
  /** Sends SIGTERM, SIGKILL after 15 s, and resolves once the child exited. */
  stop(): Promise<void>;
}

/**
 * Starts `node <nodeArgs> dist/app/cli.js gateway` (or another `entry`) with `env` and resolves
 * once it logs "zeptoclaw gateway ready"; every stdout line also goes to `onLine` (e.g. a scan
 * for secrets), and all of its output is appended to `logFile` when one is given.
 */
export async function spawnGateway(
  env: NodeJS.ProcessEnv,
  nodeArgs: string[],
  onLine?: (line: string) => void,
  entry: string[] = [BUILT_CLI, "gateway"],
  logFile?: string,
): Promise<GatewayChild> {
  const child = spawn(process.execPath, [...nodeArgs, ...entry], { env, stdio: ["ignore", "pipe", "pipe"] });
  // Its data is a throwaway temp folder: nothing to drain if the bench itself is stopped.
  const forget = onInterrupt(() => child.kill("SIGKILL"));
  child.once("exit", forget);
  const log = logFile === undefined ? undefined : createWriteStream(logFile, { flags: "a" });
  if (log) {
    child.once("close", () => log.end());
    // A log that cannot be written (the disk filled) loses the log, not the run.
    let reported = false;
    log.on("error", (err: NodeJS.ErrnoException) => {
      if (!reported) process.stderr.write(`zeptoclaw bench: --gateway-log: could not write ${logFile}: ${err.code ?? err.message}\n`);
      reported = true;
    });
  }
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    const text = d.toString("utf8");
    onLine?.(text);
    log?.write(d);
    if (stderr.length < 4096) stderr += text;
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  // Keep draining the pipes so the child never blocks on a full one.
  lines.on("line", (line) => {
    onLine?.(line);
    log?.write(`${line}\n`);
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not become ready within 15 s: ${stderr}`)), 15_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited with code ${code} before it was ready: ${stderr}`));
    });
    const onReady = (line: string): void => {
      if (!line.includes("zeptoclaw gateway ready")) return;
      try {
        const p = (JSON.parse(line) as { port?: number }).port;
        if (typeof p === "number") {
          clearTimeout(timer);
          lines.off("line", onReady);
          resolve(p);
        }
      } catch {
        // Not a JSON log line: keep reading.
      }
    };
    lines.on("line", onReady);
  }).catch((err: unknown) => {
    child.kill("SIGKILL");
    throw err;
  });
  child.removeAllListeners("exit");
  return {
    child,
    pid: child.pid as number,
    port,
    async stop() {
      const exited = new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once("exit", () => resolve());
      });
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The readings every child-process target gives the runner: the child's RSS and CPU since now, the fake LLM's latency, and a settle that can only wait. */
export function childReadings(pid: number, llmLatencyMs: number): Pick<BenchTarget, "llmMs" | "rssBytes" | "cpuSeconds" | "settle"> {
  const cpuStart = procCpuSeconds(pid);
  return {
    llmMs: () => llmLatencyMs,
    rssBytes: () => procRssBytes(pid),
    cpuSeconds: () => procCpuSeconds(pid) - cpuStart,
    async settle() {
      // The child cannot be asked to collect garbage: give its flush timer and GC a moment.
      await new Promise((r) => setTimeout(r, 500));
    },
  };
}

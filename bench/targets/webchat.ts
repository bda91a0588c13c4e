import { Agent, type IncomingMessage, request } from "node:http";
import { Pool } from "undici";
import { type FakeOpenAi, startFakeOpenAi } from "../../test/support/fake-openai.js";
import { BARE_GATEWAY, childReadings, type GatewayChild, gatewayEnv, spawnGateway } from "./gateway-child.js";
import type { BenchTarget, DeliveredReply, TargetSettings } from "./target.js";

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
  const env = gatewayEnv(s, llm, {});
  let gateway: GatewayChild;
  try {
    gateway = await spawnGateway(env, s.gatewayNodeArgs ?? [], undefined, s.bareGateway ? [BARE_GATEWAY] : undefined, s.gatewayLog);
  } catch (err) {
    await llm.close();
    throw err;
  }
  const { pid, port } = gateway;
  // Posts go through undici's pool: a third to a half of the CPU per request of node:http's client,
  // which leaves that much more of this machine to the gateway under test. It honours the
  // gateway's "Keep-Alive: timeout=5" and drops an idle connection before the gateway
  // would, rather than post on a connection being closed and count the reset as refused.
  const posts = new Pool(`http://127.0.0.1:${port}`, { connections: 128, keepAliveTimeoutThreshold: 1_000 });
  const streams = new Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
  const open = new Set<IncomingMessage>();

  const target: BenchTarget = {
    onReply: () => undefined,
    loadProcess: "load generator + fake LLM",
    async send(user, text) {
      const res = await posts.request({ path: "/api/messages", method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user: `bench-${user}`, text }) });
      const data = await res.body.text();
      if (res.statusCode !== 202) throw new Error(`POST /api/messages: ${res.statusCode} ${data}`);
      return (JSON.parse(data) as { id: string }).id;
    },
    ...childReadings(pid, s.llmLatencyMs),
    details() {
      return { gateway_process: "child", gateway_pid: pid, fake_llm_requests: llm.count };
    },
    async close() {
      for (const res of open) res.destroy();
      await posts.destroy();
      streams.destroy();
      await gateway.stop();
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

import { setMaxListeners } from "node:events";
import { join } from "node:path";
import { Agent as HttpAgent, request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { type ChildGateway, startChildGateway } from "../support/child-gateway.js";
import { startFakeOpenAi } from "../support/fake-openai.js";
import { tempDir } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Counts SSE `reply` events per message id for one user, until aborted. */
function watchReplies(base: string, user: string, counts: Map<string, number>, signal: AbortSignal): void {
  const req = request(`${base}/api/stream?user=${user}`, { signal }, (res) => {
    let buf = "";
    res.on("data", (d: Buffer) => {
      buf += d.toString();
      let end: number;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const m = /^event: reply\ndata: (.*)$/m.exec(frame);
        if (m) {
          const id = (JSON.parse(m[1] as string) as { id: string }).id;
          counts.set(id, (counts.get(id) ?? 0) + 1);
        }
      }
    });
    res.on("error", () => undefined);
  });
  req.on("error", () => undefined);
  req.end();
}

function post(base: string, agent: HttpAgent, user: string, text: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ user, text });
    const req = request(`${base}/api/messages`, { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      let data = "";
      res.on("data", (d: Buffer) => (data += d.toString()));
      res.on("end", () => resolve(res.statusCode === 202 ? (JSON.parse(data) as { id: string }).id : undefined));
      res.on("error", () => resolve(undefined));
    });
    req.on("error", () => resolve(undefined));
    req.end(body);
  });
}

describe("crash recovery", () => {
  it("answers every accepted message exactly once after kill -9 under load from 100 users", async () => {
    const llm = await startFakeOpenAi({ latencyMs: 30 });
    cleanups.push(() => llm.close());
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const env = {
      ZEPTOCLAW_HTTP_PORT: "0",
      ZEPTOCLAW_LLM_BASE_URL: llm.url,
      ZEPTOCLAW_LLM_REQUESTS_PER_MINUTE: "0",
      ZEPTOCLAW_LIMITS_MESSAGES_PER_MINUTE: "0",
      ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir.dir, "s.sqlite")}`,
    };
    const first: ChildGateway = await startChildGateway([], env);
    cleanups.push(() => first.child.kill("SIGKILL"));
    const users = Array.from({ length: 100 }, (_, i) => `user${i}`);
    const before = new Map<string, number>();
    const watch1 = new AbortController();
    // One signal closes all 100 streams: 100 listeners on it are intended.
    setMaxListeners(0, watch1.signal);
    for (const u of users) watchReplies(first.base, u, before, watch1.signal);

    const agent = new HttpAgent({ keepAlive: true, maxSockets: 50 });
    cleanups.push(() => agent.destroy());
    const accepted = new Map<string, string>();
    let killed = false;
    const senders = users.map(async (u) => {
      for (let n = 0; n < 40 && !killed; n++) {
        const text = `${u} message ${n}`;
        const id = await post(first.base, agent, u, text);
        if (id) accepted.set(id, text);
      }
    });
    // Kill once a good share of messages is in: some answered, some queued, some mid-answer.
    const deadline = Date.now() + 10_000;
    while (accepted.size < 600 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    first.child.kill("SIGKILL");
    killed = true;
    await first.exited;
    await Promise.all(senders);
    watch1.abort();
    const answeredBefore = new Set(before.keys());
    expect(accepted.size).toBeGreaterThanOrEqual(600);
    // The crash must have caught work in flight, or this test proves nothing.
    expect([...accepted.keys()].some((id) => !answeredBefore.has(id))).toBe(true);

    const second = await startChildGateway([], env);
    cleanups.push(() => second.child.kill("SIGKILL"));
    const recovery = second.lines.map((l) => JSON.parse(l) as { msg: string; rerun?: number }).find((l) => l.msg.includes("recovering"));
    expect(recovery?.rerun).toBeGreaterThan(0);
    const after = new Map<string, number>();
    const watch2 = new AbortController();
    setMaxListeners(0, watch2.signal);
    cleanups.push(() => watch2.abort());
    for (const u of users) watchReplies(second.base, u, after, watch2.signal);

    const pending = new Set(accepted.keys());
    const until = Date.now() + 30_000;
    while (pending.size > 0 && Date.now() < until) {
      for (const id of [...pending].slice(0, 200)) {
        const res = await fetch(`${second.base}/api/messages/${encodeURIComponent(id)}`);
        const body = (await res.json()) as { status: string; reply?: string };
        if (body.status !== "pending") {
          expect(body).toEqual({ status: "done", reply: `echo: ${accepted.get(id)}` });
          pending.delete(id);
        }
      }
    }
    expect(pending.size).toBe(0);
    // Exactly once: no reply was pushed twice, and no reply finished before the crash went to the LLM again.
    for (const id of accepted.keys()) expect((before.get(id) ?? 0) + (after.get(id) ?? 0)).toBeLessThanOrEqual(1);
    const llmCalls = new Map<string, number>();
    for (const r of llm.requests) {
      const last = r.messages.at(-1)?.content ?? "";
      llmCalls.set(last, (llmCalls.get(last) ?? 0) + 1);
    }
    for (const id of answeredBefore) {
      if (accepted.has(id)) expect(llmCalls.get(accepted.get(id) as string)).toBe(1);
    }
  }, 60_000);
});

import { afterEach, describe, expect, it } from "vitest";
import { startTestGateway, tempDir, type TestGateway } from "../support/harness.js";

let t: TestGateway | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function raw(path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${t!.base}${path}`, init);
  const text = await res.text();
  return { status: res.status, body: text.startsWith("{") ? (JSON.parse(text) as Record<string, unknown>) : { text } };
}

const json = { "content-type": "application/json" };

describe("web chat end to end", () => {
  it("answers a posted message with the LLM's reply", async () => {
    t = await startTestGateway();
    const { status, body } = await t.post("alice", "hello there");
    expect(status).toBe(202);
    expect(body.id).toMatch(/^webchat:/);
    const result = await t.result(body.id as string);
    expect(result).toEqual({ status: "done", reply: "echo: hello there" });
    expect(t.llm.requests[0]?.messages.at(-1)).toEqual({ role: "user", content: "hello there" });
    expect(t.llm.requests[0]?.authorization).toBe("Bearer sk-test-secret-key-123456");
  });

  it("gives each message an unguessable id that sorts after the ids posted before it", async () => {
    t = await startTestGateway();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await t.post("alice", `message ${i}`)).body.id as string);
      await new Promise((r) => setTimeout(r, 3));
    }
    // The time in front keeps the journal's unique index growing at its edge; the UUID
    // after it is what keeps a result private to whoever holds its id.
    for (const id of ids) expect(id).toMatch(/^webchat:[0-9a-f]{12}-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids.map((id) => id.slice(-36))).size).toBe(3);
  });

  it("answers 200 messages from 20 users posted at once, each user's in order", async () => {
    t = await startTestGateway({ llm: { latencyMs: 5 } });
    const posts: Promise<{ user: string; n: number; id: string }>[] = [];
    for (let n = 0; n < 10; n++) {
      for (let u = 0; u < 20; u++) {
        // Each user's messages are posted in order; users interleave.
        posts.push(t.post(`user${u}`, `msg ${n}`).then((r) => ({ user: `user${u}`, n, id: r.body.id as string })));
      }
    }
    const accepted = await Promise.all(posts);
    expect(accepted.every((a) => a.id)).toBe(true);
    const results = await Promise.all(accepted.map((a) => t!.result(a.id)));
    expect(results.filter((r) => r.status === "done")).toHaveLength(200);
    // Per-user order: each user's history, as the LLM saw it last, lists its messages in order.
    for (let u = 0; u < 20; u++) {
      const history = await t.gw.stores.sessions.load(`webchat:user${u}`);
      expect(history.filter((m) => m.role === "user").map((m) => m.content)).toEqual(Array.from({ length: 10 }, (_, n) => `msg ${n}`));
    }
  });

  it("streams a reply in batched token events, and sends none for a reply complete at once", async () => {
    const answer = "one two three four five six seven";
    t = await startTestGateway({ llm: { chunkSize: 3, chunkDelayMs: 15, answer: () => answer } });
    const events: { event: string; data: { id: string; text: string } }[] = [];
    const res = await fetch(`${t.base}/api/stream?user=sse`);
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    const replies = async (n: number): Promise<void> => {
      for (let i = 0; i < 200 && events.filter((e) => e.event === "reply").length < n; i++) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        for (let end = buf.indexOf("\n\n"); end >= 0; end = buf.indexOf("\n\n")) {
          const m = /^event: (\w+)\ndata: (.*)$/s.exec(buf.slice(0, end));
          buf = buf.slice(end + 2);
          if (m) events.push({ event: m[1]!, data: JSON.parse(m[2]!) as { id: string; text: string } });
        }
      }
    };
    const slow = (await t.post("sse", "stream please")).body.id as string;
    await replies(1);
    const tokens = events.filter((e) => e.event === "token" && e.data.id === slow).map((e) => e.data.text);
    // 12 chunks, 15 ms apart: batched into fewer events, arriving in order as a prefix of the answer.
    expect(tokens.length).toBeGreaterThan(1);
    expect(tokens.length).toBeLessThan(12);
    expect(answer.startsWith(tokens.join(""))).toBe(true);
    expect(events.at(-1)).toEqual({ event: "reply", data: { id: slow, status: "done", text: answer } });

    t.llm.options.chunkDelayMs = 0;
    const fast = (await t.post("sse", "all at once")).body.id as string;
    await replies(2);
    expect(events.filter((e) => e.data.id === fast).map((e) => e.event)).toEqual(["reply"]);
    await reader.cancel();
  });

  it("answers 503 'busy, try again' when the bus is full", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_BUS_BUFFER_SIZE: "2", ZEPTOCLAW_BUS_MAX_CONCURRENCY: "1" }, llm: { latencyMs: 300 } });
    const a = await t.post("a", "one");
    const b = await t.post("b", "two");
    const c = await t.post("c", "three");
    expect([a.status, b.status]).toEqual([202, 202]);
    expect(c.status).toBe(503);
    expect(c.body.error).toMatch(/busy, try again/);
    expect((await t.result(a.body.id as string)).status).toBe("done");
  });

  it("rejects bad input with 4xx and a reason", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_HTTP_MAX_BODY_BYTES: "1000" } });
    const post = (body: string | Uint8Array, headers: Record<string, string> = json) => raw("/api/messages", { method: "POST", headers, body });
    expect(await post("{nope")).toMatchObject({ status: 400, body: { error: expect.stringMatching(/not valid JSON/) } });
    expect(await post(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]))).toMatchObject({ status: 400, body: { error: "body is not valid UTF-8" } });
    expect(await post(JSON.stringify({ user: 1, text: "x" }))).toMatchObject({ status: 400, body: { error: expect.stringMatching(/^user: expected a string/) } });
    expect(await post(JSON.stringify({ user: "a", text: "  " }))).toMatchObject({ status: 400, body: { error: "text: must not be empty" } });
    expect(await post(JSON.stringify({ user: "a" }))).toMatchObject({ status: 400, body: { error: expect.stringMatching(/text/) } });
    expect(await post(JSON.stringify({ user: "a", text: "x", admin: true }))).toMatchObject({ status: 400, body: { error: "unknown field(s): admin" } });
    expect(await post(JSON.stringify([1, 2]))).toMatchObject({ status: 400 });
    expect(await post(JSON.stringify({ user: "a", text: "x".repeat(2000) }))).toMatchObject({ status: 413, body: { error: expect.stringMatching(/too large/) } });
    expect(await post("user=a&text=b", { "content-type": "application/x-www-form-urlencoded" })).toMatchObject({ status: 415 });
    expect((await raw("/api/messages/webchat:does-not-exist")).status).toBe(404);
    expect((await raw("/api/stream")).status).toBe(400);
    expect((await raw("/nope")).status).toBe(404);
    expect((await raw("/api/messages", { method: "GET" })).status).toBe(405);
    expect(t.llm.count).toBe(0);
  });

  it("keeps results of GET /api/messages/:id across a restart", async () => {
    const dir = tempDir();
    t = await startTestGateway({ dir: dir.dir });
    const { body } = await t.post("alice", "persist me");
    await t.result(body.id as string);
    await t.close();
    t = await startTestGateway({ dir: dir.dir });
    const again = await raw(`/api/messages/${encodeURIComponent(body.id as string)}`);
    expect(again).toEqual({ status: 200, body: { status: "done", reply: "echo: persist me" } });
    dir.cleanup();
  });

  it("serves the chat page, health and readiness", async () => {
    t = await startTestGateway();
    const page = await fetch(`${t.base}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("/api/stream");
    expect(await raw("/healthz")).toEqual({ status: 200, body: { status: "ok" } });
    expect(await raw("/readyz")).toMatchObject({ status: 200, body: { status: "ready", store: "open" } });
  });

  it("refuses users outside channels.webchat.allow_from with 403", async () => {
    t = await startTestGateway({ env: { ZEPTOCLAW_CHANNELS_WEBCHAT_ALLOW_FROM: "alice,bob" } });
    expect((await t.post("alice", "hi")).status).toBe(202);
    const refused = await t.post("mallory", "hi");
    expect(refused).toMatchObject({ status: 403, body: { error: expect.stringMatching(/not allowed/) } });
    expect((await raw("/api/stream?user=mallory")).status).toBe(403);
  });
});

import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { StorageError } from "../../src/errors.js";
import { createTelegramChannel, type TelegramChannelDeps } from "../../src/channels/telegram/telegram-channel.js";
import type { Channel } from "../../src/channels/types.js";
import type { FakeOpenAiOptions } from "../support/fake-openai.js";
import { type FakeTelegram, startFakeTelegram, telegramFixture } from "../support/fake-telegram.js";
import { capturedLogs, startTestGateway, type TestGateway } from "../support/harness.js";
import { runCli } from "../support/child-gateway.js";
import { join } from "node:path";

/** A gateway with a Telegram channel pointed at a fake Bot API. */
interface TelegramWorld {
  tg: FakeTelegram;
  t: TestGateway;
  channel?: Channel;
  close(): Promise<void>;
}

/** Fast retries and previews, so fault tests take milliseconds rather than seconds. */
const FAST: Omit<TelegramChannelDeps, "maxBodyBytes"> = {
  retry: { baseDelayMs: 20, maxAttempts: 4 },
  pollTimeoutSeconds: 2,
  pollBackoffMs: 50,
};

/**
 * Starts the fake Bot API and a gateway with the Telegram channel enabled through the same
 * environment variables an operator would set. With `deps`, the test builds the channel itself
 * (shorter retry waits); without, the gateway wires it exactly as in production.
 */
async function startTelegramWorld(
  o: { env?: Record<string, string>; llm?: FakeOpenAiOptions; deps?: Partial<TelegramChannelDeps>; redeliveryBaseMs?: number } = {},
): Promise<TelegramWorld> {
  const tg = await startFakeTelegram();
  const env = {
    ZEPTOCLAW_CHANNELS_TELEGRAM_ENABLED: "true",
    ZEPTOCLAW_CHANNELS_TELEGRAM_TOKEN: tg.token,
    ZEPTOCLAW_CHANNELS_TELEGRAM_API_ROOT: tg.url,
    ...o.env,
  };
  let channel: Channel | undefined;
  if (o.deps) {
    const { config } = loadConfig({ env: { ZEPTOCLAW_LLM_API_KEY: "sk-x", ...env } });
    channel = createTelegramChannel(config.channels.telegram, { maxBodyBytes: config.http.max_body_bytes, ...o.deps });
  }
  try {
    const gateway = { ...(channel ? { channels: [channel] } : {}), ...(o.redeliveryBaseMs !== undefined ? { redeliveryBaseMs: o.redeliveryBaseMs } : {}) };
    const t = await startTestGateway({ env, ...(o.llm ? { llm: o.llm } : {}), gateway });
    return {
      tg,
      t,
      ...(channel ? { channel } : {}),
      async close() {
        await t.close();
        await tg.close();
      },
    };
  } catch (err) {
    await tg.close();
    throw err;
  }
}

let w: TelegramWorld | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

const ALICE = 4242;
const GROUP = -1001234567890;

describe("Telegram channel end to end (polling)", () => {
  it("answers a private text message with the LLM's reply, as wired by the gateway", async () => {
    w = await startTelegramWorld();
    const { tg, t } = w;
    const id = tg.pushUpdate(telegramFixture("private-text"));
    const reply = await tg.waitFor(() => tg.sent.find((m) => m.chat_id === ALICE), 10_000, "the reply");
    expect(reply.text).toBe("echo: hello bot");
    expect(reply.reply_to_message_id).toBeUndefined();
    expect(tg.sent).toHaveLength(1);
    expect(t.llm.requests.at(-1)?.messages.at(-1)).toEqual({ role: "user", content: "hello bot" });
    // Only one poller per token: the webhook is removed before the first getUpdates.
    const methods = tg.calls.map((c) => c.method);
    expect(methods.indexOf("deleteWebhook")).toBeLessThan(methods.indexOf("getUpdates"));
    expect(tg.callsOf("setMyCommands")[0]?.payload.commands).toEqual(
      expect.arrayContaining([expect.objectContaining({ command: "start" }), expect.objectContaining({ command: "help" }), expect.objectContaining({ command: "reset" })]),
    );
    await tg.waitFor(() => (tg.confirmedOffset > id ? true : undefined), 5_000, "the offset to be confirmed");
    expect(capturedLogs.join("")).not.toContain(tg.token);
  });

  it("confirms the offset once the bus accepted the update, before the LLM answered", async () => {
    w = await startTelegramWorld({ llm: { latencyMs: 1_500 }, deps: FAST });
    const { tg } = w;
    const id = tg.pushUpdate(telegramFixture("private-text"));
    await tg.waitFor(() => (tg.confirmedOffset > id ? true : undefined), 5_000, "the offset to be confirmed");
    expect(tg.sent).toHaveLength(0);
    // Typing shows while the agent works.
    await tg.waitFor(() => (tg.callsOf("sendChatAction").length > 0 ? true : undefined), 5_000, "typing");
    expect(tg.callsOf("sendChatAction")[0]?.payload).toMatchObject({ chat_id: ALICE, action: "typing" });
    await tg.waitFor(() => tg.sent[0], 10_000, "the reply");
  });

  it("splits a 5,000-character answer into two messages without splitting the code block", async () => {
    const code = "```python\n" + Array.from({ length: 60 }, (_, i) => `print("line ${i}") # ${"=".repeat(10)}`).join("\n") + "\n```";
    const answer = ["Here is the plan.", "x".repeat(2500), code, "y".repeat(900), "Done <3 & bye"].join("\n\n");
    expect(answer.length).toBeGreaterThan(5_000);
    w = await startTelegramWorld({ llm: { answer: () => answer }, deps: FAST });
    const { tg } = w;
    tg.pushUpdate(telegramFixture("private-text"));
    await tg.waitFor(() => (tg.sent.length >= 2 ? true : undefined), 10_000, "two messages");
    const [first, second] = tg.sent;
    expect(tg.sent).toHaveLength(2);
    expect(first!.text.length).toBeLessThanOrEqual(4096);
    expect(second!.text.length).toBeLessThanOrEqual(4096);
    expect(first!.parse_mode).toBe("HTML");
    // The code block lives whole in one message: its first and last lines are together.
    const withCode = tg.sent.filter((m) => m.raw.includes("<pre>") || m.raw.includes("<pre><code"));
    expect(withCode).toHaveLength(1);
    expect(withCode[0]!.text).toContain('print("line 0")');
    expect(withCode[0]!.text).toContain('print("line 59")');
    expect(second!.text.endsWith("Done <3 & bye")).toBe(true);
  });

  it("ignores a group message without a mention and answers one with a mention, quoting it", async () => {
    w = await startTelegramWorld({ deps: FAST });
    const { tg, t } = w;
    tg.pushUpdate(telegramFixture("group-plain"));
    tg.pushUpdate(telegramFixture("group-mention"));
    const reply = await tg.waitFor(() => tg.sent.find((m) => m.chat_id === GROUP), 10_000, "the group reply");
    expect(reply.text).toBe("echo: what is 2+2?");
    expect(reply.reply_to_message_id).toBe(21);
    expect(t.llm.count).toBe(1);
    // Replying to the bot and /help@bot also count as addressing it.
    tg.pushUpdate(telegramFixture("group-reply-to-bot"));
    tg.pushUpdate(telegramFixture("group-command"));
    await tg.waitFor(() => (tg.sent.length >= 3 ? true : undefined), 10_000, "two more replies");
    expect(tg.sent[1]?.text).toBe("echo: and what about 3+3?");
    expect(tg.sent[2]?.text).toMatch(/Commands:/);
    expect(t.llm.count).toBe(2);
  });

  it("answers in the forum topic the message came from", async () => {
    w = await startTelegramWorld({ deps: FAST });
    const { tg, t } = w;
    tg.pushUpdate(telegramFixture("forum-topic"));
    const reply = await tg.waitFor(() => tg.sent[0], 10_000, "the topic reply");
    expect(reply).toMatchObject({ chat_id: -1009876543210, message_thread_id: 70, reply_to_message_id: 77, text: "echo: summarize the topic" });
    const typing = tg.callsOf("sendChatAction")[0];
    expect(typing?.payload).toMatchObject({ chat_id: -1009876543210, message_thread_id: 70 });
    expect(await t.gw.stores.sessions.load("telegram:4343")).toHaveLength(2);
  });

  it("honours 429 retry_after and still delivers the reply exactly once", async () => {
    w = await startTelegramWorld({ deps: FAST });
    const { tg } = w;
    tg.faults.push({ method: "sendMessage", status: 429, retryAfter: 1 });
    tg.pushUpdate(telegramFixture("private-text"));
    await tg.waitFor(() => tg.sent[0], 10_000, "the reply");
    const sends = tg.callsOf("sendMessage");
    expect(sends.map((c) => c.status)).toEqual([429, 200]);
    expect(sends[1]!.at - sends[0]!.at).toBeGreaterThanOrEqual(950);
    expect(tg.sent).toHaveLength(1);
  });

  it("retries 500s with backoff and delivers once; survives a 409 and a 500 on getUpdates", async () => {
    w = await startTelegramWorld({ deps: FAST });
    const { tg } = w;
    tg.faults.push({ method: "getUpdates", status: 409, description: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running" });
    tg.faults.push({ method: "getUpdates", status: 500 });
    tg.faults.push({ method: "sendMessage", status: 500 }, { method: "sendMessage", status: 502 });
    tg.pushUpdate(telegramFixture("private-text"));
    await tg.waitFor(() => tg.sent[0], 10_000, "the reply");
    expect(tg.callsOf("sendMessage").map((c) => c.status)).toEqual([500, 502, 200]);
    expect(tg.sent).toHaveLength(1);
    expect(capturedLogs.some((l) => l.includes("another process is polling this Telegram bot token"))).toBe(true);
  });

  it("sends a reply again later when Telegram fails past the channel's own retries", async () => {
    w = await startTelegramWorld({ deps: FAST, redeliveryBaseMs: 100 });
    const { tg, t } = w;
    // Four 5xx use up the call's own four attempts; the later try meets one more, then success.
    tg.faults.push(...[500, 502, 503, 500, 502].map((status) => ({ method: "sendMessage", status })));
    tg.pushUpdate(telegramFixture("private-text"));
    await tg.waitFor(() => tg.sent[0], 10_000, "the reply");
    expect(tg.callsOf("sendMessage").map((c) => c.status)).toEqual([500, 502, 503, 500, 502, 200]);
    expect(tg.sent).toHaveLength(1);
    // Marked delivered: a restart will not send it again.
    await t.gw.stores.journal.flush();
    await expect.poll(async () => (await t.gw.stores.journal.unfinished()).finished.length).toBe(0);
    expect(capturedLogs.some((l) => l.includes("reply delivered on a later try"))).toBe(true);
  });

  it("does not send again a reply Telegram refused for good (400)", async () => {
    w = await startTelegramWorld({ deps: FAST, redeliveryBaseMs: 50 });
    const { tg, t } = w;
    tg.faults.push({ method: "sendMessage", status: 400, description: "Bad Request: chat not found" });
    tg.pushUpdate(telegramFixture("private-text"));
    await tg.waitFor(() => (tg.callsOf("sendMessage").length > 0 ? true : undefined), 10_000, "the send");
    await expect.poll(async () => (await t.gw.stores.journal.unfinished()).finished.length).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    expect(tg.callsOf("sendMessage")).toHaveLength(1);
  });

  it("keeps an update unconfirmed while the journal cannot take it, then answers it", async () => {
    w = await startTelegramWorld({ deps: FAST });
    const { tg, t } = w;
    // Six refusals in a row, as a full disk gives: more than the five tries a broken update gets.
    const journal = t.gw.stores.journal;
    const accept = journal.accept.bind(journal);
    let refusals = 6;
    journal.accept = (m) => (refusals-- > 0 ? Promise.reject(new StorageError("the message journal could not be written")) : accept(m));
    const id = tg.pushUpdate(telegramFixture("private-text"));
    await tg.waitFor(() => tg.sent[0], 15_000, "the reply");
    expect(refusals).toBeLessThan(0);
    expect(tg.confirmedOffset).toBeGreaterThan(id);
    expect(tg.sent).toHaveLength(1);
  });

  it("follows a group that became a supergroup, for this reply and the ones after", async () => {
    w = await startTelegramWorld({ deps: FAST });
    const { tg } = w;
    const group = { chat: { id: -4001, title: "Old group", type: "group" } };
    tg.faults.push({ method: "sendMessage", status: 400, description: "Bad Request: group chat was upgraded to a supergroup chat", migrateTo: -1009999, match: (p) => p.chat_id === -4001 });
    tg.pushUpdate(telegramFixture("group-mention", { ...group, message_id: 500 }));
    await tg.waitFor(() => tg.sent[0], 10_000, "the reply");
    tg.pushUpdate(telegramFixture("group-mention", { ...group, message_id: 501 }));
    await tg.waitFor(() => tg.sent[1], 10_000, "the second reply");
    expect(tg.callsOf("sendMessage").map((c) => [c.status, c.payload.chat_id])).toEqual([
      [400, -4001],
      [200, -1009999],
      [200, -1009999],
    ]);
  });

  it("logs a 403 once and does not retry it", async () => {
    w = await startTelegramWorld({ deps: FAST });
    const { tg, t } = w;
    tg.faults.push({ method: "sendMessage", status: 403 });
    const before = capturedLogs.filter((l) => l.includes("403")).length;
    tg.pushUpdate(telegramFixture("private-text"));
    await tg.waitFor(() => (tg.callsOf("sendMessage").length > 0 ? true : undefined), 10_000, "the send");
    await t.result("telegram:4242:11");
    expect(tg.callsOf("sendMessage")).toHaveLength(1);
    expect(capturedLogs.filter((l) => l.includes("403")).length - before).toBe(1);
  });

  it("refuses a user outside allow_from once, and nothing reaches the LLM", async () => {
    w = await startTelegramWorld({ env: { ZEPTOCLAW_CHANNELS_TELEGRAM_ALLOW_FROM: "999,@someone_else" }, deps: FAST });
    const { tg, t } = w;
    let third = 0;
    for (let i = 0; i < 3; i++) third = tg.pushUpdate(telegramFixture("private-text", { message_id: 100 + i }));
    await tg.waitFor(() => (tg.confirmedOffset > third && tg.sent[0] ? true : undefined), 10_000, "the refusal");
    // A fourth message after the first three were confirmed still gets no second refusal.
    const last = tg.pushUpdate(telegramFixture("private-text", { message_id: 200 }));
    await tg.waitFor(() => (tg.confirmedOffset > last ? true : undefined), 10_000, "the last offset");
    expect(tg.sent).toHaveLength(1);
    expect(tg.sent[0]?.text).toMatch(/not allowed/);
    expect(tg.sent[0]?.text).toContain("4242");
    expect(t.llm.count).toBe(0);
  });

  it("pairs an unknown user: one code, approved with `zeptoclaw pair approve`, then answered", async () => {
    w = await startTelegramWorld({
      env: { ZEPTOCLAW_CHANNELS_TELEGRAM_DENY_BY_DEFAULT: "true", ZEPTOCLAW_CHANNELS_TELEGRAM_PAIRING: "true" },
      deps: FAST,
    });
    const { tg, t } = w;
    let second = 0;
    tg.pushUpdate(telegramFixture("private-text", { message_id: 300 }));
    second = tg.pushUpdate(telegramFixture("private-text", { message_id: 301 }));
    const told = await tg.waitFor(() => (tg.confirmedOffset > second ? tg.sent[0] : undefined), 10_000, "the pairing code");
    expect(tg.sent).toHaveLength(1);
    const code = /zeptoclaw pair approve ([A-Z2-9]{8})/.exec(told.text)?.[1] as string;
    expect(code).toBeDefined();
    expect(t.llm.count).toBe(0);
    const store = { ZEPTOCLAW_SESSION_STORE: `sqlite://${join(t.dir, "sessions.sqlite")}` };
    const list = await runCli(["pair", "list"], { env: store });
    expect(list.stdout).toContain(`${code}  telegram:${ALICE}`);
    expect(await runCli(["pair", "approve", "WRONG234"], { env: store })).toMatchObject({ code: 1 });
    expect(await runCli(["pair", "approve", code.toLowerCase()], { env: store })).toMatchObject({ code: 0, stdout: `approved telegram:${ALICE}\n` });
    tg.pushUpdate(telegramFixture("private-text", { message_id: 302, text: "now?" }));
    expect((await tg.waitFor(() => tg.sent.find((m) => m.text === "echo: now?"), 10_000, "the answer")).text).toBe("echo: now?");
  });

  it("admits users listed by @username", async () => {
    w = await startTelegramWorld({ env: { ZEPTOCLAW_CHANNELS_TELEGRAM_ALLOW_FROM: "@Alice" }, deps: FAST });
    w.tg.pushUpdate(telegramFixture("private-text"));
    expect((await w.tg.waitFor(() => w!.tg.sent[0], 10_000, "the reply")).text).toBe("echo: hello bot");
  });

  it("answers stickers, voice notes and edits clearly, and reads photo captions", async () => {
    w = await startTelegramWorld({ deps: FAST });
    const { tg, t } = w;
    tg.pushUpdate(telegramFixture("private-sticker"));
    tg.pushUpdate(telegramFixture("private-voice"));
    tg.pushUpdate(telegramFixture("private-edited"));
    tg.pushUpdate(telegramFixture("private-photo-caption"));
    await tg.waitFor(() => (tg.sent.length >= 4 ? true : undefined), 10_000, "four answers");
    const texts = tg.sent.map((m) => m.text);
    expect(texts.filter((x) => /I can only read text here/.test(x))).toHaveLength(2);
    expect(texts.filter((x) => /not edits/.test(x))).toHaveLength(1);
    expect(texts).toContain("echo: what is in this picture?");
    expect(t.llm.count).toBe(1);
  });

  it("answers an edit with a notice of its own, leaving the streamed answer's preview alone", async () => {
    const answer = "one two three four five six seven eight";
    w = await startTelegramWorld({ deps: { ...FAST, preview: { firstDelayMs: 50, intervalMs: 100 } }, llm: { chunkSize: 4, chunkDelayMs: 60, answer: () => answer } });
    const { tg } = w;
    tg.pushUpdate(telegramFixture("private-text"));
    const preview = await tg.waitFor(() => tg.sent[0], 10_000, "the preview");
    // The user edits the message being answered while its answer streams.
    tg.pushUpdate(telegramFixture("private-edited"));
    await tg.waitFor(() => (tg.sent.length === 2 && preview.text === answer ? true : undefined), 10_000, "the answer in the preview, and the notice");
    expect(tg.sent.map((m) => m.text)).toEqual([answer, expect.stringMatching(/not edits/)]);
  });

  it("counts notices against the flood limit: forty stickers get two answers, not forty", async () => {
    w = await startTelegramWorld({ env: { ZEPTOCLAW_LIMITS_MESSAGES_PER_MINUTE: "2", ZEPTOCLAW_LIMITS_BURST: "2" }, deps: FAST });
    const { tg } = w;
    let last = 0;
    for (let i = 0; i < 40; i++) last = tg.pushUpdate(telegramFixture("private-sticker", { message_id: 300 + i }));
    await tg.waitFor(() => (tg.confirmedOffset > last ? true : undefined), 10_000, "every update confirmed");
    // Notices go out in the background: give them a moment to show up if they were going to.
    await new Promise((r) => setTimeout(r, 300));
    expect(tg.sent.filter((m) => /I can only read text here/.test(m.text))).toHaveLength(2);
  });

  it("tells the sender 'busy, try again' when the bus is full and keeps polling", async () => {
    w = await startTelegramWorld({
      env: { ZEPTOCLAW_BUS_BUFFER_SIZE: "1", ZEPTOCLAW_BUS_MAX_CONCURRENCY: "1" },
      llm: { latencyMs: 800 },
      deps: FAST,
    });
    const { tg } = w;
    // Three users at once: one runs, one waits in the buffer, the third finds it full.
    tg.pushUpdate(telegramFixture("private-text"));
    tg.pushUpdate(telegramFixture("private-text", { message_id: 12, from: { id: 5001, is_bot: false, first_name: "B" }, chat: { id: 5001, type: "private", first_name: "B" } }));
    tg.pushUpdate(telegramFixture("private-text", { message_id: 13, from: { id: 5002, is_bot: false, first_name: "C" }, chat: { id: 5002, type: "private", first_name: "C" } }));
    await tg.waitFor(() => (tg.sent.length >= 3 ? true : undefined), 15_000, "three answers");
    const busy = tg.sent.filter((m) => /busy/.test(m.text));
    expect(busy.length).toBeGreaterThanOrEqual(1);
    expect(tg.sent.filter((m) => m.text === "echo: hello bot").length + busy.length).toBe(3);
    // The loop went on: a later message is still answered.
    tg.pushUpdate(telegramFixture("private-text", { message_id: 14, text: "later" }));
    await tg.waitFor(() => tg.sent.find((m) => m.text === "echo: later"), 15_000, "the later answer");
  });
});

describe("Telegram channel end to end (webhook)", () => {
  const secret = "s3cret-Webhook_token";
  const env = {
    ZEPTOCLAW_CHANNELS_TELEGRAM_MODE: "webhook",
    ZEPTOCLAW_CHANNELS_TELEGRAM_WEBHOOK_URL: "https://bot.example.org/telegram/webhook",
    ZEPTOCLAW_CHANNELS_TELEGRAM_SECRET_TOKEN: secret,
  };

  it("registers the webhook and answers an update posted to it", async () => {
    w = await startTelegramWorld({ env });
    const { tg, t } = w;
    expect(tg.webhook).toEqual({ url: "https://bot.example.org/telegram/webhook", secret });
    expect(tg.callsOf("setWebhook")[0]?.payload.allowed_updates).toEqual(["message", "edited_message"]);
    const url = `${t.base}/telegram/webhook`;
    const res = await tg.deliverWebhook(telegramFixture("private-text"), { url });
    expect(res.status).toBe(200);
    const reply = await tg.waitFor(() => tg.sent[0], 10_000, "the reply");
    expect(reply.text).toBe("echo: hello bot");
    expect(tg.callsOf("getUpdates")).toHaveLength(0);
    // A redelivery of the same update is not answered twice.
    expect((await tg.deliverWebhook(telegramFixture("private-text"), { url })).status).toBe(200);
    await t.result("telegram:4242:11");
    expect(t.llm.count).toBe(1);
  });

  it("answers 200 before the LLM has answered", async () => {
    w = await startTelegramWorld({ env, llm: { latencyMs: 1_500 } });
    const { tg, t } = w;
    const res = await tg.deliverWebhook(telegramFixture("private-text"), { url: `${t.base}/telegram/webhook` });
    expect(res.status).toBe(200);
    expect(tg.sent).toHaveLength(0);
    await tg.waitFor(() => tg.sent[0], 10_000, "the reply");
  });

  it("refuses a missing or wrong secret with 401 and nothing reaches the bus", async () => {
    w = await startTelegramWorld({ env });
    const { tg, t } = w;
    const url = `${t.base}/telegram/webhook`;
    expect((await tg.deliverWebhook(telegramFixture("private-text"), { url, secret: null })).status).toBe(401);
    expect((await tg.deliverWebhook(telegramFixture("private-text"), { url, secret: "wrong" })).status).toBe(401);
    expect((await tg.deliverWebhook(telegramFixture("private-text"), { url, secret: `${secret}x` })).status).toBe(401);
    expect(t.gw.bus.depth).toBe(0);
    expect(await t.gw.stores.journal.get("telegram:4242:11")).toBeUndefined();
    expect(t.llm.count).toBe(0);
    expect(tg.callsOf("sendMessage")).toHaveLength(0);
  });

  it("answers 400 on bad JSON and 413 over the body limit", async () => {
    w = await startTelegramWorld({ env: { ...env, ZEPTOCLAW_HTTP_MAX_BODY_BYTES: "2000" } });
    const { tg, t } = w;
    const url = `${t.base}/telegram/webhook`;
    expect((await tg.deliverWebhook({}, { url, body: "{not json" })).status).toBe(400);
    expect((await tg.deliverWebhook({}, { url, body: JSON.stringify({ hello: 1 }) })).status).toBe(400);
    expect((await tg.deliverWebhook(telegramFixture("private-text", { text: "x".repeat(3000) }), { url })).status).toBe(413);
    expect(t.llm.count).toBe(0);
  });
});

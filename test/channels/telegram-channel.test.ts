import { EventEmitter } from "node:events";
import { createServer } from "node:net";
import { HttpError as GrammyHttpError } from "grammy";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { toChannelError } from "../../src/channels/telegram/api.js";
import { createTelegramChannel, type TelegramChannelDeps } from "../../src/channels/telegram/telegram-channel.js";
import type { Channel, ChannelContext } from "../../src/channels/types.js";
import { loadConfig } from "../../src/config/load.js";
import { BusClosedError, BusFullError, ChannelError } from "../../src/errors.js";
import type { RouteHandler } from "../../src/http/http-server.js";
import type { InboundMessage } from "../../src/messages.js";
import { type FakeTelegram, startFakeTelegram, telegramFixture } from "../support/fake-telegram.js";

/** A channel context that records what the channel publishes and logs, without a gateway. */
interface FakeContext {
  ctx: ChannelContext;
  published: InboundMessage[];
  lines: string[];
  routes: Map<string, RouteHandler>;
  /** Resolves with the n-th published message (1-based). */
  nthPublished(n: number, timeoutMs?: number): Promise<InboundMessage>;
}

function fakeContext(publish: (m: InboundMessage) => Promise<void> = async () => undefined): FakeContext {
  const events = new EventEmitter();
  const published: InboundMessage[] = [];
  const lines: string[] = [];
  const routes = new Map<string, RouteHandler>();
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(line) });
  return {
    published,
    lines,
    routes,
    ctx: {
      logger,
      signal: new AbortController().signal,
      http: { add: (method, path, handler) => void routes.set(`${method} ${path}`, handler) },
      async publish(m) {
        published.push(m);
        events.emit("published");
        await publish(m);
      },
    },
    nthPublished(n, timeoutMs = 5_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = published[n - 1];
          if (!m) return;
          clearTimeout(timer);
          events.off("published", check);
          resolve(m);
        };
        const timer = setTimeout(() => {
          events.off("published", check);
          reject(new Error(`only ${published.length} messages published within ${timeoutMs} ms`));
        }, timeoutMs);
        events.on("published", check);
        check();
      });
    },
  };
}

let tg: FakeTelegram | undefined;
let channel: Channel | undefined;
afterEach(async () => {
  await channel?.stop();
  await tg?.close();
  channel = undefined;
  tg = undefined;
});

function makeChannel(fake: FakeTelegram, env: Record<string, string> = {}, deps: Partial<TelegramChannelDeps> = {}, token = fake.token): Channel {
  const { config } = loadConfig({
    env: {
      ZEPTOCLAW_LLM_API_KEY: "sk-x",
      ZEPTOCLAW_CHANNELS_TELEGRAM_ENABLED: "true",
      ZEPTOCLAW_CHANNELS_TELEGRAM_TOKEN: token,
      ZEPTOCLAW_CHANNELS_TELEGRAM_API_ROOT: fake.url,
      ...env,
    },
  });
  channel = createTelegramChannel(config.channels.telegram, {
    maxBodyBytes: 100_000,
    retry: { baseDelayMs: 10, maxAttempts: 3 },
    pollTimeoutSeconds: 2,
    pollBackoffMs: 20,
    ...deps,
  });
  return channel;
}

describe("Telegram channel ingress", () => {
  it("confirms an update's offset only after publish resolved", async () => {
    tg = await startFakeTelegram();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const f = fakeContext(() => gate);
    await makeChannel(tg).start(f.ctx);
    const id = tg.pushUpdate(telegramFixture("private-text"));
    const m = await f.nthPublished(1);
    expect(m).toMatchObject({ id: "telegram:4242:11", conversationId: "telegram:4242", userId: "telegram:4242", text: "hello bot", isDirect: true, channel: "telegram" });
    expect(tg.confirmedOffset).toBeLessThanOrEqual(id);
    release();
    await tg.waitFor(() => (tg!.confirmedOffset > id ? true : undefined), 5_000, "the confirmed offset");
  });

  it("answers 'busy, try again' when the bus is full and moves on to the next update", async () => {
    tg = await startFakeTelegram();
    let calls = 0;
    const f = fakeContext(async () => {
      if (++calls === 1) throw new BusFullError(1);
    });
    await makeChannel(tg).start(f.ctx);
    tg.pushUpdate(telegramFixture("private-text"));
    const second = tg.pushUpdate(telegramFixture("private-text", { message_id: 12, text: "second" }));
    await tg.waitFor(() => (tg!.confirmedOffset > second && tg!.sent[0] ? true : undefined), 5_000, "busy reply and both offsets");
    expect(tg.sent.map((s) => s.text)).toEqual(["I'm busy right now, please try again in a moment."]);
    expect(f.published.map((m) => m.text)).toEqual(["hello bot", "second"]);
  });

  it("leaves the offset unconfirmed when the bus is closed, so a restart gets the update again", async () => {
    tg = await startFakeTelegram();
    const f = fakeContext(async () => {
      throw new BusClosedError();
    });
    const first = makeChannel(tg);
    await first.start(f.ctx);
    const id = tg.pushUpdate(telegramFixture("private-text"));
    await f.nthPublished(1);
    await first.stop();
    expect(tg.confirmedOffset).toBeLessThanOrEqual(id);
    const g = fakeContext();
    await makeChannel(tg).start(g.ctx);
    expect((await g.nthPublished(1)).id).toBe("telegram:4242:11");
    await tg.waitFor(() => (tg!.confirmedOffset > id ? true : undefined), 5_000, "the confirmed offset");
  });

  it("registers the webhook route and answers 401 before reading a body without the secret", async () => {
    tg = await startFakeTelegram();
    const f = fakeContext();
    await makeChannel(tg, {
      ZEPTOCLAW_CHANNELS_TELEGRAM_MODE: "webhook",
      ZEPTOCLAW_CHANNELS_TELEGRAM_WEBHOOK_URL: "https://example.org/hook",
      ZEPTOCLAW_CHANNELS_TELEGRAM_WEBHOOK_PATH: "/hook",
      ZEPTOCLAW_CHANNELS_TELEGRAM_SECRET_TOKEN: "abc_DEF-123",
    }).start(f.ctx);
    expect([...f.routes.keys()]).toEqual(["POST /hook"]);
    expect(tg.webhook).toEqual({ url: "https://example.org/hook", secret: "abc_DEF-123" });
    expect(tg.callsOf("deleteWebhook")).toHaveLength(0);
  });

  it("fails to start with a clear error, free of the token, when the token is refused", async () => {
    tg = await startFakeTelegram();
    const f = fakeContext();
    const wrong = "987654321:AAWrongTokenWrongTokenWrongToken12";
    const err = await makeChannel(tg, {}, {}, wrong)
      .start(f.ctx)
      .then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ChannelError);
    expect((err as ChannelError).message).toMatch(/token was refused/);
    expect(JSON.stringify({ m: (err as Error).message, c: String((err as Error).cause) })).not.toContain(wrong);
  });

  it("keeps the token out of network errors and logs", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    tg = await startFakeTelegram();
    const token = tg.token;
    const { config } = loadConfig({
      env: {
        ZEPTOCLAW_LLM_API_KEY: "sk-x",
        ZEPTOCLAW_CHANNELS_TELEGRAM_ENABLED: "true",
        ZEPTOCLAW_CHANNELS_TELEGRAM_TOKEN: token,
        ZEPTOCLAW_CHANNELS_TELEGRAM_API_ROOT: `http://127.0.0.1:${port}`,
      },
    });
    channel = createTelegramChannel(config.channels.telegram, { maxBodyBytes: 1000, retry: { baseDelayMs: 5, maxAttempts: 2 } });
    const f = fakeContext();
    const err = (await channel.start(f.ctx).then(() => undefined, (e: unknown) => e)) as ChannelError;
    expect(err).toBeInstanceOf(ChannelError);
    expect(err.message).toMatch(/getMe/);
    const everything = JSON.stringify({ message: err.message, cause: (err.cause as ChannelError).message, inner: String((err.cause as ChannelError).cause), lines: f.lines });
    expect(everything).not.toContain(token);
    await expect(channel.send({ conversationId: "telegram:1", text: "hi", idempotencyKey: "k" })).rejects.toSatisfy(
      (e: unknown) => e instanceof ChannelError && e.code === "E_TELEGRAM_NETWORK" && !e.message.includes(token),
    );
  });

  it("scrubs the token from grammy's network errors", () => {
    const token = "123:AAsecretsecretsecretsecretsecret";
    const e = toChannelError(new GrammyHttpError("Network request for 'sendMessage' failed!", new Error(`request to http://h/bot${token}/sendMessage failed, reason: ECONNRESET`)), token);
    expect(e.code).toBe("E_TELEGRAM_NETWORK");
    expect(e.retryable).toBe(true);
    expect(e.message).toContain("ECONNRESET");
    expect(`${e.message} ${String(e.cause)}`).not.toContain(token);
    expect(toChannelError(new Error(`boom bot${token}`), "").message).not.toContain(token);
  });
});

describe("Telegram channel replies", () => {
  it("streams a preview after the first delay, edits at most once per interval, then sends the final text", async () => {
    tg = await startFakeTelegram();
    const ch = makeChannel(tg, {}, { preview: { firstDelayMs: 100, intervalMs: 300 } });
    await ch.start(fakeContext().ctx);
    const conv = "telegram:4242";
    const inbound = "telegram:4242:11";
    const started = Date.now();
    ch.preview?.(conv, inbound, "Thinking");
    const first = await tg.waitFor(() => tg!.sent[0], 5_000, "the preview message");
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);
    expect(first.text).toBe("Thinking");
    for (let i = 0; i < 20; i++) ch.preview?.(conv, inbound, ` ${i}`);
    await tg.waitFor(() => (first.edits >= 1 ? true : undefined), 5_000, "the first edit");
    expect(first.text).toBe(`Thinking ${Array.from({ length: 20 }, (_, i) => i).join(" ")}`);
    // The stream restarted: what was shown is replaced, not appended to.
    ch.preview?.(conv, inbound, null);
    ch.preview?.(conv, inbound, "Fresh start");
    await tg.waitFor(() => (first.text === "Fresh start" ? true : undefined), 5_000, "the restarted preview");
    const edits = tg.callsOf("editMessageText");
    const sendAt = tg.callsOf("sendMessage")[0]!.at;
    expect(edits).toHaveLength(2);
    expect(edits[0]!.at - sendAt).toBeGreaterThanOrEqual(290);
    expect(edits[1]!.at - edits[0]!.at).toBeGreaterThanOrEqual(290);
    // The final answer is long: the streamed message becomes its first part.
    const final = `${"a".repeat(3000)}\n\n${"b".repeat(2000)}`;
    const res = await ch.send({ conversationId: conv, text: final, replyToId: inbound, idempotencyKey: `${inbound}:0` });
    expect(res.messageId).toBe(String(first.message_id));
    expect(tg.sent).toHaveLength(2);
    expect(first.text).toBe("a".repeat(3000));
    expect(tg.sent[1]!.text).toBe("b".repeat(2000));
    // A late piece after the final text changes nothing.
    ch.preview?.(conv, inbound, "late");
    expect(tg.sent).toHaveLength(2);
  });

  it("sends a reply once per idempotency key, even when asked twice at once", async () => {
    tg = await startFakeTelegram();
    const ch = makeChannel(tg);
    await ch.start(fakeContext().ctx);
    const m = { conversationId: "telegram:4242", text: "only once", replyToId: "telegram:4242:11", idempotencyKey: "telegram:4242:11:0" };
    const [a, b] = await Promise.all([ch.send(m), ch.send(m)]);
    const c = await ch.send(m);
    expect(a).toEqual(b);
    expect(c).toEqual(a);
    expect(tg.sent).toHaveLength(1);
  });

  it("resumes a half-sent multi-part reply without sending the first part again", async () => {
    tg = await startFakeTelegram();
    const ch = makeChannel(tg);
    await ch.start(fakeContext().ctx);
    const m = { conversationId: "telegram:4242", text: `${"a".repeat(3000)}\n\n${"b".repeat(2000)}`, idempotencyKey: "k:0" };
    tg.faults.push({ method: "sendMessage", status: 400, description: "Bad Request: not now", match: (p) => String(p.text).startsWith("b") });
    await expect(ch.send(m)).rejects.toThrow(/not now/);
    expect(tg.sent.map((x) => x.text[0])).toEqual(["a"]);
    await ch.send(m);
    expect(tg.sent.map((x) => x.text[0])).toEqual(["a", "b"]);
  });

  it("falls back to plain text when Telegram cannot parse the HTML", async () => {
    tg = await startFakeTelegram();
    const ch = makeChannel(tg);
    await ch.start(fakeContext().ctx);
    tg.faults.push({ method: "sendMessage", status: 400, description: "Bad Request: can't parse entities: unsupported start tag \"x\" at byte offset 0" });
    await ch.send({ conversationId: "telegram:4242", text: "**bold** and <b>", idempotencyKey: "p:0" });
    expect(tg.callsOf("sendMessage").map((c) => c.payload.parse_mode)).toEqual(["HTML", undefined]);
    expect(tg.sent[0]).toMatchObject({ text: "**bold** and <b>" });
    expect(tg.sent[0]?.parse_mode).toBeUndefined();
  });

  it("quotes the answered message in groups only, and types into the right topic", async () => {
    tg = await startFakeTelegram();
    const ch = makeChannel(tg);
    await ch.start(fakeContext().ctx);
    await ch.send({ conversationId: "telegram:4242", text: "private", replyToId: "telegram:4242:11", idempotencyKey: "a:0" });
    await ch.send({ conversationId: "telegram:-100777:70", text: "topic", replyToId: "telegram:-100777:77", idempotencyKey: "b:0" });
    expect(tg.sent[0]?.reply_to_message_id).toBeUndefined();
    expect(tg.sent[1]).toMatchObject({ chat_id: -100777, message_thread_id: 70, reply_to_message_id: 77 });
    await ch.typing?.("telegram:-100777:70");
    expect(tg.callsOf("sendChatAction")[0]?.payload).toEqual({ chat_id: -100777, action: "typing", message_thread_id: 70 });
    await ch.edit?.("telegram:4242", String(tg.sent[0]!.message_id), "*edited*");
    expect(tg.sent[0]).toMatchObject({ text: "edited", raw: "<i>edited</i>" });
    await expect(ch.send({ conversationId: "webchat:x", text: "no", idempotencyKey: "c:0" })).rejects.toThrow(/not a Telegram conversation id/);
  });
});

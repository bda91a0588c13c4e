import { echoAnswer, type FakeOpenAi, startFakeOpenAi } from "../../test/support/fake-openai.js";
import { type FakeSentMessage, type FakeTelegram, startFakeTelegram } from "../../test/support/fake-telegram.js";
import { childReadings, type GatewayChild, gatewayEnv, spawnGateway } from "./gateway-child.js";
import type { BenchTarget, TargetSettings } from "./target.js";

/**
 * The bot token the gateway is given: fake, and short enough that the suite's token detector
 * (test/support/no-secrets.ts) does not take it for a real one. Every gateway log line is
 * still searched for it, and the count is reported.
 */
const BENCH_BOT_TOKEN = "4242:bench-fake-token-not-a-secret";

/** Telegram user (and private chat) id of bench user 0; user u is `FIRST_USER_ID + u`. */
const FIRST_USER_ID = 100_000;

/** The first few replies that were neither the expected answer nor a preview of it, kept for the report. */
const MAX_ODD_REPLIES = 3;

/** A message the bench sent and whose answer it waits for. */
interface Waiting {
  user: number;
  id: string;
  /** The visible text of the answer: the fake LLM echoes the message. */
  expected: string;
}

/** Sends waiting for the gateway to confirm their update through the getUpdates offset, in update_id order. */
class AckQueue {
  private items: { updateId: number; id: string }[] = [];
  private head = 0;
  private readonly pending = new Map<string, (id: string) => void>();

  push(updateId: number, id: string): Promise<string> {
    this.items.push({ updateId, id });
    return new Promise<string>((resolve) => this.pending.set(id, resolve));
  }

  /** Resolves every send whose update is below `offset`, the first one Telegram will deliver again. */
  confirm(offset: number): void {
    for (let item = this.items[this.head]; item && item.updateId < offset; item = this.items[this.head]) {
      this.head++;
      this.accepted(item.id);
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * Resolves the send of `id` now: an answer proves the bus took the message, and the gateway
   * confirms a batch of updates only after handing all of it to the bus, so answers to the
   * first updates of a batch can come before their confirmation.
   */
  accepted(id: string): void {
    const resolve = this.pending.get(id);
    this.pending.delete(id);
    resolve?.(id);
  }

  /** Sends neither confirmed nor answered. */
  get size(): number {
    return this.pending.size;
  }
}

/**
 * The Telegram path as a self-hoster runs it: the gateway in a child process with only the
 * Telegram channel, long-polling a fake Bot API that runs in this process (real HTTP on
 * 127.0.0.1), each user a private chat. A message counts as accepted once a getUpdates call
 * confirms its update (the gateway confirms only what the bus took), and as answered when the
 * bot sends, or edits a preview into, the full answer: the moment Telegram would have it.
 * The fake never throttles, so Telegram's own rate limits are not part of what is measured.
 */
export async function startTelegramTarget(s: TargetSettings): Promise<BenchTarget> {
  const llm: FakeOpenAi = await startFakeOpenAi({ latencyMs: s.llmLatencyMs, record: false, answer: echoAnswer });
  const chats = new Map<number, Waiting[]>();
  const acks = new AckQueue();
  const odd: string[] = [];
  let previews = 0;
  let unmatched = 0;
  let tokenInLogs = 0;
  let nextMessageId = 0;
  let target: BenchTarget | undefined;

  const onMessage = (m: FakeSentMessage): void => {
    const at = performance.now();
    const waiting = chats.get(m.chat_id);
    const first = waiting?.[0];
    if (!waiting || !first) {
      unmatched++;
      return;
    }
    let i = waiting.findIndex((w) => w.expected === m.text);
    let isError = false;
    if (i < 0) {
      // Previews show the answer as it grows; anything else (an error text, "busy") answers the oldest message.
      if (first.expected.startsWith(m.text.trim())) {
        previews++;
        return;
      }
      if (odd.length < MAX_ODD_REPLIES) odd.push(m.text.slice(0, 200));
      i = 0;
      isError = true;
    }
    const [w] = waiting.splice(i, 1);
    if (waiting.length === 0) chats.delete(m.chat_id);
    if (!w) return;
    acks.accepted(w.id);
    target?.onReply({ user: w.user, id: w.id, at, isError });
  };

  let tg: FakeTelegram;
  let gateway: GatewayChild;
  try {
    tg = await startFakeTelegram({ token: BENCH_BOT_TOKEN, record: false, onMessage, onConfirmed: (offset) => acks.confirm(offset) });
  } catch (err) {
    await llm.close();
    throw err;
  }
  const env = gatewayEnv(s, llm, {
    ZEPTOCLAW_CHANNELS_WEBCHAT_ENABLED: "false",
    ZEPTOCLAW_CHANNELS_TELEGRAM_ENABLED: "true",
    ZEPTOCLAW_CHANNELS_TELEGRAM_MODE: "polling",
    ZEPTOCLAW_CHANNELS_TELEGRAM_TOKEN: BENCH_BOT_TOKEN,
    ZEPTOCLAW_CHANNELS_TELEGRAM_API_ROOT: tg.url,
  });
  try {
    gateway = await spawnGateway(
      env,
      s.gatewayNodeArgs ?? [],
      (line) => {
        if (line.includes(BENCH_BOT_TOKEN)) tokenInLogs++;
      },
      undefined,
      s.gatewayLog,
    );
  } catch (err) {
    await tg.close();
    await llm.close();
    throw err;
  }
  const { pid } = gateway;

  target = {
    onReply: () => undefined,
    loadProcess: "load generator + fake LLM + fake Bot API",
    send(user, text) {
      const chatId = FIRST_USER_ID + user;
      const messageId = ++nextMessageId;
      const id = `telegram:${chatId}:${messageId}`;
      const waiting = chats.get(chatId) ?? [];
      waiting.push({ user, id, expected: echoAnswer({ model: "", messages: [{ role: "user", content: text }] }) });
      chats.set(chatId, waiting);
      const person = { id: chatId, first_name: "Bench", last_name: String(user) };
      const updateId = tg.pushUpdate({
        message: { message_id: messageId, from: { ...person, is_bot: false }, chat: { ...person, type: "private" }, date: Math.floor(Date.now() / 1000), text },
      });
      // Updates the gateway never confirms stay pending: the runner counts them as lost.
      return acks.push(updateId, id);
    },
    ...childReadings(pid, s.llmLatencyMs),
    details() {
      return {
        gateway_process: "child",
        gateway_pid: pid,
        telegram_mode: "polling",
        telegram_rate_limits: "not simulated (the fake Bot API never answers 429)",
        fake_llm_requests: llm.count,
        bot_api_calls: { ...tg.counts },
        preview_messages: previews,
        unconfirmed_updates: acks.size,
        unmatched_bot_messages: unmatched,
        ...(odd.length > 0 ? { unexpected_replies: odd } : {}),
        bot_token_in_gateway_logs: tokenInLogs,
      };
    },
    async close() {
      await gateway.stop();
      await tg.close();
      await llm.close();
    },
  };
  return target;
}

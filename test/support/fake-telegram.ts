import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../src/package-info.js";

/** One Bot API call as the fake received it. */
export interface FakeTelegramCall {
  method: string;
  payload: Record<string, unknown>;
  /** Epoch ms when the request arrived. */
  at: number;
  /** The HTTP status the fake answered with. */
  status: number;
}

/** A message the bot sent, as the fake keeps it (edits update `text`). */
export interface FakeSentMessage {
  message_id: number;
  chat_id: number;
  /** The visible text (tags removed, entities decoded). */
  text: string;
  /** The text as the bot sent it (HTML when `parse_mode` is set). */
  raw: string;
  parse_mode?: string;
  message_thread_id?: number;
  reply_to_message_id?: number;
  edits: number;
}

/** A fault answered instead of the next call of `method` (any method when omitted). */
export interface FakeTelegramFault {
  method?: string;
  status: number;
  retryAfter?: number;
  description?: string;
  /** A 400's `migrate_to_chat_id`: the group became a supergroup with this id. */
  migrateTo?: number;
  /** Only calls whose payload this accepts get the fault. */
  match?: (payload: Record<string, unknown>) => boolean;
}

/** Options of `startFakeTelegram`. */
export interface FakeTelegramOptions {
  token?: string;
  botId?: number;
  username?: string;
  /** Keep every call in `calls` and every message in `sent` (off for the benchmark, whose runs make hundreds of thousands). */
  record?: boolean;
  /** Called for every message the bot sent or edited successfully, recorded or not. */
  onMessage?: (m: FakeSentMessage, edited: boolean) => void;
  /** Called when a getUpdates call confirms updates below `offset`. */
  onConfirmed?: (offset: number) => void;
}

/** A running fake Bot API server; `url` is what `api_root` takes. */
export interface FakeTelegram {
  url: string;
  token: string;
  bot: { id: number; username: string };
  calls: FakeTelegramCall[];
  /** Calls answered, by method (counted even when not recorded). */
  counts: Record<string, number>;
  /** Every message the bot sent, in order. */
  sent: FakeSentMessage[];
  faults: FakeTelegramFault[];
  webhook: { url: string; secret?: string } | undefined;
  /** Highest offset a getUpdates call confirmed. */
  confirmedOffset: number;
  /** Queues an update for getUpdates (wakes a waiting long poll) under a fresh, increasing `update_id`, as Telegram assigns them. */
  pushUpdate(update: Record<string, unknown>): number;
  /** POSTs an update to the registered webhook; `secret: null` leaves the header out. */
  deliverWebhook(update: Record<string, unknown>, opts?: { secret?: string | null; body?: string; url?: string }): Promise<{ status: number; body: string }>;
  /** Resolves with the first value `check` returns (not undefined), checked after every call and confirmed offset; rejects at the deadline. */
  waitFor<T>(check: () => T | undefined, timeoutMs?: number, what?: string): Promise<T>;
  callsOf(method: string): FakeTelegramCall[];
  close(): Promise<void>;
}

// From the package root, not from this file: compiled into dist/test/support/, it has no fixtures beside it.
const FIXTURES = join(PACKAGE_ROOT, "test", "fixtures", "telegram");

/** Messages the fake remembers for edits when it does not record: the oldest are forgotten first. */
const MAX_UNRECORDED_MESSAGES = 100_000;

/** A real-shaped update from `test/fixtures/telegram/<name>.json`, with fields overridden. */
export function telegramFixture(name: string, message: Record<string, unknown> = {}): Record<string, unknown> {
  const update = JSON.parse(readFileSync(join(FIXTURES, `${name}.json`), "utf8")) as Record<string, unknown>;
  const key = "message" in update ? "message" : "edited_message" in update ? "edited_message" : undefined;
  if (key) update[key] = { ...(update[key] as Record<string, unknown>), ...message };
  return update;
}

const ALLOWED_TAGS = new Set(["b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "blockquote", "tg-spoiler", "span", "tg-emoji"]);

/** Parses Telegram HTML as strictly as Telegram does; returns the visible text or an error. */
function parseHtml(html: string): { text: string } | { error: string } {
  const stack: string[] = [];
  for (const m of html.matchAll(/<(\/?)([a-zA-Z-]*)[^>]*>|<|&(?![a-zA-Z]+;|#\d+;|#x[0-9a-fA-F]+;)/g)) {
    if (m[0] === "<") return { error: `can't parse entities: unexpected character '<' at byte offset ${m.index}` };
    if (m[0].startsWith("&")) return { error: `can't parse entities: unsupported start tag "&" at byte offset ${m.index}` };
    const name = (m[2] ?? "").toLowerCase();
    if (!ALLOWED_TAGS.has(name)) return { error: `can't parse entities: unsupported start tag "${name}" at byte offset ${m.index}` };
    if (m[1]) {
      if (stack.pop() !== name) return { error: `can't parse entities: can't find end tag corresponding to start tag "${name}"` };
    } else stack.push(name);
  }
  if (stack.length > 0) return { error: `can't parse entities: can't find end tag corresponding to start tag "${stack.at(-1)}"` };
  const text = html
    .replace(/<[^>]*>/g, "")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&");
  return { text };
}

function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      try {
        resolve(raw ? (JSON.parse(raw) as Record<string, unknown>) : {});
      } catch (err) {
        reject(err);
      }
    });
    req.on("error", reject);
  });
}

/**
 * Starts a local fake of the Telegram Bot API on 127.0.0.1 (real HTTP, grammy points at it
 * through `api_root`): getMe, getUpdates with long-poll timeout and offsets, sendMessage,
 * editMessageText, sendChatAction, setWebhook, deleteWebhook, setMyCommands. It checks HTML
 * and the 4096 limit as Telegram does, injects faults (429 with retry_after, 5xx, 403, 409),
 * POSTs updates to a registered webhook, and records every call.
 */
export async function startFakeTelegram(opts: FakeTelegramOptions = {}): Promise<FakeTelegram> {
  const token = opts.token ?? "123456789:AAFakeTokenForTestsOnly_abcdefghijkl";
  const bot = { id: opts.botId ?? 123456789, username: opts.username ?? "zepto_test_bot" };
  const events = new EventEmitter();
  events.setMaxListeners(100);
  const queue: Record<string, unknown>[] = [];
  const waiting = new Set<ServerResponse>();
  let nextUpdateId = 1000;
  let nextMessageId = 5000;
  let pollGeneration = 0;
  const keep = opts.record !== false;
  /** Messages by `chat:message_id`, for edits without a scan of `sent`. */
  const messages = new Map<string, FakeSentMessage>();
  const keyOf = (chatId: number, messageId: unknown): string => `${chatId}:${String(messageId)}`;

  const state: FakeTelegram = {
    url: "",
    token,
    bot,
    calls: [],
    counts: {},
    sent: [],
    faults: [],
    webhook: undefined,
    confirmedOffset: 0,
    pushUpdate(update) {
      const id = ++nextUpdateId;
      queue.push({ ...update, update_id: id });
      events.emit("update");
      return id;
    },
    async deliverWebhook(update, o = {}) {
      if (!state.webhook) throw new Error("no webhook is registered");
      const headers: Record<string, string> = { "content-type": "application/json" };
      const secret = o.secret === undefined ? state.webhook.secret : o.secret;
      if (secret !== null && secret !== undefined) headers["x-telegram-bot-api-secret-token"] = secret;
      const res = await fetch(o.url ?? state.webhook.url, { method: "POST", headers, body: o.body ?? JSON.stringify(update) });
      return { status: res.status, body: await res.text() };
    },
    waitFor(check, timeoutMs = 10_000, what = "condition") {
      return new Promise((resolve, reject) => {
        const test = (): boolean => {
          const value = check();
          if (value === undefined) return false;
          cleanup();
          resolve(value);
          return true;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`fake Telegram: timed out after ${timeoutMs} ms waiting for ${what}; calls: ${state.calls.map((c) => `${c.method}:${c.status}`).join(", ")}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          events.off("call", test);
        };
        events.on("call", test);
        test();
      });
    },
    callsOf(method) {
      return state.calls.filter((c) => c.method === method);
    },
    close: async () => undefined,
  };

  const reply = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const fail = (status: number, description: string, retryAfter?: number, migrateTo?: number) => ({
    ok: false,
    error_code: status,
    description,
    ...(retryAfter !== undefined ? { parameters: { retry_after: retryAfter } } : {}),
    ...(migrateTo !== undefined ? { parameters: { migrate_to_chat_id: migrateTo } } : {}),
  });

  // The queue is in update_id order (pushUpdate assigns increasing ids), so both ends are found without a full scan.
  const firstAtOrAbove = (offset: number): number => {
    let i = 0;
    while (i < queue.length && (queue[i]?.update_id as number) < offset) i++;
    return i;
  };
  const pending = (offset: number, limit = Number.POSITIVE_INFINITY): Record<string, unknown>[] => {
    const from = firstAtOrAbove(offset);
    return queue.slice(from, from + limit);
  };

  const getUpdates = (payload: Record<string, unknown>, res: ServerResponse, record: (status: number) => void): void => {
    if (state.webhook) {
      record(409);
      reply(res, 409, fail(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"));
      return;
    }
    const offset = typeof payload.offset === "number" ? payload.offset : 0;
    // Telegram forgets every update below the offset once a call confirms it.
    if (offset > 0) {
      if (offset > state.confirmedOffset) {
        state.confirmedOffset = offset;
        events.emit("call");
        opts.onConfirmed?.(offset);
      }
      queue.splice(0, firstAtOrAbove(offset));
    }
    const limit = typeof payload.limit === "number" ? payload.limit : 100;
    const timeout = typeof payload.timeout === "number" ? payload.timeout : 0;
    const generation = ++pollGeneration;
    // A newer getUpdates ends an older one, as Telegram does with two pollers.
    for (const other of waiting) {
      waiting.delete(other);
      reply(other, 409, fail(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"));
    }
    const answer = (): void => {
      events.off("update", onUpdate);
      clearTimeout(timer);
      waiting.delete(res);
      if (res.writableEnded) return;
      record(200);
      reply(res, 200, { ok: true, result: pending(offset, limit) });
    };
    const onUpdate = (): void => {
      if (generation === pollGeneration && pending(offset).length > 0) answer();
    };
    const timer = setTimeout(answer, timeout * 1000);
    if (pending(offset).length > 0 || timeout === 0) {
      answer();
      return;
    }
    waiting.add(res);
    events.on("update", onUpdate);
    res.on("close", () => {
      events.off("update", onUpdate);
      clearTimeout(timer);
      waiting.delete(res);
    });
  };

  const message = (payload: Record<string, unknown>, res: ServerResponse, record: (status: number) => void, edit: boolean): void => {
    const chatId = Number(payload.chat_id);
    const raw = typeof payload.text === "string" ? payload.text : "";
    const parsed = payload.parse_mode === "HTML" ? parseHtml(raw) : { text: raw };
    const bad = (d: string): void => {
      record(400);
      reply(res, 400, fail(400, `Bad Request: ${d}`));
    };
    if (!Number.isFinite(chatId)) return bad("chat not found");
    if ("error" in parsed) return bad(parsed.error);
    if (parsed.text.trim() === "") return bad("message text is empty");
    if (parsed.text.length > 4096) return bad("message is too long");
    if (edit) {
      const target = messages.get(keyOf(chatId, payload.message_id));
      if (!target) return bad("message to edit not found");
      if (target.text === parsed.text) return bad("message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message");
      target.text = parsed.text;
      target.raw = raw;
      if (typeof payload.parse_mode === "string") target.parse_mode = payload.parse_mode;
      else delete target.parse_mode;
      target.edits++;
      record(200);
      opts.onMessage?.(target, true);
      reply(res, 200, { ok: true, result: { message_id: target.message_id, date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: chatId < 0 ? "supergroup" : "private" }, text: target.text } });
      return;
    }
    const replyParams = payload.reply_parameters as { message_id?: number } | undefined;
    const sent: FakeSentMessage = {
      message_id: ++nextMessageId,
      chat_id: chatId,
      text: parsed.text,
      raw,
      edits: 0,
      ...(typeof payload.parse_mode === "string" ? { parse_mode: payload.parse_mode } : {}),
      ...(typeof payload.message_thread_id === "number" ? { message_thread_id: payload.message_thread_id } : {}),
      ...(typeof replyParams?.message_id === "number" ? { reply_to_message_id: replyParams.message_id } : {}),
    };
    if (keep) state.sent.push(sent);
    messages.set(keyOf(chatId, sent.message_id), sent);
    if (!keep && messages.size > MAX_UNRECORDED_MESSAGES) messages.delete(messages.keys().next().value as string);
    record(200);
    opts.onMessage?.(sent, false);
    reply(res, 200, {
      ok: true,
      result: { message_id: sent.message_id, date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: chatId < 0 ? "supergroup" : "private" }, text: sent.text },
    });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const match = /^\/bot([^/]+)\/(\w+)$/.exec(new URL(req.url ?? "/", "http://x").pathname);
    if (!match) return reply(res, 404, fail(404, "Not Found"));
    const payload = await readJson(req).catch(() => ({}) as Record<string, unknown>);
    const method = match[2] as string;
    const call: FakeTelegramCall = { method, payload, at: Date.now(), status: 0 };
    const record = (status: number): void => {
      call.status = status;
      state.counts[method] = (state.counts[method] ?? 0) + 1;
      if (keep) state.calls.push(call);
      events.emit("call");
    };
    if (match[1] !== token) {
      record(401);
      return reply(res, 401, fail(401, "Unauthorized"));
    }
    const faultAt = state.faults.findIndex((f) => (f.method === undefined || f.method === method) && (f.match?.(payload) ?? true));
    if (faultAt >= 0) {
      const [fault] = state.faults.splice(faultAt, 1);
      if (fault) {
        record(fault.status);
        const d = fault.description ?? (fault.status === 429 ? `Too Many Requests: retry after ${fault.retryAfter ?? 1}` : fault.status === 403 ? "Forbidden: bot was blocked by the user" : "Internal Server Error");
        return reply(res, fault.status, fail(fault.status, d, fault.status === 429 ? (fault.retryAfter ?? 1) : undefined, fault.migrateTo));
      }
    }
    const ok = (result: unknown): void => {
      record(200);
      reply(res, 200, { ok: true, result });
    };
    switch (method) {
      case "getMe":
        return ok({ id: bot.id, is_bot: true, first_name: "Zepto Test", username: bot.username, can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false });
      case "getUpdates":
        return getUpdates(payload, res, record);
      case "sendMessage":
        return message(payload, res, record, false);
      case "editMessageText":
        return message(payload, res, record, true);
      case "sendChatAction":
      case "setMyCommands":
        return ok(true);
      case "setWebhook":
        state.webhook = { url: String(payload.url), ...(typeof payload.secret_token === "string" ? { secret: payload.secret_token } : {}) };
        return ok(true);
      case "deleteWebhook":
        state.webhook = undefined;
        return ok(true);
      default:
        record(404);
        return reply(res, 404, fail(404, "Not Found: method not found"));
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) reply(res, 500, fail(500, `fake failed: ${String(err)}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = async () => {
    for (const res of waiting) res.end();
    waiting.clear();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  };
  return state;
}

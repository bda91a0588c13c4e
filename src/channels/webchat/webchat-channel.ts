import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as z from "zod/mini";
import { BusClosedError, BusFullError, RefusedError, StorageError } from "../../errors.js";
import { HttpError, readBody, sendJson } from "../../http/http-server.js";
import type { InboundMessage, OutboundMessage } from "../../messages.js";
import type { Channel, ChannelContext } from "../types.js";
import { SseHub } from "./sse-hub.js";

/**
 * A message id: `webchat:`, the time in ms (12 hex digits), then a random UUID. The UUID
 * makes it unguessable (it is what lets its sender read the result at
 * `/api/messages/:id`); the time in front makes ids arrive in order, so the journal's
 * unique index on them grows at its right edge instead of dirtying a random page each
 * insert. The journal keeps a day of rows; with 10,000 and 200,000 of them, a message's
 * share of the commits costs 60-63 µs against 101-130 µs with a bare UUID
 * (`node dist/bench/journal-ids.js`).
 */
export function messageId(): string {
  return `webchat:${Date.now().toString(16).padStart(12, "0")}-${randomUUID()}`;
}

/** What `GET /api/messages/:id` shows; the gateway's result store provides it. */
export interface WebchatResult {
  status: "pending" | "done" | "error";
  userId: string;
  reply?: string;
  error?: string;
}

/** Settings of the web chat channel. */
export interface WebchatChannelConfig {
  maxBodyBytes: number;
  /**
   * User names that may post and stream; empty admits everyone unless `denyByDefault`.
   * The web chat trusts the `user` field, so this separates people on a trusted network,
   * it does not authenticate them (see SECURITY.md).
   */
  allowFrom?: readonly string[];
  denyByDefault?: boolean;
  /** Absolute path of the chat page served at `/`. */
  pagePath: string;
  lookup(id: string): Promise<WebchatResult | undefined>;
  /** Shown on the page and by `/api/status`: what the operator must set, if anything. */
  status(): { llmConfigured: boolean; hint?: string };
}

const MAX_TEXT = 32_000;
/** Streamed tokens are sent together at most this often. */
const PREVIEW_MS = 50;
const userField = z.string({ error: "user: expected a string" }).check(
  z.minLength(1, { error: "user: must not be empty" }),
  z.maxLength(200, { error: "user: at most 200 characters" }),
  z.refine((v) => !/[\u0000-\u001f\u007f]/.test(v), { error: "user: control characters are not allowed" }),
);
const bodySchema = z.strictObject(
  {
    user: userField,
    text: z.string({ error: "text: expected a string" }).check(
      z.maxLength(MAX_TEXT, { error: `text: at most ${MAX_TEXT} characters` }),
      z.refine((v) => v.trim().length > 0, { error: "text: must not be empty" }),
    ),
  },
  { error: (i) => (i.code === "unrecognized_keys" ? `unknown field(s): ${i.keys.join(", ")}` : "expected a JSON object {\"user\", \"text\"}") },
);

const utf8 = new TextDecoder("utf-8", { fatal: true });

function parseMessageBody(buf: Buffer): { user: string; text: string } {
  let text: string;
  try {
    text = utf8.decode(buf);
  } catch {
    throw new HttpError(400, "body is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `body is not valid JSON: ${err instanceof SyntaxError ? err.message : "too deeply nested"}`);
  }
  const parsed = bodySchema.safeParse(json);
  if (!parsed.success) throw new HttpError(400, parsed.error.issues.map((i) => i.message).join("; "));
  return parsed.data;
}

/**
 * JSON only, declared as such. A page elsewhere may post to the gateway without the browser
 * asking first only with a "simple" content type (form data, text/plain, or none at all);
 * requiring application/json makes the browser ask (CORS preflight), and the gateway never
 * says yes: no other site can post as a user or wipe their session with "/reset".
 */
function requireJson(req: IncomingMessage): void {
  const type = req.headers["content-type"];
  if (type === undefined || !/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, "send the body as JSON with Content-Type: application/json");
  }
}

/**
 * The embedded web chat: a JSON API (`POST /api/messages`, `GET /api/messages/:id`), a
 * server-sent-events stream of replies (`GET /api/stream?user=`) and a page at `/`.
 */
export class WebchatChannel implements Channel {
  readonly id = "webchat" as const;
  readonly limits = { maxTextLength: Number.MAX_SAFE_INTEGER, canEdit: false, canType: false };
  // Outcomes are readable at GET /api/messages/:id, so nothing is pushed twice after a crash.
  readonly resendAfterCrash = false;
  private readonly hub = new SseHub();
  /** Streamed text not sent yet, per conversation (one reply at a time: the bus keeps a user's order). */
  private readonly pending = new Map<string, { id: string; text: string; timer: NodeJS.Timeout }>();
  private page: Buffer | undefined;

  private readonly allowed: (user: string) => boolean;

  constructor(private readonly cfg: WebchatChannelConfig) {
    const names = new Set(cfg.allowFrom ?? []);
    this.allowed = names.size > 0 ? (user) => names.has(user) : () => !cfg.denyByDefault;
  }

  async start(ctx: ChannelContext): Promise<void> {
    this.page = readFileSync(this.cfg.pagePath);
    const page = this.page;
    ctx.http.add("GET", "/", (_req, res) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "content-length": page.length, "cache-control": "no-cache" });
      res.end(page);
    });
    ctx.http.add("GET", "/api/status", (_req, res) => sendJson(res, 200, this.cfg.status()));
    ctx.http.add("POST", "/api/messages", (req, res) => this.post(req, res, ctx));
    ctx.http.add("GET", "/api/messages/*", (_req, res, url) => this.get(res, url));
    ctx.http.add("GET", "/api/stream", (req, res, url) => this.stream(req, res, url));
  }

  private async post(req: IncomingMessage, res: ServerResponse, ctx: ChannelContext): Promise<void> {
    requireJson(req);
    const body = parseMessageBody(await readBody(req, this.cfg.maxBodyBytes));
    if (!this.allowed(body.user)) throw new HttpError(403, `user "${body.user}" is not allowed here (channels.webchat.allow_from)`);
    const conversationId = `webchat:${body.user}`;
    const m: InboundMessage = {
      id: messageId(),
      channel: "webchat",
      conversationId,
      userId: conversationId,
      sender: { id: body.user, isBot: false },
      text: body.text,
      isDirect: true,
      mentionsBot: true,
      attachments: [],
      receivedAt: Date.now(),
    };
    try {
      await ctx.publish(m);
    } catch (err) {
      if (err instanceof BusFullError) throw new HttpError(503, "busy, try again in a moment", { "retry-after": "1" });
      if (err instanceof RefusedError) throw new HttpError(err.reason === "flood" ? 429 : 403, err.message, err.reason === "flood" ? { "retry-after": "2" } : {});
      if (err instanceof BusClosedError) throw new HttpError(503, "the gateway is restarting, try again in a moment", { "retry-after": "2" });
      // Not journaled, so not accepted: the client may send it again.
      if (err instanceof StorageError) throw new HttpError(503, "the message store is failing; the message was not accepted, try again in a minute", { "retry-after": "30" });
      throw err;
    }
    sendJson(res, 202, { id: m.id });
  }

  private async get(res: ServerResponse, url: URL): Promise<void> {
    let id: string;
    try {
      id = decodeURIComponent(url.pathname.slice("/api/messages/".length));
    } catch {
      throw new HttpError(400, "malformed message id");
    }
    if (!id.startsWith("webchat:") || id.length > 100) throw new HttpError(404, "no such message");
    const result = await this.cfg.lookup(id);
    if (!result) throw new HttpError(404, "no such message");
    sendJson(res, 200, {
      status: result.status,
      ...(result.reply !== undefined ? { reply: result.reply } : {}),
      ...(result.error !== undefined ? { error: result.error } : {}),
    });
  }

  private stream(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const user = url.searchParams.get("user");
    const check = userField.safeParse(user ?? "");
    if (!check.success) throw new HttpError(400, user === null ? "user: required as ?user=" : (check.error.issues[0]?.message ?? "bad user"));
    if (!this.allowed(check.data)) throw new HttpError(403, `user "${check.data}" is not allowed here (channels.webchat.allow_from)`);
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    if (!this.hub.add(`webchat:${check.data}`, res)) {
      res.end("event: error\ndata: {\"error\":\"too many open streams\"}\n\n");
      return;
    }
    res.write(": connected\n\n");
    req.socket.setNoDelay(true);
  }

  async stop(): Promise<void> {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    this.hub.close();
  }

  async send(m: OutboundMessage): Promise<{ messageId: string }> {
    // The whole text supersedes streamed pieces not sent yet.
    const p = this.pending.get(m.conversationId);
    if (p && p.id === m.replyToId) this.dropPreview(m.conversationId, p);
    this.hub.emit(m.conversationId, "reply", { id: m.replyToId, status: m.isError ? "error" : "done", text: m.text });
    return { messageId: m.idempotencyKey };
  }

  /**
   * Streams a reply as it is written, in batches: tokens that arrive within PREVIEW_MS go out
   * as one `token` event (20 a second still reads as typing), and a reply that is complete
   * before then sends none. One SSE write per token cost a syscall and a JSON encoding each.
   */
  preview(conversationId: string, replyToId: string, chunk: string | null): void {
    const p = this.pending.get(conversationId);
    if (chunk === null) {
      if (p) this.dropPreview(conversationId, p);
      this.hub.emit(conversationId, "restart", { id: replyToId });
      return;
    }
    if (p && p.id === replyToId) {
      p.text += chunk;
      return;
    }
    if (p) this.flushPreview(conversationId, p);
    if (!this.hub.has(conversationId)) return;
    const timer = setTimeout(() => {
      const q = this.pending.get(conversationId);
      if (q) this.flushPreview(conversationId, q);
    }, PREVIEW_MS);
    timer.unref();
    this.pending.set(conversationId, { id: replyToId, text: chunk, timer });
  }

  private flushPreview(conversationId: string, p: { id: string; text: string; timer: NodeJS.Timeout }): void {
    this.dropPreview(conversationId, p);
    this.hub.emit(conversationId, "token", { id: p.id, text: p.text });
  }

  private dropPreview(conversationId: string, p: { timer: NodeJS.Timeout }): void {
    clearTimeout(p.timer);
    this.pending.delete(conversationId);
  }
}

import type { Logger } from "pino";
import { toChannelError } from "./api.js";
import { parseConversationId } from "./ids.js";
import type { SendTarget, TelegramOutbox } from "./outbox.js";
import { renderReply } from "./render.js";

/** How often a streamed reply touches Telegram. */
export interface PreviewTiming {
  /** Wait after the first piece before the message appears: short answers never stream. */
  firstDelayMs: number;
  /** Least time between two edits; Telegram allows about one per second per chat. */
  intervalMs: number;
}

interface Stream {
  target: SendTarget;
  text: string;
  /** The plain form of what the message shows now. */
  shown: string;
  messageId?: number;
  timer?: NodeJS.Timeout;
  inflight?: Promise<void>;
  startedAt: number;
  lastFlushAt: number;
  touchedAt: number;
  /** Stopped for good: finished, rate-limited or refused. */
  dead: boolean;
}

const MAX_STREAMS = 1_000;
const STALE_MS = 10 * 60_000;

/**
 * Shows replies while they are generated: the first piece starts a timer, one message is sent
 * when it fires, and it is edited at most once per interval. Previews are best effort and go
 * through the non-retrying client; `finish` hands the message over to the final send.
 */
export class PreviewStreams {
  private readonly streams = new Map<string, Stream>();
  private readonly finished = new Set<string>();

  constructor(
    private readonly outbox: TelegramOutbox,
    private readonly timing: PreviewTiming,
    private readonly logger: () => Logger,
    private readonly token: string,
  ) {}

  /** A streamed piece for the reply to `replyToId`; null discards what was shown. */
  push(conversationId: string, replyToId: string, chunk: string | null): void {
    if (this.finished.has(replyToId)) return;
    const target = parseConversationId(conversationId);
    if (!target) return;
    let s = this.streams.get(replyToId);
    const now = Date.now();
    if (!s) {
      this.sweep(now);
      s = { target: { ...target }, text: "", shown: "", startedAt: now, lastFlushAt: 0, touchedAt: now, dead: false };
      const quoted = /^telegram:-?\d+:(\d+)$/.exec(replyToId);
      if (quoted) s.target.replyToMessageId = Number(quoted[1]);
      this.streams.set(replyToId, s);
    }
    s.touchedAt = now;
    s.text = chunk === null ? "" : s.text + chunk;
    this.schedule(s);
  }

  /** Stops streaming the reply to `replyToId`; resolves with the message it showed, if any. */
  async finish(replyToId: string): Promise<number | undefined> {
    this.finished.add(replyToId);
    if (this.finished.size > MAX_STREAMS) this.finished.delete(this.finished.values().next().value as string);
    const s = this.streams.get(replyToId);
    if (!s) return undefined;
    this.streams.delete(replyToId);
    s.dead = true;
    clearTimeout(s.timer);
    await s.inflight;
    return s.messageId;
  }

  /** Cancels every timer; in-flight calls finish on their own. */
  stop(): void {
    for (const s of this.streams.values()) {
      s.dead = true;
      clearTimeout(s.timer);
    }
    this.streams.clear();
  }

  private schedule(s: Stream): void {
    if (s.dead || s.timer || s.inflight) return;
    const due = s.messageId === undefined ? s.startedAt + this.timing.firstDelayMs : s.lastFlushAt + this.timing.intervalMs;
    s.timer = setTimeout(() => this.flush(s), Math.max(0, due - Date.now()));
  }

  private flush(s: Stream): void {
    s.timer = undefined;
    if (s.dead || s.text.trim() === "") return;
    const [part] = renderReply(s.text);
    if (!part || part.plain === s.shown) return;
    s.inflight = (async () => {
      if (s.messageId === undefined) {
        const id = await this.outbox.send(s.target, part);
        if (id === undefined) s.dead = true;
        else s.messageId = id;
      } else {
        await this.outbox.edit(s.target, s.messageId, part);
      }
      s.shown = part.plain;
    })()
      .catch((err: unknown) => {
        const e = toChannelError(err, this.token);
        // A 429 or a refusal ends the preview; the final send (with retries) still delivers.
        if (e.status === 429 || !e.retryable) s.dead = true;
        this.logger().debug({ err: e }, "reply preview skipped");
      })
      .finally(() => {
        s.inflight = undefined;
        s.lastFlushAt = Date.now();
        if (s.text.trim() !== "" && renderReply(s.text)[0]?.plain !== s.shown) this.schedule(s);
      });
  }

  private sweep(now: number): void {
    if (this.streams.size < MAX_STREAMS) return;
    for (const [id, s] of this.streams) {
      if (now - s.touchedAt > STALE_MS || this.streams.size >= MAX_STREAMS) {
        s.dead = true;
        clearTimeout(s.timer);
        this.streams.delete(id);
      }
    }
  }
}

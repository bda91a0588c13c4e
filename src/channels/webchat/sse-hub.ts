import type { ServerResponse } from "node:http";

function send(res: ServerResponse, frame: string): void {
  if (res.writableLength > MAX_UNREAD_BYTES) {
    // Its "close" handler unsubscribes it.
    res.destroy();
    return;
  }
  res.write(frame);
}

/**
 * Most bytes a subscriber may leave unread in this process. A stream whose client stopped
 * reading (a frozen tab, a paused socket) would otherwise hold every reply sent to it for as
 * long as it stays open; past this it is dropped, and an EventSource reconnects by itself.
 */
export const MAX_UNREAD_BYTES = 1 << 20;

/** Server-sent-event subscribers per conversation, bounded per conversation, in total and in unread bytes. */
export class SseHub {
  private readonly subs = new Map<string, Set<ServerResponse>>();
  private total = 0;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    private readonly maxPerKey = 8,
    private readonly maxTotal = 10_000,
  ) {
    // Proxies close quiet connections; a comment line every 20 s keeps them open.
    this.heartbeat = setInterval(() => {
      for (const set of this.subs.values()) for (const res of set) send(res, ": ping\n\n");
    }, 20_000);
    this.heartbeat.unref();
  }

  /** Subscribes `res`; returns false when the limits are reached. */
  add(key: string, res: ServerResponse): boolean {
    let set = this.subs.get(key);
    if (this.total >= this.maxTotal || (set && set.size >= this.maxPerKey)) return false;
    if (!set) {
      set = new Set();
      this.subs.set(key, set);
    }
    set.add(res);
    this.total++;
    res.on("close", () => {
      if (set.delete(res)) this.total--;
      if (set.size === 0 && this.subs.get(key) === set) this.subs.delete(key);
    });
    return true;
  }

  /** Whether anyone listens on `key`. */
  has(key: string): boolean {
    return this.subs.has(key);
  }

  /** Sends one event to every subscriber of `key`. */
  emit(key: string, event: string, data: unknown): void {
    const set = this.subs.get(key);
    if (!set) return;
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const res of set) send(res, frame);
  }

  /** Ends every stream. */
  close(): void {
    clearInterval(this.heartbeat);
    for (const set of this.subs.values()) for (const res of set) res.end();
    this.subs.clear();
    this.total = 0;
  }
}

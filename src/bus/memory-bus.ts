import { setMaxListeners } from "node:events";
import type { Logger } from "pino";
import { BusClosedError, BusFullError } from "../errors.js";
import type { InboundMessage } from "../messages.js";
import type { Bus, DrainReport, MessageHandler } from "./types.js";

/** Settings of the in-process bus, from `[bus]`. */
export interface MemoryBusOptions {
  bufferSize: number;
  maxConcurrency: number;
  drainTimeoutMs: number;
  logger: Logger;
  /**
   * Makes acceptance durable: called before `publish` resolves; resolves false when the
   * message was accepted before (a platform re-delivery), which is then not run again.
   */
  journal?: (m: InboundMessage) => Promise<boolean>;
}

/** A user's queue: an array consumed from `head`, so dequeue is O(1) without shifting. */
interface Lane {
  items: InboundMessage[];
  head: number;
  running: boolean;
}

/**
 * The in-process bus. One lane per user keeps that user's messages in order and one at a
 * time; lanes with work wait in a FIFO for one of `maxConcurrency` slots. The whole bus
 * holds at most `bufferSize` unfinished messages.
 */
export class MemoryBus implements Bus {
  private readonly lanes = new Map<string, Lane>();
  private readonly ready: string[] = [];
  private readyHead = 0;
  private handler: MessageHandler | undefined;
  private active = 0;
  private count = 0;
  private closed = false;
  private readonly abort = new AbortController();
  private readonly inFlight = new Set<string>();
  private idle: (() => void) | undefined;

  constructor(private readonly options: MemoryBusOptions) {
    // Every message in flight listens on this one signal (up to bus.max_concurrency at once)
    // and stops listening when it ends: many listeners are expected, not a leak.
    setMaxListeners(0, this.abort.signal);
  }

  get depth(): number {
    return this.count;
  }

  async publish(m: InboundMessage): Promise<void> {
    if (this.closed) throw new BusClosedError();
    if (this.count >= this.options.bufferSize) throw new BusFullError(this.options.bufferSize);
    // The slot is taken before the journal write, so what was journaled always fits.
    this.count++;
    if (this.options.journal) {
      let isNew: boolean;
      try {
        isNew = await this.options.journal(m);
      } catch (err) {
        this.count--;
        throw err;
      }
      if (!isNew) {
        this.count--;
        return;
      }
    }
    this.enqueue(m);
  }

  /** Re-runs messages a previous process accepted and never answered, ahead of new ones. */
  replay(messages: InboundMessage[]): void {
    for (const m of messages) {
      this.count++;
      this.enqueue(m);
    }
  }

  private enqueue(m: InboundMessage): void {
    let lane = this.lanes.get(m.userId);
    if (!lane) {
      lane = { items: [], head: 0, running: false };
      this.lanes.set(m.userId, lane);
    }
    lane.items.push(m);
    if (!lane.running && lane.items.length - lane.head === 1) this.ready.push(m.userId);
    this.pump();
  }

  consume(handler: MessageHandler): void {
    this.handler = handler;
    this.pump();
  }

  private pump(): void {
    if (!this.handler) return;
    while (this.active < this.options.maxConcurrency && this.readyHead < this.ready.length) {
      const userId = this.ready[this.readyHead++] as string;
      const lane = this.lanes.get(userId);
      if (!lane || lane.running || lane.head >= lane.items.length) continue;
      lane.running = true;
      this.active++;
      void this.runLane(userId, lane);
    }
    if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
      this.ready.splice(0, this.readyHead);
      this.readyHead = 0;
    }
  }

  private async runLane(userId: string, lane: Lane): Promise<void> {
    const handler = this.handler as MessageHandler;
    const m = lane.items[lane.head] as InboundMessage;
    lane.items[lane.head] = undefined as unknown as InboundMessage;
    lane.head++;
    this.inFlight.add(m.id);
    try {
      await handler(m, this.abort.signal);
    } catch (err) {
      // The handler owns error replies; reaching here is a bug, logged and survived.
      this.options.logger.error({ err, msgId: m.id }, "message handler threw");
    } finally {
      this.inFlight.delete(m.id);
      this.count--;
      this.active--;
      if (lane.head < lane.items.length) {
        // Fairness: a busy user goes to the back of the line instead of keeping the slot.
        this.ready.push(userId);
      } else {
        this.lanes.delete(userId);
      }
      lane.running = false;
      if (lane.head >= 64 && lane.head * 2 > lane.items.length) {
        lane.items.splice(0, lane.head);
        lane.head = 0;
      }
      this.pump();
      if (this.count === 0 && this.idle) this.idle();
    }
  }

  async close(budgetMs = this.options.drainTimeoutMs): Promise<DrainReport> {
    this.closed = true;
    if (this.count > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.idle = resolve;
        timer = setTimeout(resolve, budgetMs);
      });
      clearTimeout(timer);
    }
    const report: DrainReport = { aborted: [...this.inFlight], unstarted: [] };
    for (const lane of this.lanes.values()) {
      for (let i = lane.head; i < lane.items.length; i++) report.unstarted.push((lane.items[i] as InboundMessage).id);
    }
    if (report.aborted.length > 0 || report.unstarted.length > 0) {
      this.abort.abort(new BusClosedError());
      // Stop feeding new work; lanes that are running see the abort signal.
      this.handler = undefined;
      this.lanes.clear();
    }
    return report;
  }
}

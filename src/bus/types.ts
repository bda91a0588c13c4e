import type { InboundMessage } from "../messages.js";

/** Handles one message; the bus calls it one at a time per user. */
export type MessageHandler = (m: InboundMessage, signal: AbortSignal) => Promise<void>;

/** What `close()` left behind when its budget ran out. */
export interface DrainReport {
  /** Messages that were running when the budget ended (their handlers were aborted). */
  aborted: string[];
  /** Messages still queued, never started. */
  unstarted: string[];
}

/** Carries accepted messages to the handler: per-user order, cross-user parallelism, bounded. */
export interface Bus {
  /** Resolves once accepted; rejects with `BusFullError` when full, `BusClosedError` after close. */
  publish(m: InboundMessage): Promise<void>;
  /** Sets the handler; messages flow once it is set. */
  consume(handler: MessageHandler): void;
  /** Stops intake and drains in-flight work within the budget. */
  close(budgetMs?: number): Promise<DrainReport>;
  /** Messages accepted and not yet finished. */
  readonly depth: number;
}

import type { WriteBehindMap } from "./write-behind.js";

/** Where a message stands: waiting for its reply, answered, or answered with an error. */
export type MessageStatus = "pending" | "done" | "error";

/** The outcome of one accepted message, readable by its id after a restart too. */
export interface MessageResult {
  status: MessageStatus;
  /** The owner, so a channel can refuse to show it to anyone else. */
  userId: string;
  reply?: string;
  error?: string;
}

/** Outcomes of accepted messages, keyed by message id. */
export class ResultStore {
  constructor(private readonly map: WriteBehindMap<MessageResult>) {}

  /** Looks a message up; undefined when unknown or expired. Throws `StorageError`. */
  get(id: string): Promise<MessageResult | undefined> {
    return this.map.get(id);
  }

  /** Records a message's state; committed with the next batch. */
  set(id: string, result: MessageResult): void {
    this.map.set(id, result);
  }

  /** Forgets a message (one the bus refused after all). */
  delete(id: string): void {
    this.map.delete(id);
  }
}

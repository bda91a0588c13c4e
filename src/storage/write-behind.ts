import type Keyv from "keyv";
import type { Logger } from "pino";
import { StorageError } from "../errors.js";
import { afterTimerTick, nextTurn, SliceSizer } from "./slices.js";

/** How long one slice of a flush may hold the event loop. */
const SLICE_BUDGET_MS = 0.25;

interface Entry<T> {
  value: T | undefined;
  expiresAt: number;
  /** Bumped on every change, so a flush only marks clean what it actually wrote. */
  version: number;
}

/** Settings of a `WriteBehindMap`. */
export interface WriteBehindOptions<T = unknown> {
  /** Hot entries kept in memory; clean ones beyond this are evicted, oldest first. */
  maxEntries: number;
  /** How long changes may wait before they are committed together. */
  flushIntervalMs: number;
  /** Time to live after the last write. */
  ttlMs: number;
  logger: Logger;
  /** Turns a value read from the store (parsed JSON) into the form held in memory; identity by default. */
  revive?: (stored: unknown) => T;
  /** How long a background flush paces its slices before it runs them back to back; half the interval by default. */
  paceForMs?: number;
}

/**
 * A bounded cache in front of a Keyv store whose writes are coalesced and committed in
 * batches: reads of hot keys never touch the disk and a burst of writes costs one transaction.
 *
 * What a crash can lose: changes not yet committed, at most about one and a half
 * `flushIntervalMs` old (a change waits up to an interval for the flush, and a background
 * flush may pace its slices over half an interval more). Callers that must not lose a write
 * (acceptance of a message) await `flush()`.
 */
export class WriteBehindMap<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly dirty = new Set<string>();
  /** Keys in a batch being committed right now: not evictable until it lands. */
  private readonly writing = new Set<string>();
  private readonly loading = new Map<string, Promise<T | undefined>>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  private closed = false;
  /** Set while someone waits for a flush: its slices then run back to back. */
  private hurry = 0;
  /** Entries per flush slice, adapted so that a slice takes about SLICE_BUDGET_MS. */
  private readonly slices = new SliceSizer(SLICE_BUDGET_MS, 1, 256, 16);

  constructor(
    private readonly keyv: Keyv,
    private readonly options: WriteBehindOptions<T>,
  ) {}

  /** Number of entries held in memory. */
  get size(): number {
    return this.entries.size;
  }

  /** Number of changes not yet committed. */
  get pending(): number {
    return this.dirty.size;
  }

  /** Reads a value: from memory when hot, else from the store. Store failures throw `StorageError`. */
  async get(key: string): Promise<T | undefined> {
    const hit = this.entries.get(key);
    if (hit) {
      if (hit.expiresAt <= Date.now()) return undefined;
      // Refresh recency: Map keeps insertion order, so re-inserting makes this the newest.
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.value;
    }
    const inFlight = this.loading.get(key);
    if (inFlight) return inFlight;
    const load = this.load(key);
    this.loading.set(key, load);
    try {
      return await load;
    } finally {
      this.loading.delete(key);
    }
  }

  private async load(key: string): Promise<T | undefined> {
    let raw: { value?: T; expires?: number } | undefined;
    try {
      raw = (await this.keyv.getRaw(key)) as { value?: T; expires?: number } | undefined;
    } catch (err) {
      throw new StorageError(`store read failed for a ${this.keyv.namespace ?? "keyv"} entry`, { cause: err });
    }
    // A write that raced the read wins: it is newer than what the disk had.
    const raced = this.entries.get(key);
    if (raced) return raced.expiresAt <= Date.now() ? undefined : raced.value;
    if (raw === undefined || raw === null) return undefined;
    const expiresAt = typeof raw.expires === "number" ? raw.expires : Number.POSITIVE_INFINITY;
    if (expiresAt <= Date.now()) return undefined;
    const value = this.options.revive ? this.options.revive(raw.value) : raw.value;
    this.entries.set(key, { value, expiresAt, version: 0 });
    this.evict();
    return value;
  }

  /** Writes a value; it is committed with the next batch. */
  set(key: string, value: T): void {
    this.change(key, value);
  }

  /** Deletes a value; the deletion is committed with the next batch. */
  delete(key: string): void {
    this.change(key, undefined);
  }

  private change(key: string, value: T | undefined): void {
    if (this.closed) throw new StorageError("store is closed");
    // Backpressure only while the disk fails: a healthy burst just makes a bigger batch.
    if (this.failures > 0 && this.dirty.size >= this.options.maxEntries * 2 && !this.dirty.has(key)) {
      throw new StorageError(`store is not accepting writes: ${this.dirty.size} changes wait for a failing disk`);
    }
    const entry = this.entries.get(key);
    const expiresAt = Date.now() + this.options.ttlMs;
    if (entry) {
      entry.value = value;
      entry.expiresAt = expiresAt;
      entry.version++;
      this.entries.delete(key);
      this.entries.set(key, entry);
    } else {
      this.entries.set(key, { value, expiresAt, version: 1 });
    }
    this.dirty.add(key);
    this.schedule();
    this.evict();
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    const backoff = this.failures === 0 ? 0 : Math.min(5_000, 100 * 2 ** this.failures);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flushWith(true).catch(() => undefined);
    }, this.options.flushIntervalMs + backoff);
    this.timer.unref();
  }

  private evict(): void {
    if (this.entries.size <= this.options.maxEntries) return;
    // Nothing (or next to nothing) is clean while a flush is due or failing: scanning every
    // entry on each set to find that out made a burst of new users quadratic.
    if (this.entries.size <= this.dirty.size + this.writing.size) return;
    for (const [key] of this.entries) {
      if (this.entries.size <= this.options.maxEntries) break;
      if (!this.dirty.has(key) && !this.writing.has(key)) this.entries.delete(key);
    }
  }

  /** Commits every pending change in one batch; resolves when it is on disk. */
  async flush(): Promise<void> {
    // A background flush under way finishes at full speed: someone is waiting for it.
    this.hurry++;
    try {
      await this.flushWith(false);
    } finally {
      this.hurry--;
    }
  }

  private async flushWith(paced: boolean): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.dirty.size === 0) return;
    this.flushing = this.flushOnce(paced);
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  /**
   * Between two slices: a background flush (`paced`) waits for the next timer tick, about a
   * millisecond, so the slices share the loop with the messages' own work. Yielding with
   * setImmediate alone queued each slice ahead of the journal commits that the next I/O
   * queues, and a message arriving during a flush of 1,000 sessions waited behind a slice
   * at its acceptance and again at its reply. A flush that has taken half its interval, or
   * that someone awaits, runs its slices back to back so that it cannot fall behind.
   */
  private between(paced: boolean, startedAt: number): Promise<void> {
    const paceFor = this.options.paceForMs ?? this.options.flushIntervalMs / 2;
    if (paced && this.hurry === 0 && performance.now() - startedAt < paceFor) return afterTimerTick();
    return nextTurn();
  }

  private async flushOnce(paced: boolean): Promise<void> {
    const batch: { key: string; entry: Entry<T>; version: number }[] = [];
    for (const key of this.dirty) {
      const entry = this.entries.get(key);
      if (entry) batch.push({ key, entry, version: entry.version });
    }
    this.dirty.clear();
    for (const b of batch) this.writing.add(b.key);
    const now = Date.now();
    const sets: { key: string; value: unknown; ttl: number }[] = [];
    const deletes: string[] = [];
    for (const { key, entry } of batch) {
      if (entry.value === undefined) deletes.push(key);
      else sets.push({ key, value: entry.value, ttl: Math.max(1, entry.expiresAt - now) });
    }
    const startedAt = performance.now();
    try {
      // Slices sized to about SLICE_BUDGET_MS each (serializing and committing them runs on this
      // thread), with a turn of the event loop between them: a message that arrives during a
      // flush of 1,000 sessions waits for one slice, not for the whole flush.
      for (let i = 0; i < sets.length; ) {
        if (i > 0) await this.between(paced, startedAt);
        const slice = sets.slice(i, i + this.slices.size);
        const started = performance.now();
        await this.keyv.setMany(slice);
        this.slices.record(slice.length, performance.now() - started);
        i += slice.length;
      }
      if (deletes.length > 0) await this.keyv.deleteMany(deletes);
      this.failures = 0;
    } catch (err) {
      // Nothing is dropped: the keys go back to dirty and the next flush retries them.
      for (const { key } of batch) this.dirty.add(key);
      this.failures++;
      this.options.logger.error({ err, pending: this.dirty.size }, "store write failed; will retry");
      if (!this.closed) this.schedule();
      throw new StorageError("store write failed", { cause: err });
    } finally {
      for (const b of batch) this.writing.delete(b.key);
    }
    for (const { key, entry, version } of batch) {
      if (entry.version !== version) this.dirty.add(key);
      else if (entry.value === undefined && this.entries.get(key) === entry) this.entries.delete(key);
    }
    if (this.dirty.size > 0) this.schedule();
    this.evict();
  }

  /** Flushes what is pending and stops the timer. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    this.closed = true;
  }
}

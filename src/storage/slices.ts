/** How long one range of rows of an expiry sweep may hold the event loop. */
export const SWEEP_BUDGET_MS = 2;

/** Resolves on the next turn of the event loop, after pending I/O callbacks. */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Resolves in the timers phase of a later turn (setTimeout's 1 ms least delay): paces work. */
export const afterTimerTick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * Sizes slices of synchronous work (a batch of SQLite writes, a range of rows to sweep) so
 * that each holds the event loop for about `budgetMs`: the size follows the measured time
 * per item, halfway at each step, so one slow slice (a GC, a disk hiccup) does not swing it.
 */
export class SliceSizer {
  private n: number;

  constructor(
    private readonly budgetMs: number,
    private readonly min: number,
    private readonly max: number,
    initial: number,
  ) {
    this.n = initial;
  }

  /** Items for the next slice. */
  get size(): number {
    return this.n;
  }

  /** Records that `items` took `ms`. */
  record(items: number, ms: number): void {
    if (items < this.n && ms < this.budgetMs) return; // a short tail says little
    const ideal = (items * this.budgetMs) / Math.max(ms, 0.001);
    this.n = Math.min(this.max, Math.max(this.min, Math.round((this.n + ideal) / 2)));
  }
}

/** What one range of a sweep did: its last row, the rows it deleted, whether to stop there. */
export interface SweptRange {
  edge: number;
  deleted: number;
  last?: boolean;
}

/**
 * Sweeps a table a range of rows at a time, in row order from the start: `step(after, size)`
 * handles up to `size` rows after row `after` and returns undefined when none are left. A
 * turn of the event loop separates ranges; `stopped()` ends the walk early. Returns the rows
 * deleted.
 */
export async function sweepInRanges(
  step: (after: number, size: number) => SweptRange | undefined,
  slices: SliceSizer,
  stopped: () => boolean,
): Promise<number> {
  let after = 0;
  let deleted = 0;
  while (!stopped()) {
    const started = performance.now();
    const range = step(after, slices.size);
    if (!range) break;
    deleted += range.deleted;
    slices.record(slices.size, performance.now() - started);
    if (range.last) break;
    after = range.edge;
    await nextTurn();
  }
  return deleted;
}

/** How long one range of rows of an expiry sweep may hold the event loop. */
export const SWEEP_BUDGET_MS = 2;

/** Resolves on the next turn of the event loop, after pending I/O callbacks. */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

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

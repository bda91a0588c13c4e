/** Settings of a `CircuitBreaker`. */
export interface CircuitBreakerOptions {
  /** Consecutive failed attempts that open the circuit. */
  threshold: number;
  /** How long it stays open before one trial call is let through. */
  cooldownMs: number;
  now?: () => number;
}

/**
 * Stops hammering a provider that is down: after `threshold` failed attempts in a row,
 * calls fail at once for `cooldownMs`; then one trial call decides whether it closes again.
 */
export class CircuitBreaker {
  private failures = 0;
  private openedAt: number | undefined;
  private trial = false;
  private readonly now: () => number;

  constructor(private readonly o: CircuitBreakerOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Milliseconds until a call may be tried again; 0 when a call may go now. */
  waitMs(): number {
    if (this.openedAt === undefined) return 0;
    const left = this.openedAt + this.o.cooldownMs - this.now();
    if (left > 0) return left;
    if (this.trial) return 1_000;
    this.trial = true;
    return 0;
  }

  /** True while calls are refused. */
  get isOpen(): boolean {
    return this.openedAt !== undefined && this.openedAt + this.o.cooldownMs > this.now();
  }

  success(): void {
    this.failures = 0;
    this.openedAt = undefined;
    this.trial = false;
  }

  failure(): void {
    this.failures++;
    if (this.trial || this.failures >= this.o.threshold) {
      this.openedAt = this.now();
      this.trial = false;
    }
  }
}

/** Settings of the per-user inbound flood limit, from `[limits]`. */
export interface FloodLimitOptions {
  /** Sustained messages per minute per user; 0 turns the limit off. */
  perMinute: number;
  /** Messages a user may send at once before the sustained rate applies. */
  burst: number;
  /** Users tracked at most; the least recently seen are forgotten first. */
  maxUsers?: number;
}

interface Bucket {
  tokens: number;
  at: number;
  /** When the user was last told to slow down. */
  warnedAt: number;
}

/** What the limiter decided for one message. */
export type FloodDecision = "ok" | "refuse" | "refuse-and-warn";

/**
 * A token bucket per user: `burst` messages at once, refilled at `perMinute`. Kept here
 * rather than in rate-limiter-flexible, whose memory limiter is a fixed window and cannot
 * express "bursts of 20, 30 a minute" in one bucket. Bounded: at most `maxUsers` buckets.
 */
export class FloodLimit {
  private readonly buckets = new Map<string, Bucket>();
  private readonly refillPerMs: number;
  private readonly maxUsers: number;

  constructor(private readonly o: FloodLimitOptions) {
    this.refillPerMs = o.perMinute / 60_000;
    this.maxUsers = o.maxUsers ?? 100_000;
  }

  /** Takes one token for `userId`; says whether to refuse, and whether to warn (once a minute). */
  take(userId: string, now = Date.now()): FloodDecision {
    if (this.o.perMinute <= 0) return "ok";
    let b = this.buckets.get(userId);
    if (b) {
      b.tokens = Math.min(this.o.burst, b.tokens + (now - b.at) * this.refillPerMs);
      b.at = now;
      this.buckets.delete(userId);
    } else {
      b = { tokens: this.o.burst, at: now, warnedAt: 0 };
    }
    this.buckets.set(userId, b);
    if (this.buckets.size > this.maxUsers) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return "ok";
    }
    if (now - b.warnedAt >= 60_000) {
      b.warnedAt = now;
      return "refuse-and-warn";
    }
    return "refuse";
  }
}

/** Settings of a `CircuitBreaker`. */
export interface CircuitBreakerOptions {
  /** Failed attempts within `windowMs` that open the circuit, if they are also half of the attempts there. */
  threshold: number;
  /** How long it stays open before one trial call is let through. */
  cooldownMs: number;
  /** How far back the counts reach (default 10 s), kept in ten slices. */
  windowMs?: number;
  now?: () => number;
}

const SLICES = 10;
/** The share of the window's attempts that must have failed, with `threshold`, to open the circuit. */
const FAILURE_RATIO = 0.5;

/**
 * Stops hammering a provider that is down: when the last `windowMs` saw `threshold` failed
 * attempts and they were at least half of all attempts, calls fail at once for
 * `cooldownMs`; then one trial call decides whether it closes again.
 *
 * A ratio over a window, not failures in a row: with hundreds of calls a second, a provider
 * that fails one call in five (and whose failures the retries absorb) gives five failures in
 * a row every few seconds by chance, and a breaker counting those refused every user for the
 * whole cooldown. A provider that is down fails nearly every call, which the ratio sees as
 * soon as `threshold` have failed; at a few calls a minute the window holds only those, so
 * `threshold` failures with no success between them open it, as before.
 */
export class CircuitBreaker {
  private openedAt: number | undefined;
  private trial = false;
  private readonly now: () => number;
  private readonly sliceMs: number;
  /** Per slice of the window: the slice's number (time ÷ sliceMs), its failures and its successes. */
  private readonly slice = new Float64Array(SLICES).fill(-1);
  private readonly failed = new Uint32Array(SLICES);
  private readonly succeeded = new Uint32Array(SLICES);

  constructor(private readonly o: CircuitBreakerOptions) {
    this.now = o.now ?? Date.now;
    this.sliceMs = Math.max(1, (o.windowMs ?? 10_000) / SLICES);
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

  /** The provider answered (an answer, or a refusal that shows it is up, such as a 429): a closed circuit. */
  success(): void {
    if (this.openedAt !== undefined) {
      // The trial (or a call started before the circuit opened) got through: start afresh.
      this.openedAt = undefined;
      this.trial = false;
      this.failed.fill(0);
      this.succeeded.fill(0);
    }
    this.succeeded[this.current()]!++;
  }

  /** An attempt failed in a way that says the provider is down or broken (no connection, a timeout, a 5xx). */
  failure(): void {
    this.failed[this.current()]!++;
    if (this.trial) {
      this.openedAt = this.now();
      this.trial = false;
      return;
    }
    if (this.openedAt !== undefined) return;
    let failed = 0;
    let all = 0;
    const oldest = Math.floor(this.now() / this.sliceMs) - SLICES + 1;
    for (let i = 0; i < SLICES; i++) {
      if (this.slice[i]! < oldest) continue;
      failed += this.failed[i]!;
      all += this.failed[i]! + this.succeeded[i]!;
    }
    if (failed >= this.o.threshold && failed >= all * FAILURE_RATIO) this.openedAt = this.now();
  }

  /** The slot of the slice `now` falls in, emptied first if it still holds an older slice. */
  private current(): number {
    const n = Math.floor(this.now() / this.sliceMs);
    const i = n % SLICES;
    if (this.slice[i] !== n) {
      this.slice[i] = n;
      this.failed[i] = 0;
      this.succeeded[i] = 0;
    }
    return i;
  }
}

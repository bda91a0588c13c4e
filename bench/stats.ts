/** Nearest-rank percentile of `sorted` (ascending); 0 for an empty list. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

const CHUNK = 16_384;
const MAX_US = 0xffff_ffff;

/**
 * A growable list of durations in milliseconds, held as whole microseconds (the precision
 * `summarize` reports) in fixed 64 KB chunks. On the inproc path these samples share the
 * measured process with the gateway: one Float64Array doubled on growth held up to twice
 * 8 bytes per message, which made the load generator a visible part of "memory per user".
 */
export class Samples {
  private readonly chunks: Uint32Array[] = [];
  private n = 0;

  get length(): number {
    return this.n;
  }

  push(ms: number): void {
    const i = this.n % CHUNK;
    if (i === 0) this.chunks.push(new Uint32Array(CHUNK));
    (this.chunks[this.chunks.length - 1] as Uint32Array)[i] = Math.min(MAX_US, Math.max(0, Math.round(ms * 1000)));
    this.n++;
  }

  /** The values in milliseconds, sorted ascending (a copy). */
  sorted(): Float64Array {
    const us = new Uint32Array(this.n);
    for (let c = 0; c < this.chunks.length; c++) {
      const chunk = this.chunks[c] as Uint32Array;
      us.set(chunk.subarray(0, Math.min(CHUNK, this.n - c * CHUNK)), c * CHUNK);
    }
    us.sort();
    const out = new Float64Array(this.n);
    for (let i = 0; i < this.n; i++) out[i] = (us[i] as number) / 1000;
    return out;
  }
}

/** p50, p90, p99 and max of some samples, rounded to microseconds. */
export function summarize(s: Samples): { p50: number; p90: number; p99: number; max: number } {
  const sorted = s.sorted();
  const r = (v: number): number => Math.round(v * 1000) / 1000;
  return {
    p50: r(percentile(sorted, 50)),
    p90: r(percentile(sorted, 90)),
    p99: r(percentile(sorted, 99)),
    max: r(sorted.length === 0 ? 0 : (sorted[sorted.length - 1] as number)),
  };
}

/** Least-squares line through the points: slope, intercept and r². */
export function linearFit(points: { x: number; y: number }[]): { slope: number; intercept: number; r2: number } {
  const n = points.length;
  if (n < 2) return { slope: 0, intercept: points[0]?.y ?? 0, r2: 0 };
  let sx = 0;
  let sy = 0;
  for (const p of points) {
    sx += p.x;
    sy += p.y;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (const p of points) {
    sxx += (p.x - mx) ** 2;
    sxy += (p.x - mx) * (p.y - my);
    syy += (p.y - my) ** 2;
  }
  if (sxx === 0) return { slope: 0, intercept: my, r2: 0 };
  const slope = sxy / sxx;
  return { slope, intercept: my - slope * mx, r2: syy === 0 ? 1 : (sxy * sxy) / (sxx * syy) };
}

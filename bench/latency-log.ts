import { writeFileSync } from "node:fs";

/** The parts of a run a message can belong to. */
export type LatencyPhase = "ramp" | "warmup" | "load";
const PHASES: readonly LatencyPhase[] = ["ramp", "warmup", "load"];
const FIELDS = 5;

/**
 * Every answered message's send time and latency, for `--latency-log`: which messages were
 * slow, and when, to set beside the gateway's own timeline (its GC events, a profile). Held
 * as numbers until the run ends, 40 bytes a message, then written as CSV.
 */
export class LatencyLog {
  private readonly rows: number[] = [];

  /** `sentAt` is `performance.now()` in this process; the file gets milliseconds since the epoch. */
  record(phase: LatencyPhase, sentAt: number, user: number, latencyMs: number, overheadMs: number): void {
    this.rows.push(PHASES.indexOf(phase), performance.timeOrigin + sentAt, user, latencyMs, overheadMs);
  }

  get length(): number {
    return this.rows.length / FIELDS;
  }

  /** Writes the CSV (a header, then one line a message in reply order); returns the lines written. */
  write(file: string): number {
    const lines = ["phase,sent_at_ms,user,latency_ms,overhead_ms"];
    const r = this.rows;
    for (let i = 0; i < r.length; i += FIELDS) {
      lines.push(`${PHASES[r[i] as number]},${(r[i + 1] as number).toFixed(3)},${r[i + 2]},${(r[i + 3] as number).toFixed(3)},${(r[i + 4] as number).toFixed(3)}`);
    }
    writeFileSync(file, `${lines.join("\n")}\n`);
    return lines.length - 1;
  }
}

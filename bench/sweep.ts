import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onInterrupt } from "./interrupt.js";
import type { BenchOptions } from "./options.js";
import type { BenchReport } from "./runner.js";
import { linearFit } from "./stats.js";
import { BUILT_CLI } from "./targets/gateway-child.js";

/** The result of a sweep: one report per user count and the memory fitted across them. */
export interface SweepResult {
  points: BenchReport[];
  /** Slope of settled RSS over users across every point, KB per user. */
  per_user_kb: number;
  /** The same slope between consecutive points. */
  between: { from: number; to: number; per_user_kb: number }[];
}

const rssOf = (r: BenchReport): number => {
  const settled = r.details.rss_settled_mb;
  return typeof settled === "number" ? settled : r.rss_mb.end;
};

/** Runs each user count in a fresh process, so one point's heap never inflates the next one's RSS. */
export async function runSweep(o: BenchOptions, counts: number[], log: (line: string) => void): Promise<SweepResult> {
  const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-sweep-"));
  const forgetDir = onInterrupt(() => rmSync(dir, { recursive: true, force: true }));
  const points: BenchReport[] = [];
  try {
    for (const users of counts) {
      const file = join(dir, `${users}.json`);
      const args = [BUILT_CLI, "bench", "--users", String(users), "--duration", String(o.durationS), "--rate", String(o.rate), "--llm-latency", String(o.llmLatencyMs), "--path", o.path, "--settle", String(o.settleS), "--warmup", String(o.warmupS), "--json", file, "--progress", o.progress === "off" ? "off" : "plain"];
      if (o.memoryProfile) args.push("--memory-profile");
      for (const a of o.gatewayNodeArgs) args.push(`--gateway-node-arg=${a}`);
      if (o.gatewayLog !== undefined) args.push("--gateway-log", o.gatewayLog);
      log(`sweep: ${users} users...`);
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"] });
        // A point's own run stops its gateway and removes its files on SIGTERM.
        const forget = onInterrupt(() => child.kill("SIGTERM"));
        child.on("error", reject);
        child.on("exit", (c) => {
          forget();
          resolve(c ?? 1);
        });
      });
      if (code !== 0) throw new Error(`the sweep run with ${users} users exited with code ${code}`);
      points.push(JSON.parse(readFileSync(file, "utf8")) as BenchReport);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    forgetDir();
  }
  const fit = linearFit(points.map((p) => ({ x: p.users, y: rssOf(p) * 1024 })));
  const between = points.slice(1).map((p, i) => {
    const prev = points[i] as BenchReport;
    return { from: prev.users, to: p.users, per_user_kb: Math.round(((rssOf(p) - rssOf(prev)) * 1024 * 1000) / (p.users - prev.users)) / 1000 };
  });
  return { points, per_user_kb: Math.round(fit.slope * 1000) / 1000, between };
}

/** The sweep as a table like ZeptoClaw's (users -> RAM -> msg/s), with what it leaves out. */
export function formatSweep(s: SweepResult): string {
  const rows = s.points.map(
    (p) =>
      `${String(p.users).padStart(8)}  ${p.rss_mb.peak.toFixed(1).padStart(9)}  ${rssOf(p).toFixed(1).padStart(11)}  ${p.throughput_msg_s.toFixed(0).padStart(9)}  ${p.latency_ms.p99.toFixed(2).padStart(8)}  ${p.overhead_ms.p99.toFixed(2).padStart(11)}  ${String(p.lost).padStart(5)}  ${String(p.duplicated).padStart(4)}`,
  );
  const zepto = s.points.map((p) => `${p.users} users → ${p.rss_mb.peak.toFixed(0)} MB RAM → ${p.throughput_msg_s.toFixed(0)} msg/s`);
  return [
    "   users  peak RSS MB  settled RSS MB  msg/s    p99 ms  overhead p99  lost  dup",
    ...rows,
    "",
    ...zepto,
    "",
    `memory per user (slope of settled RSS over users): ${s.per_user_kb.toFixed(2)} KB`,
    ...s.between.map((b) => `  between ${b.from} and ${b.to} users: ${b.per_user_kb.toFixed(2)} KB per user`),
    "",
  ].join("\n");
}

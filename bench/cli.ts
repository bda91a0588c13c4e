import { existsSync, writeFileSync } from "node:fs";
import { exitCleanlyOnSignals } from "./interrupt.js";
import { BENCH_HELP, type BenchOptions, BenchUsageError, checkOutputs, parseBenchArgs } from "./options.js";
import { createProgress } from "./progress.js";
import { formatReport } from "./report.js";
import { type BenchReport, runBench } from "./runner.js";
import type { BenchTarget } from "./targets/target.js";

/** Runs one benchmark through the path the options name; the report is not printed. */
export async function benchOnce(o: BenchOptions): Promise<BenchReport> {
  const progress = createProgress(o.progress);
  try {
    return await runBench(o, {
      async startTarget(s): Promise<BenchTarget> {
        if (o.path === "webchat") {
          const { startWebchatTarget } = await import("./targets/webchat.js");
          return startWebchatTarget(s);
        }
        if (o.path === "telegram") {
          const { startTelegramTarget } = await import("./targets/telegram.js");
          return startTelegramTarget(s);
        }
        const { startInprocTarget } = await import("./targets/inproc.js");
        return startInprocTarget(s);
      },
      onProgress: (t) => progress.tick(t),
    });
  } finally {
    progress.done();
  }
}

async function sweep(o: BenchOptions, counts: number[]): Promise<number> {
  const { runSweep, formatSweep } = await import("./sweep.js");
  const { sweepChartSvg } = await import("./chart.js");
  const result = await runSweep(o, counts, (line) => process.stderr.write(`${line}\n`));
  for (const p of result.points) process.stdout.write(`\n${formatReport(p)}`);
  process.stdout.write(`\n${formatSweep(result)}`);
  const chart = o.chart ?? "bench-sweep.svg";
  const rate = o.rate === "max" ? "rate max" : `${o.rate} msg/s per user`;
  const svg = await sweepChartSvg(
    result.points.map((p) => ({ users: p.users, throughput_msg_s: p.throughput_msg_s, p99_ms: p.latency_ms.p99, rss_mb: p.rss_mb.peak })),
    `path ${o.path}, ${rate}, ${o.durationS} s per point, LLM latency ${o.llmLatencyMs} ms, ${result.points[0]?.machine.cpus ?? "?"} cpus`,
  );
  let written = writeOutput("chart", chart, svg);
  if (written) process.stdout.write(`chart written to ${chart}\n`);
  if (o.json) {
    written = writeOutput("json", o.json, `${JSON.stringify({ sweep: result.points, per_user_kb: result.per_user_kb, per_user_kb_between: result.between, users: counts, duration_s: o.durationS, rate: o.rate, llm_latency_ms: o.llmLatencyMs, path: o.path, memory_profile: o.memoryProfile }, null, 2)}\n`) && written;
  }
  return result.points.every((p) => p.lost === 0) && written ? 0 : 1;
}

/**
 * Writes one output file after a run; a failure (the disk filled, the folder went away) is
 * reported by flag and error code, not thrown, so the figures already printed stand.
 */
function writeOutput(flag: string, file: string, text: string): boolean {
  try {
    writeFileSync(file, text);
    return true;
  } catch (err) {
    process.stderr.write(`zeptoclaw bench: --${flag}: could not write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
    return false;
  }
}

/** `zeptoclaw bench ...`: exit 0 when nothing was lost, 1 when something was, 2 on a usage mistake. */
export async function benchCommand(args: string[]): Promise<number> {
  let o: BenchOptions;
  try {
    o = parseBenchArgs(args);
    checkOutputs(o);
  } catch (err) {
    if (!(err instanceof BenchUsageError)) throw err;
    process.stderr.write(`zeptoclaw bench: ${err.message}\nRun "zeptoclaw bench --help" for usage.\n`);
    return 2;
  }
  if (o.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  if (o.path !== "inproc" || o.sweep) {
    const { BARE_GATEWAY, BUILT_CLI } = await import("./targets/gateway-child.js");
    for (const file of o.bareGateway ? [BARE_GATEWAY] : [BUILT_CLI]) {
      if (existsSync(file)) continue;
      process.stderr.write(`zeptoclaw bench: ${file} is missing; build first with "npm run build"\n`);
      return 2;
    }
  }
  const restoreSignals = exitCleanlyOnSignals();
  try {
    return o.sweep ? await sweep(o, o.sweep) : await runOnce(o);
  } catch (err) {
    // A gateway child that would not start says why in its message (its stderr); a stack adds nothing.
    process.stderr.write(`zeptoclaw bench: ${(err as Error).message}\n`);
    return 1;
  } finally {
    restoreSignals();
  }
}

async function runOnce(o: BenchOptions): Promise<number> {
  const report = await benchOnce(o);
  process.stdout.write(formatReport(report));
  let written = true;
  const latencyLog = report.details.latency_log as { file: string; error?: string } | undefined;
  if (latencyLog?.error !== undefined) {
    process.stderr.write(`zeptoclaw bench: --latency-log: could not write ${latencyLog.file}: ${latencyLog.error}\n`);
    written = false;
  }
  if (o.json) written = writeOutput("json", o.json, `${JSON.stringify(report, null, 2)}\n`) && written;
  if (report.lost > 0) process.stderr.write(`zeptoclaw bench: ${report.lost} messages were not answered\n`);
  return report.lost === 0 && written ? 0 : 1;
}

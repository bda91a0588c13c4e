import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { GATEWAY_NODE_FLAGS } from "../src/package-info.js";
import { onInterrupt } from "./interrupt.js";
import { LatencyLog, type LatencyPhase } from "./latency-log.js";
import { linearFit, Samples, summarize } from "./stats.js";
import type { BenchOptions } from "./options.js";
import type { BenchTarget, DeliveredReply, TargetSettings } from "./targets/target.js";

/** Every figure of one run; the first fields are the ones `--json` promises at the top level. */
export interface BenchReport {
  sent: number;
  answered: number;
  lost: number;
  duplicated: number;
  throughput_msg_s: number;
  latency_ms: { p50: number; p90: number; p99: number; max: number };
  overhead_ms: { p50: number; p99: number };
  rss_mb: { start: number; peak: number; end: number };
  /** Slope of RSS over active users (KB per user); null without --memory-profile or --sweep. */
  per_user_kb: number | null;
  cpu_s: number;
  users: number;
  duration_s: number;
  rate: number | "max";
  llm_latency_ms: number;
  path: string;
  /** True when `--bare-gateway` ran the stand-in instead of the gateway: not zeptoclaw's figures. */
  bare_gateway: boolean;
  /** Node flags the gateway child ran with: its launchers' (GATEWAY_NODE_FLAGS), then `--gateway-node-arg`'s. */
  gateway_node_args: string[];
  memory_profile: boolean;
  date: string;
  machine: { cpus: number; cpu_model: string; node: string; platform: string };
  details: Record<string, unknown>;
}

/** What the progress display is told, a few times a second. */
export interface ProgressTick {
  phase: "ramp" | "warmup" | "load" | "drain";
  elapsedS: number;
  durationS: number;
  sent: number;
  answered: number;
  rssMb: number;
}

/** Runner hooks: the target to drive and where progress goes. */
export interface RunnerDeps {
  startTarget(s: TargetSettings): Promise<BenchTarget>;
  onProgress?(t: ProgressTick): void;
}

const MB = 1024 * 1024;
/** How long the count stays open after the last reply, for a duplicate of it. */
const DUPLICATE_GRACE_MS = 500;
const round = (v: number, digits = 2): number => Math.round(v * 10 ** digits) / 10 ** digits;

/** Matches replies to sends and keeps the counts and latency samples of one phase. */
class Ledger {
  sent = 0;
  answered = 0;
  rejected = 0;
  /** Why the first few refused messages were refused. */
  readonly refusals: string[] = [];
  errors = 0;
  duplicated = 0;
  lastReplyAt = 0;
  latency = new Samples();
  overhead = new Samples();
  sendLag = new Samples();
  /** Accepted messages waiting for their reply: id -> send time. */
  private readonly waiting = new Map<string, number>();
  /** Replies that arrived before their send resolved (an instant LLM beats the 202). */
  private readonly early = new Map<string, DeliveredReply>();
  private sending = 0;
  private idle: (() => void) | undefined;

  constructor(
    private readonly target: BenchTarget,
    private readonly onAnswered: (user: number) => void,
    private readonly log?: { to: LatencyLog; phase: LatencyPhase },
  ) {}

  get outstanding(): number {
    return this.waiting.size + this.sending;
  }

  /** Sends one message for `user`; `due` is when the schedule wanted it sent. */
  send(user: number, due?: number): void {
    this.sent++;
    this.sending++;
    const t0 = performance.now();
    if (due !== undefined) this.sendLag.push(Math.max(0, t0 - due));
    this.target.send(user, `hello from ${user}, message ${this.sent}`).then(
      (id) => {
        this.sending--;
        const early = this.early.get(id);
        if (early) {
          this.early.delete(id);
          this.match(id, t0, early);
        } else {
          this.waiting.set(id, t0);
        }
      },
      (err: unknown) => {
        this.sending--;
        this.rejected++;
        // The first few reasons go to stderr: a refusal in a bench run is a finding.
        if (this.rejected <= 3) {
          const why = (err as Error)?.message ?? String(err);
          this.refusals.push(why);
          process.stderr.write(`bench: message refused: ${why}\n`);
        }
        this.checkIdle();
        setTimeout(() => this.onAnswered(user), 20).unref();
      },
    );
  }

  reply(r: DeliveredReply): void {
    const t0 = this.waiting.get(r.id);
    if (t0 !== undefined) {
      this.waiting.delete(r.id);
      this.match(r.id, t0, r);
    } else if (this.sending > 0 && !this.early.has(r.id)) {
      this.early.set(r.id, r);
    } else {
      this.duplicated++;
    }
  }

  private match(id: string, t0: number, r: DeliveredReply): void {
    this.answered++;
    if (r.isError) this.errors++;
    this.lastReplyAt = Math.max(this.lastReplyAt, r.at);
    const latency = r.at - t0;
    const overhead = Math.max(0, latency - this.target.llmMs(id));
    this.latency.push(latency);
    this.overhead.push(overhead);
    this.log?.to.record(this.log.phase, t0, r.user, latency, overhead);
    this.onAnswered(r.user);
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.idle && this.outstanding === 0) {
      const done = this.idle;
      this.idle = undefined;
      done();
    }
  }

  /** Resolves when every send has its reply (or refusal), or after `timeoutMs`. */
  drained(timeoutMs: number): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Replies that never found their send are duplicates of something already counted. */
  finish(): void {
    this.duplicated += this.early.size;
    this.early.clear();
  }
}

/** The gateway child's node flags: those its launchers give it (GATEWAY_NODE_FLAGS), then the caller's, which win. */
function childNodeArgs(o: BenchOptions): string[] {
  return o.path === "inproc" ? [] : [...GATEWAY_NODE_FLAGS, ...o.gatewayNodeArgs];
}

/** Runs one benchmark: optional memory ramp, then the load, then the drain; returns every figure. */
export async function runBench(o: BenchOptions, deps: RunnerDeps): Promise<BenchReport> {
  const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-"));
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  const forget = onInterrupt(removeDir);
  const perUserInFlight = o.rate === "max" ? 2 : Math.ceil(o.rate * (o.llmLatencyMs / 1000 + 1)) + 4;
  const busBufferSize = Math.max(100_000, o.users * perUserInFlight);
  const gatewayNodeArgs = [...childNodeArgs(o), ...(o.gatewayCpuProf ? ["--cpu-prof", `--cpu-prof-dir=${o.gatewayCpuProf}`] : [])];
  try {
    const target = await deps.startTarget({
      users: o.users,
      llmLatencyMs: o.llmLatencyMs,
      busBufferSize,
      dir,
      gatewayNodeArgs,
      gatewayLog: o.gatewayLog,
      settleMinMs: o.settleS * 1000,
      bareGateway: o.bareGateway,
    });
    try {
      return await drive(o, target, deps);
    } finally {
      await target.close();
    }
  } finally {
    removeDir();
    forget();
  }
}

async function drive(o: BenchOptions, target: BenchTarget, deps: RunnerDeps): Promise<BenchReport> {
  let running = false;
  let ledger: Ledger;
  const onAnswered = (user: number): void => {
    // A real channel's next message arrives as an I/O event; sending it from the reply's own
    // promise chain would keep the microtask queue busy forever and starve timers (flushes, the clock).
    if (running && o.rate === "max") setImmediate(() => running && ledger.send(user));
  };
  target.onReply = (r) => ledger.reply(r);
  const drainMs = Math.max(15_000, o.llmLatencyMs * 10);
  const details: Record<string, unknown> = {};
  let perUserKb: number | null = null;
  const latencyLog = o.latencyLog === undefined ? undefined : new LatencyLog();

  // The ramp's messages must be answered too: they count in the totals, as the warm-up's do.
  let rampCounts = { sent: 0, answered: 0, duplicated: 0 };
  if (o.memoryProfile) {
    // Marginal memory: activate users in steps, each sending one message, and fit RSS to active users.
    ledger = new Ledger(target, onAnswered, latencyLog && { to: latencyLog, phase: "ramp" });
    const steps = Math.min(5, o.users);
    const ramp: { users: number; rss_mb: number; heap_mb?: number }[] = [];
    await target.settle();
    ramp.push({ users: 0, rss_mb: round(target.rssBytes() / MB), ...heapOf(target) });
    let active = 0;
    const t0 = performance.now();
    for (let k = 1; k <= steps; k++) {
      const upto = Math.floor((o.users * k) / steps);
      for (let u = active; u < upto; u++) ledger.send(u);
      active = upto;
      await ledger.drained(drainMs);
      await target.settle();
      ramp.push({ users: active, rss_mb: round(target.rssBytes() / MB), ...heapOf(target) });
      deps.onProgress?.({ phase: "ramp", elapsedS: (performance.now() - t0) / 1000, durationS: 0, sent: ledger.sent, answered: ledger.answered, rssMb: target.rssBytes() / MB });
    }
    // The first step also pays for one-time costs (JIT, pools); fit from it onwards when there are enough points.
    const pts = (ramp.length > 3 ? ramp.slice(1) : ramp).map((p) => ({ x: p.users, y: p.rss_mb * 1024 }));
    const fit = linearFit(pts);
    perUserKb = round(fit.slope, 3);
    details.memory_ramp = ramp;
    details.memory_fit_r2 = round(fit.r2, 3);
    details.memory_ramp_lost = ledger.sent - ledger.answered;
    ledger.finish();
    rampCounts = { sent: ledger.sent, answered: ledger.answered, duplicated: ledger.duplicated };
    details.memory_ramp_counts = rampCounts;
  }

  /** Offers the load for `durationS` seconds; returns when the last message was sent. */
  const offer = async (durationS: number): Promise<{ started: number; stoppedAt: number }> => {
    const started = performance.now();
    const stopAt = started + durationS * 1000;
    running = true;
    if (o.rate === "max") {
      for (let u = 0; u < o.users; u++) ledger.send(u);
      await new Promise((r) => setTimeout(r, durationS * 1000));
    } else {
      // Open loop: message i belongs to user i mod N and is due at i / (N * R) seconds, so sends are spread evenly.
      const intervalMs = 1000 / (o.users * (o.rate as number));
      let i = 0;
      await new Promise<void>((resolve) => {
        const tick = (): void => {
          const now = performance.now();
          const limit = Math.min(now, stopAt);
          // Strictly before the stop: R × N × duration messages, not one more.
          while (started + i * intervalMs < limit) {
            ledger.send(i % o.users, started + i * intervalMs);
            i++;
          }
          if (now >= stopAt) resolve();
          else setTimeout(tick, Math.max(1, Math.min(50, started + i * intervalMs - performance.now())));
        };
        tick();
      });
    }
    running = false;
    return { started, stoppedAt: performance.now() };
  };

  let warm = { sent: 0, answered: 0, duplicated: 0 };
  if (o.warmupS > 0) {
    // The same load on a cold process first: what it sends must be answered (it counts in
    // the totals), but its latencies are the JIT's and the pools', not the steady state's.
    ledger = new Ledger(target, onAnswered, latencyLog && { to: latencyLog, phase: "warmup" });
    const t0 = performance.now();
    const progress = setInterval(() => {
      deps.onProgress?.({ phase: "warmup", elapsedS: (performance.now() - t0) / 1000, durationS: o.warmupS, sent: ledger.sent, answered: ledger.answered, rssMb: target.rssBytes() / MB });
    }, 100);
    await offer(o.warmupS);
    await ledger.drained(drainMs);
    ledger.finish();
    clearInterval(progress);
    warm = { sent: ledger.sent, answered: ledger.answered, duplicated: ledger.duplicated };
    details.warmup = { seconds: o.warmupS, ...warm };
  }

  ledger = new Ledger(target, onAnswered, latencyLog && { to: latencyLog, phase: "load" });
  await target.settle();
  const rssStart = target.rssBytes();
  const cpuStart = target.cpuSeconds();
  const loadCpuStart = process.cpuUsage();
  let rssPeak = rssStart;
  const loadStarted = performance.now();
  let phase: ProgressTick["phase"] = "load";
  const sampler = setInterval(() => {
    const rss = target.rssBytes();
    if (rss > rssPeak) rssPeak = rss;
    deps.onProgress?.({ phase, elapsedS: (performance.now() - loadStarted) / 1000, durationS: o.durationS, sent: ledger.sent, answered: ledger.answered, rssMb: rss / MB });
  }, 100);

  const { started, stoppedAt } = await offer(o.durationS);
  phase = "drain";
  await ledger.drained(drainMs);
  // A reply sent twice may come just after the last one: keep listening a moment before the
  // count is closed. (A phase before this one hands its late duplicates to the next ledger.)
  await new Promise((r) => setTimeout(r, DUPLICATE_GRACE_MS));
  ledger.finish();
  clearInterval(sampler);
  const rssEnd = target.rssBytes();
  rssPeak = Math.max(rssPeak, rssEnd);
  const cpu = target.cpuSeconds() - cpuStart;
  const loadCpu = process.cpuUsage(loadCpuStart);
  const loadCpuS = (loadCpu.user + loadCpu.system) / 1e6;
  // CPU a measured message cost: what runs tell apart when their throughputs differ.
  const perMsg = (seconds: number): number | null => (ledger.answered > 0 ? round((seconds * 1000) / ledger.answered, 3) : null);
  await target.settle();
  const rssSettled = target.rssBytes();
  if (latencyLog && o.latencyLog !== undefined) {
    try {
      details.latency_log = { file: o.latencyLog, lines: latencyLog.write(o.latencyLog) };
    } catch (err) {
      // The caller reports it after the figures: a full disk must not cost the run's report.
      details.latency_log = { file: o.latencyLog, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
    }
  }

  const measuredS = ((ledger.lastReplyAt || stoppedAt) - started) / 1000;
  const latency = summarize(ledger.latency);
  const overhead = summarize(ledger.overhead);
  const lag = summarize(ledger.sendLag);
  const c = cpus();
  const sent = rampCounts.sent + warm.sent + ledger.sent;
  const answered = rampCounts.answered + warm.answered + ledger.answered;
  return {
    sent,
    answered,
    lost: sent - answered,
    duplicated: rampCounts.duplicated + warm.duplicated + ledger.duplicated,
    throughput_msg_s: measuredS > 0 ? round(ledger.answered / measuredS, 1) : 0,
    latency_ms: latency,
    overhead_ms: { p50: overhead.p50, p99: overhead.p99 },
    rss_mb: { start: round(rssStart / MB), peak: round(rssPeak / MB), end: round(rssEnd / MB) },
    per_user_kb: perUserKb,
    cpu_s: round(cpu, 2),
    users: o.users,
    duration_s: o.durationS,
    rate: o.rate,
    llm_latency_ms: o.llmLatencyMs,
    path: o.path,
    bare_gateway: o.bareGateway,
    gateway_node_args: childNodeArgs(o),
    memory_profile: o.memoryProfile,
    date: new Date().toISOString(),
    machine: { cpus: c.length, cpu_model: c[0]?.model ?? "unknown", node: process.version, platform: `${process.platform}-${process.arch}` },
    details: {
      rejected: ledger.rejected,
      ...(ledger.refusals.length > 0 ? { refusals: ledger.refusals } : {}),
      error_replies: ledger.errors,
      measured_s: round(measuredS, 3),
      send_window_s: round((stoppedAt - started) / 1000, 3),
      ...(o.rate === "max" ? {} : { send_lag_ms: { p50: lag.p50, p99: lag.p99, max: lag.max } }),
      rss_settled_mb: round(rssSettled / MB),
      cpu_ms_per_msg: perMsg(cpu),
      ...(target.loadProcess ? { load_process: target.loadProcess, load_cpu_s: round(loadCpuS, 2), load_cpu_ms_per_msg: perMsg(loadCpuS) } : {}),
      ...details,
      ...target.details(),
    },
  };
}

function heapOf(target: BenchTarget): { heap_mb?: number } {
  return target.details().gateway_process === "child" ? {} : { heap_mb: round(process.memoryUsage().heapUsed / MB) };
}

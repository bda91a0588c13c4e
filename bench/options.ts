import { accessSync, constants, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { GATEWAY_NODE_FLAGS } from "../src/package-info.js";
import { WORKER_IDLE_MS } from "../src/storage/wal-checkpointer.js";

/**
 * How long, at least, the inproc target settles before a memory reading: V8 averages
 * allocation over 5 s before it shrinks the young generation, and the WAL checkpointer's
 * worker (~7 MB) stops 10 s after the last write; a reading just before that stop would count
 * the worker in one step of a ramp and not in the next.
 */
export const DEFAULT_SETTLE_S = WORKER_IDLE_MS / 1000 + 2;

/** Which pipeline the load goes through. */
export type BenchPath = "inproc" | "webchat" | "telegram";

/** The parameters of one benchmark run, as parsed from the command line. */
export interface BenchOptions {
  users: number;
  durationS: number;
  /** Messages per second per user (open loop), or "max" for closed loop. */
  rate: number | "max";
  llmLatencyMs: number;
  path: BenchPath;
  memoryProfile: boolean;
  /** Least seconds of idle collection before each memory reading (inproc). */
  settleS: number;
  /** Seconds of the same load before the measured run, answered but left out of the figures. */
  warmupS: number;
  sweep: number[] | undefined;
  json: string | undefined;
  chart: string | undefined;
  /** Folder for a V8 CPU profile of the gateway child (webchat and telegram paths). */
  gatewayCpuProf: string | undefined;
  /** Extra node flags for the gateway child (webchat, telegram), e.g. V8's GC flags. */
  gatewayNodeArgs: string[];
  /** Where the gateway child's output goes (appended), for what those flags print. */
  gatewayLog: string | undefined;
  /** A CSV of every answered message's send time and latency. */
  latencyLog: string | undefined;
  /** Web chat: drive a bare stand-in that only makes the HTTP legs, not the gateway: a floor under its cost. */
  bareGateway: boolean;
  /** Progress display: a bar on a terminal, plain lines otherwise, or none. */
  progress: "auto" | "plain" | "off";
  help: boolean;
}

/** A mistake on the command line: printed with a pointer to --help, exit code 2. */
export class BenchUsageError extends Error {}

export const BENCH_HELP = `Usage: zeptoclaw bench [options]

Drives the real gateway pipeline (bus, agents, SQLite sessions, the channel of --path)
against a local fake OpenAI-compatible LLM and reports what was answered, how fast and
at what cost: sent, answered, lost, duplicated, throughput, latency percentiles, gateway
overhead, RSS, marginal memory per user and CPU seconds.

Options:
  --users N            simulated users (default 100)
  --duration S         seconds of load (default 10)
  --rate R | max       messages per second per user, open loop (default 1);
                       "max": each user sends again as soon as answered (capacity)
  --llm-latency MS     delay of the fake LLM per answer (default 0)
  --path P             inproc (default): channel stand-in in this process, LLM in-process;
                       webchat: gateway in a child process, load over HTTP + SSE,
                       fake LLM over HTTP; telegram: gateway in a child process with
                       only the Telegram channel, long-polling a fake Bot API (one
                       private chat per user; Telegram's rate limits not simulated)
  --memory-profile     ramp users up in steps before the load and fit RSS against
                       active users: the marginal memory per user
  --settle S           inproc: collect garbage for at least S seconds, until RSS stops
                       moving, before each memory reading (default 12: V8 shrinks its
                       young generation only after 5 s of low allocation, and the WAL
                       checkpointer's worker stops 10 s after the last write)
  --warmup S           first run the same load for S seconds (default 0): its messages
                       must be answered (they count in sent, answered and lost) but stay
                       out of throughput, latency and CPU, which then show the steady
                       state, not a cold process (JIT, connection pools)
  --sweep A,B,C        one fresh run per user count; prints users -> RAM -> msg/s,
                       fits memory per user and draws an SVG chart
  --chart FILE         where --sweep writes its SVG (default bench-sweep.svg)
  --json FILE          write every figure as JSON
  --gateway-cpu-prof DIR  webchat, telegram: run the gateway child with --cpu-prof into DIR
  --gateway-node-arg A webchat, telegram: pass the node flag A to the gateway child, after
                       the flags npm start and PM2 give it (${GATEWAY_NODE_FLAGS.join(" ")}; a
                       later value wins); repeatable, e.g. --gateway-node-arg=--trace-gc.
                       For inproc, put the flag before the script: node A dist/app/cli.js bench ...
  --gateway-log FILE   webchat, telegram: append the gateway child's output to FILE
                       (its log lines, and what such flags print)
  --latency-log FILE   write every answered message as a line of CSV: its phase (ramp,
                       warmup, load), send time in ms since the epoch (the clock of a
                       gateway's performance.timeOrigin + performance.now(), so its GC
                       events and profiles line up), user, latency and overhead in ms;
                       held until the end, 40 bytes a message (inproc: in the RSS figures)
  --bare-gateway       webchat: replace the gateway by a stand-in that does only the
                       HTTP legs of a message on node:http (POST, streamed LLM call,
                       SSE reply; no bus, journal, sessions or SDK): a floor under the
                       gateway's cost on this machine, under the same load generator
  --progress MODE      auto (bar on a terminal, plain lines otherwise), plain, off
  -h, --help           print this help
`;

function positive(name: string, raw: string, integer: boolean, allowZero = false): number {
  const v = Number(raw);
  const ok = Number.isFinite(v) && (allowZero ? v >= 0 : v > 0) && (!integer || Number.isInteger(v));
  if (!ok) throw new BenchUsageError(`--${name}: expected ${integer ? "a whole number" : "a number"} ${allowZero ? "of 0 or more" : "above 0"}, got "${raw}"`);
  return v;
}

/** Parses `zeptoclaw bench` arguments strictly; throws `BenchUsageError` naming the flag. */
export function parseBenchArgs(args: string[]): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        users: { type: "string" },
        duration: { type: "string" },
        rate: { type: "string" },
        "llm-latency": { type: "string" },
        path: { type: "string" },
        "memory-profile": { type: "boolean" },
        settle: { type: "string" },
        warmup: { type: "string" },
        sweep: { type: "string" },
        json: { type: "string" },
        chart: { type: "string" },
        "gateway-cpu-prof": { type: "string" },
        "gateway-node-arg": { type: "string", multiple: true },
        "gateway-log": { type: "string" },
        "latency-log": { type: "string" },
        "bare-gateway": { type: "boolean" },
        progress: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new BenchUsageError((err as Error).message);
  }
  const v = parsed.values;
  const path = v.path ?? "inproc";
  if (path !== "inproc" && path !== "webchat" && path !== "telegram") {
    throw new BenchUsageError(`--path: expected inproc, webchat or telegram, got "${path}"`);
  }
  const progress = v.progress ?? "auto";
  if (progress !== "auto" && progress !== "plain" && progress !== "off") {
    throw new BenchUsageError(`--progress: expected auto, plain or off, got "${progress}"`);
  }
  if (v["bare-gateway"] === true && path !== "webchat") throw new BenchUsageError("--bare-gateway: only with --path webchat");
  const gatewayNodeArgs = v["gateway-node-arg"] ?? [];
  // inproc runs the gateway in this process: no child to pass flags to or to log.
  if (gatewayNodeArgs.length > 0 && path === "inproc") {
    throw new BenchUsageError("--gateway-node-arg: only with --path webchat or telegram (for inproc, give node flags before the script)");
  }
  if (v["gateway-log"] !== undefined && path === "inproc") throw new BenchUsageError("--gateway-log: only with --path webchat or telegram (inproc has no gateway child)");
  const badArg = gatewayNodeArgs.find((a) => !a.startsWith("-"));
  if (badArg !== undefined) throw new BenchUsageError(`--gateway-node-arg: expected a node flag such as --trace-gc, got "${badArg}"`);
  if (v["latency-log"] !== undefined && v.sweep !== undefined) throw new BenchUsageError("--latency-log: not with --sweep (one file a run; run the points one by one)");
  if (v["bare-gateway"] === true && v.sweep !== undefined) throw new BenchUsageError("--bare-gateway: not with --sweep (each point of a sweep runs the gateway)");
  if (v["gateway-cpu-prof"] !== undefined && v.sweep !== undefined) throw new BenchUsageError("--gateway-cpu-prof: not with --sweep (profile one point: run it alone)");
  let sweep: number[] | undefined;
  if (v.sweep !== undefined) {
    sweep = v.sweep.split(",").map((s) => positive("sweep", s.trim(), true));
    sweep.sort((a, b) => a - b);
    if (sweep.length < 2 || sweep.some((n, i) => i > 0 && n === sweep?.[i - 1])) {
      throw new BenchUsageError("--sweep: expected at least two different user counts, e.g. 100,1000,10000");
    }
  }
  return {
    users: positive("users", v.users ?? "100", true),
    durationS: positive("duration", v.duration ?? "10", false),
    rate: v.rate === "max" ? "max" : positive("rate", v.rate ?? "1", false),
    llmLatencyMs: positive("llm-latency", v["llm-latency"] ?? "0", false, true),
    path,
    memoryProfile: v["memory-profile"] === true,
    settleS: positive("settle", v.settle ?? String(DEFAULT_SETTLE_S), false, true),
    warmupS: positive("warmup", v.warmup ?? "0", false, true),
    sweep,
    json: v.json,
    chart: v.chart,
    gatewayCpuProf: v["gateway-cpu-prof"],
    gatewayNodeArgs,
    gatewayLog: v["gateway-log"],
    latencyLog: v["latency-log"],
    bareGateway: v["bare-gateway"] === true,
    progress,
    help: v.help === true,
  };
}

/** Whether this process may write `path`. */
function canWrite(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** What an unusable output path is missing, or undefined when it can be written. */
function unwritable(file: string, wantDir: boolean): string | undefined {
  const path = resolve(file);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat !== undefined) {
    if (wantDir && !stat.isDirectory()) return `"${file}" exists and is not a folder`;
    if (!wantDir && stat.isDirectory()) return `"${file}" is a folder`;
    return canWrite(path) ? undefined : `"${file}" is not writable`;
  }
  // node's --cpu-prof-dir creates missing folders; the files are written into an existing one.
  if (wantDir) return undefined;
  const parent = dirname(path);
  const parentStat = statSync(parent, { throwIfNoEntry: false });
  if (parentStat === undefined) return `folder "${parent}" does not exist`;
  if (!parentStat.isDirectory()) return `"${parent}" is not a folder`;
  return canWrite(parent) ? undefined : `folder "${parent}" is not writable`;
}

/**
 * Checks before a run that every file it will write can be written, so that a mistyped
 * path costs a usage error now rather than a crash at the end of a long run, its figures lost.
 */
export function checkOutputs(o: BenchOptions): void {
  const outputs: [flag: string, file: string | undefined, wantDir: boolean][] = [
    ["json", o.json, false],
    ["chart", o.sweep ? (o.chart ?? "bench-sweep.svg") : undefined, false],
    ["latency-log", o.latencyLog, false],
    ["gateway-log", o.gatewayLog, false],
    ["gateway-cpu-prof", o.gatewayCpuProf, true],
  ];
  for (const [flag, file, wantDir] of outputs) {
    if (file === undefined) continue;
    const why = unwritable(file, wantDir);
    if (why !== undefined) throw new BenchUsageError(`--${flag}: cannot write there: ${why}`);
  }
}

import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { benchCommand, benchOnce } from "../../bench/cli.js";
import { parseBenchArgs } from "../../bench/options.js";
import { formatReport } from "../../bench/report.js";
import type { BenchReport } from "../../bench/runner.js";
import { runSweep } from "../../bench/sweep.js";
import { BUILT_CLI } from "../../bench/targets/gateway-child.js";
import { linearFit, percentile, Samples, summarize } from "../../bench/stats.js";

function expectWellFormed(r: BenchReport): void {
  for (const k of ["sent", "answered", "lost", "duplicated", "throughput_msg_s", "cpu_s"] as const) expect(typeof r[k]).toBe("number");
  expect(Object.keys(r.latency_ms).sort()).toEqual(["max", "p50", "p90", "p99"]);
  expect(Object.keys(r.overhead_ms).sort()).toEqual(["p50", "p99"]);
  expect(Object.keys(r.rss_mb).sort()).toEqual(["end", "peak", "start"]);
  expect(r.latency_ms.p50).toBeLessThanOrEqual(r.latency_ms.p99);
  expect(r.latency_ms.p99).toBeLessThanOrEqual(r.latency_ms.max);
  expect(r.rss_mb.peak).toBeGreaterThanOrEqual(r.rss_mb.start);
  expect(r.sent).toBeGreaterThan(0);
}

/** Whether a process still runs (a zombie not yet reaped by its parent counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Collects what the command writes to stderr, and still shows it. */
function captureStderr(): { text(): string; restore(): void } {
  const original = process.stderr.write.bind(process.stderr);
  let text = "";
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    return original(chunk, ...rest);
  }) as typeof process.stderr.write;
  return { text: () => text, restore: () => void (process.stderr.write = original) };
}

describe("zeptoclaw bench", () => {
  it("answers every message of a short open-loop run through the real pipeline and reports every figure", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-test-"));
    try {
      const file = join(dir, "latency.csv");
      const r = await benchOnce(parseBenchArgs(["--users", "50", "--duration", "2", "--memory-profile", "--settle", "0", "--progress", "off", "--latency-log", file]));
      expectWellFormed(r);
      expect(r.lost).toBe(0);
      expect(r.duplicated).toBe(0);
      expect(r.answered).toBe(r.sent);
      expect(typeof r.per_user_kb).toBe("number");
      expect((r.details.memory_ramp as unknown[]).length).toBe(6);
      // The ramp's one message a user is logged apart from the measured run's.
      const phases = readFileSync(file, "utf8").trimEnd().split("\n").slice(1).map((l) => l.split(",")[0]);
      expect(phases.filter((p) => p === "ramp").length).toBe(50);
      // The ramp's messages count in the totals (a loss there is a loss); the load sends
      // exactly users × rate × duration, not one more.
      expect(r.details.memory_ramp_counts).toEqual({ sent: 50, answered: 50, duplicated: 0 });
      expect(r.sent).toBe(50 + 50 * 1 * 2);
      expect(phases.filter((p) => p === "load").length).toBe(r.answered - 50);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("loses nothing in closed loop (--rate max), where every reply triggers the next message", async () => {
    const r = await benchOnce(parseBenchArgs(["--users", "50", "--duration", "1", "--rate", "max", "--settle", "0", "--progress", "off"]));
    expectWellFormed(r);
    expect(r.lost).toBe(0);
    expect(r.sent).toBeGreaterThan(50);
  });

  it("counts a warm-up's messages in the totals but not in the measured figures", async () => {
    const r = await benchOnce(parseBenchArgs(["--users", "20", "--duration", "1", "--warmup", "1", "--settle", "0", "--progress", "off"]));
    expectWellFormed(r);
    const warm = r.details.warmup as { seconds: number; sent: number; answered: number };
    // 20 users at 1 msg/s: about 20 messages in each second, all answered.
    expect(warm.seconds).toBe(1);
    expect(warm.sent).toBeGreaterThanOrEqual(20);
    expect(warm.answered).toBe(warm.sent);
    expect(r.sent).toBeGreaterThanOrEqual(warm.sent + 20);
    expect(r.answered).toBe(r.sent);
    expect(r.lost).toBe(0);
    // Throughput is the measured second's alone: about 20 msg/s, not the 40 of both.
    expect(r.throughput_msg_s).toBeLessThan(30);
    // So is the CPU a message: the measured run's CPU over the measured run's messages.
    const measured = r.answered - warm.answered;
    expect(r.details.cpu_ms_per_msg).toBeCloseTo((r.cpu_s * 1000) / measured, 0);
  });

  it("passes the warm-up to every run of a sweep", async () => {
    const s = await runSweep(parseBenchArgs(["--sweep", "5,10", "--duration", "1", "--warmup", "1", "--settle", "0", "--progress", "off"]), [5, 10], () => undefined);
    expect(s.points.map((p) => (p.details.warmup as { seconds: number } | undefined)?.seconds)).toEqual([1, 1]);
    for (const p of s.points) expect(p.lost).toBe(0);
  });

  it("writes the promised top-level JSON fields", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-test-"));
    try {
      const file = join(dir, "r.json");
      const code = await benchCommand(["--users", "20", "--duration", "1", "--settle", "0", "--json", file, "--progress", "off"]);
      expect(code).toBe(0);
      const json = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      for (const k of ["sent", "answered", "lost", "duplicated", "throughput_msg_s", "latency_ms", "overhead_ms", "rss_mb", "per_user_kb", "cpu_s", "users", "duration_s", "rate", "llm_latency_ms", "path"]) {
        expect(json).toHaveProperty(k);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("writes every answered message's send time and latency to --latency-log", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-test-"));
    try {
      const file = join(dir, "latency.csv");
      const before = Date.now();
      const r = await benchOnce(
        parseBenchArgs(["--users", "20", "--duration", "1", "--warmup", "1", "--settle", "0", "--progress", "off", "--latency-log", file]),
      );
      const after = Date.now();
      const [header, ...lines] = readFileSync(file, "utf8").trimEnd().split("\n");
      expect(header).toBe("phase,sent_at_ms,user,latency_ms,overhead_ms");
      const rows = lines.map((l) => l.split(","));
      const warm = r.details.warmup as { answered: number };
      const of = (phase: string): string[][] => rows.filter((p) => p[0] === phase);
      // The warm-up's and the measured run's, each once.
      expect(of("warmup").length).toBe(warm.answered);
      expect(of("load").length).toBe(r.answered - warm.answered);
      expect(rows.length).toBe(r.answered);
      for (const [, at, user, latency, overhead] of rows) {
        expect(Number(at)).toBeGreaterThanOrEqual(before);
        expect(Number(at)).toBeLessThanOrEqual(after);
        expect(Number(user)).toBeGreaterThanOrEqual(0);
        expect(Number(user)).toBeLessThan(20);
        expect(Number(overhead)).toBeGreaterThanOrEqual(0);
        expect(Number(overhead)).toBeLessThanOrEqual(Number(latency));
      }
      // The measured run's lines are the latencies the report summarizes.
      expect(Math.max(...of("load").map((p) => Number(p[3])))).toBeCloseTo(r.latency_ms.max, 1);
      expect(r.details.latency_log).toEqual({ file, lines: rows.length });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("answers every message over HTTP on the webchat path (gateway in a child process)", async () => {
    const r = await benchOnce(parseBenchArgs(["--users", "50", "--duration", "2", "--path", "webchat", "--progress", "off"]));
    expectWellFormed(r);
    expect(r.lost).toBe(0);
    expect(r.details.gateway_process).toBe("child");
    // The load generator's CPU is read over the same run as the gateway's, and both per message.
    expect(r.details.load_process).toBe("load generator + fake LLM");
    expect(r.details.load_cpu_s).toBeGreaterThan(0);
    expect(r.details.load_cpu_ms_per_msg).toBeCloseTo(((r.details.load_cpu_s as number) * 1000) / r.answered, 0);
    expect(r.details.cpu_ms_per_msg).toBeGreaterThan(0);
    expect(formatReport(r)).toMatch(/cpu +[\d.]+ s gateway \([\d.]+ ms a message\), [\d.]+ s load generator \+ fake LLM \([\d.]+ ms a message\)/);
  });

  it("keeps the operator's own config variables away from its gateway child", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-env-"));
    // What a production shell may export: a real channel, a real store, a log level in capitals.
    const exported = {
      ZEPTOCLAW_CHANNELS_TELEGRAM_ENABLED: "true",
      TELEGRAM_BOT_TOKEN: "123456:not-a-real-token",
      ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir, "production.sqlite")}`,
      LOG_LEVEL: "INFO",
    };
    const saved = Object.fromEntries(Object.keys(exported).map((k) => [k, process.env[k]]));
    Object.assign(process.env, exported);
    try {
      const r = await benchOnce(parseBenchArgs(["--users", "10", "--duration", "1", "--path", "webchat", "--progress", "off"]));
      expect(r.lost).toBe(0);
      expect(r.answered).toBe(r.sent);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("drives the bare stand-in gateway on the same harness, and says so in the report", async () => {
    const r = await benchOnce(parseBenchArgs(["--users", "20", "--duration", "1", "--path", "webchat", "--bare-gateway", "--progress", "off"]));
    expectWellFormed(r);
    expect(r.lost).toBe(0);
    expect(r.answered).toBe(r.sent);
    // The stand-in really made the LLM calls and parsed their streams.
    expect(r.details.error_replies).toBe(0);
    expect(r.details.fake_llm_requests).toBe(r.sent);
    expect(r.bare_gateway).toBe(true);
    expect(formatReport(r)).toContain("BARE STAND-IN");
  });

  it("runs the gateway child with extra node flags, records them, and keeps what the child printed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-log-"));
    try {
      const log = join(dir, "gateway.log");
      const r = await benchOnce(
        parseBenchArgs(["--users", "20", "--duration", "1", "--path", "webchat", "--gateway-node-arg=--trace-gc", "--gateway-log", log, "--progress", "off"]),
      );
      expect(r.lost).toBe(0);
      // The launchers' flags first, then the caller's.
      expect(r.gateway_node_args).toEqual(["--max-semi-space-size=32", "--trace-gc"]);
      expect(formatReport(r)).toContain("gateway run with node --max-semi-space-size=32 --trace-gc");
      const text = readFileSync(log, "utf8");
      // What V8 printed for the flag, and the gateway's own log lines around it.
      expect(text).toMatch(/Scavenge|Mark-Compact/);
      expect(text).toContain("zeptoclaw gateway ready");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("answers every message through the Telegram channel, long-polling a fake Bot API (gateway in a child process)", async () => {
    const r = await benchOnce(parseBenchArgs(["--users", "30", "--duration", "2", "--path", "telegram", "--progress", "off"]));
    expectWellFormed(r);
    expect(r.lost).toBe(0);
    expect(r.answered).toBe(r.sent);
    expect(r.duplicated).toBe(0);
    expect(r.details.error_replies).toBe(0);
    expect(r.details.gateway_process).toBe("child");
    expect(r.details.unmatched_bot_messages).toBe(0);
    expect(r.details.bot_token_in_gateway_logs).toBe(0);
    expect((r.details.bot_api_calls as Record<string, number>).sendMessage).toBeGreaterThanOrEqual(r.sent);
  });

  it("refuses unknown flags and bad values with exit code 2", async () => {
    expect(await benchCommand(["--bogus"])).toBe(2);
    expect(await benchCommand(["--users", "0"])).toBe(2);
    expect(await benchCommand(["--rate", "fast"])).toBe(2);
    expect(await benchCommand(["--path", "carrier-pigeon"])).toBe(2);
    expect(await benchCommand(["--settle", "-1"])).toBe(2);
    expect(await benchCommand(["--bare-gateway"])).toBe(2);
    expect(await benchCommand(["--path", "telegram", "--bare-gateway"])).toBe(2);
    expect(await benchCommand(["--path", "webchat", "--bare-gateway", "--sweep", "10,20"])).toBe(2);
    // inproc runs the gateway in this process: its node flags go before the script.
    expect(await benchCommand(["--gateway-node-arg=--trace-gc"])).toBe(2);
    expect(await benchCommand(["--gateway-log", "gateway.log"])).toBe(2);
    expect(await benchCommand(["--latency-log", "latency.csv", "--sweep", "10,20"])).toBe(2);
    expect(await benchCommand(["--path", "webchat", "--gateway-node-arg", "trace-gc"])).toBe(2);
    // A slope between two equal counts is no figure; a sweep would drop the profile flag.
    expect(await benchCommand(["--sweep", "10,10"])).toBe(2);
    expect(await benchCommand(["--path", "webchat", "--sweep", "10,20", "--gateway-cpu-prof", "/tmp"])).toBe(2);
  });

  it("refuses output paths it could not write before the run, not after it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-test-"));
    const missing = join(dir, "no-such-folder", "out");
    const errors = captureStderr();
    try {
      const started = Date.now();
      for (const flag of ["--json", "--latency-log"]) expect(await benchCommand([flag, missing, "--duration", "30"])).toBe(2);
      expect(await benchCommand(["--json", dir, "--duration", "30"])).toBe(2);
      expect(await benchCommand(["--sweep", "10,20", "--chart", missing, "--duration", "30"])).toBe(2);
      expect(await benchCommand(["--path", "webchat", "--gateway-log", missing, "--duration", "30"])).toBe(2);
      writeFileSync(join(dir, "file"), "");
      expect(await benchCommand(["--path", "webchat", "--gateway-cpu-prof", join(dir, "file"), "--duration", "30"])).toBe(2);
      // Refused up front: none of those 30-s runs started.
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(errors.text()).toContain(`--json: cannot write there: folder "${join(dir, "no-such-folder")}" does not exist`);
      expect(errors.text()).toContain(`--json: cannot write there: "${dir}" is a folder`);
      for (const flag of ["latency-log", "chart", "gateway-log", "gateway-cpu-prof"]) expect(errors.text()).toContain(`--${flag}: cannot write there`);
    } finally {
      errors.restore();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps the printed figures and exits 1 when an output cannot be written after the run", async () => {
    const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-test-"));
    const errors = captureStderr();
    try {
      const run = benchCommand(["--users", "5", "--duration", "1", "--settle", "0", "--progress", "off", "--json", join(dir, "r.json"), "--latency-log", join(dir, "l.csv")]);
      // The folder goes away mid-run, as a cleaned-up temp folder would.
      await new Promise((r) => setTimeout(r, 200));
      rmSync(dir, { recursive: true, force: true });
      expect(await run).toBe(1);
      expect(errors.text()).toContain(`--json: could not write ${join(dir, "r.json")}: ENOENT`);
      expect(errors.text()).toContain(`--latency-log: could not write ${join(dir, "l.csv")}: ENOENT`);
    } finally {
      errors.restore();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("stops its gateway child and removes its files when it is itself stopped by a signal", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "zeptoclaw-bench-test-"));
    try {
      const bench = spawn(process.execPath, [BUILT_CLI, "bench", "--path", "webchat", "--users", "20", "--duration", "60", "--progress", "plain"], {
        env: { ...process.env, TMPDIR: tmp },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      const exited = new Promise<number | null>((resolve) => bench.once("exit", (code) => resolve(code)));
      // The first progress line comes once the gateway child answers and the load has begun.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no progress line within 20 s: ${stderr}`)), 20_000);
        bench.stderr.on("data", (d: Buffer) => {
          stderr += d.toString("utf8");
          if (stderr.includes("bench: load")) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const children = readFileSync(`/proc/${bench.pid}/task/${bench.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
      expect(children).toHaveLength(1);
      const gatewayPid = children[0] as number;
      expect(readdirSync(tmp)).toHaveLength(1);
      bench.kill("SIGTERM");
      expect(await exited).toBe(143);
      expect(stderr).toContain("stopped by SIGTERM");
      // SIGKILLed by the bench before it exited: gone within moments, not serving on.
      const deadline = Date.now() + 5_000;
      while (alive(gatewayPid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(alive(gatewayPid)).toBe(false);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("computes nearest-rank percentiles and least-squares slopes", () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(sorted, 100)).toBe(100);
    expect(linearFit([{ x: 0, y: 1 }, { x: 10, y: 21 }, { x: 20, y: 41 }]).slope).toBeCloseTo(2);
  });

  it("summarizes samples across chunks to the microsecond, as the report prints them", () => {
    const s = new Samples();
    // More than one 16,384-sample chunk, pushed in descending order.
    for (let i = 40_000; i >= 1; i--) s.push(i / 1000 + 0.0004);
    expect(s.length).toBe(40_000);
    expect(summarize(s)).toEqual({ p50: 20, p90: 36, p99: 39.6, max: 40 });
    const small = new Samples();
    for (const v of [0.0126, -1, 3.5]) small.push(v);
    expect(Array.from(small.sorted())).toEqual([0, 0.013, 3.5]);
  });
});

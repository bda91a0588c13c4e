import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { percentile } from "./stats.js";
import { BUILT_CLI } from "./targets/gateway-child.js";

// Start-up figures: `zeptoclaw --version` against `node -e 0`, and launch to the first
// /readyz 200 with the default config. Medians over repeated, alternating runs.
// Run with: node dist/bench/startup.js [--runs 20] [--port 18787]

function wallMs(args: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { stdio: "ignore" });
  if (r.status !== 0) throw new Error(`${args.join(" ")} exited with ${r.status}`);
  return performance.now() - t0;
}

function readyz(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = get({ host: "127.0.0.1", port, path: "/readyz", agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", () => resolve(0));
  });
}

async function readyMs(port: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-startup-"));
  const env = { ...process.env, ZEPTOCLAW_HTTP_PORT: String(port), ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir, "sessions.sqlite")}`, ZEPTOCLAW_LOG_LEVEL: "warn" };
  const t0 = performance.now();
  const child = spawn(process.execPath, [BUILT_CLI, "gateway"], { env, stdio: "ignore" });
  try {
    for (;;) {
      if ((await readyz(port)) === 200) return performance.now() - t0;
      if (performance.now() - t0 > 10_000) throw new Error("not ready within 10 s");
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

const med = (xs: number[]): number => percentile(Float64Array.from(xs).sort(), 50);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: "string", default: "20" }, port: { type: "string", default: "18787" } }, strict: true });
  const runs = Number(values.runs);
  const port = Number(values.port);
  wallMs(["-e", "0"]);
  wallMs([BUILT_CLI, "--version"]);
  const node: number[] = [];
  const version: number[] = [];
  const ratios: number[] = [];
  for (let i = 0; i < runs; i++) {
    const a = wallMs([BUILT_CLI, "--version"]);
    const b = wallMs(["-e", "0"]);
    version.push(a);
    node.push(b);
    ratios.push(a / b);
  }
  const ready: number[] = [];
  await readyMs(port);
  for (let i = 0; i < runs; i++) ready.push(await readyMs(port));
  const f = (xs: number[]): string => `median ${med(xs).toFixed(1)} ms (min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)})`;
  process.stdout.write(
    [
      `runs: ${runs} each, alternating, after one warm-up`,
      `node -e 0:            ${f(node)}`,
      `zeptoclaw --version:  ${f(version)}`,
      `ratio (pairwise):     median ${med(ratios).toFixed(2)}x (target <= 1.5x)`,
      `launch -> /readyz 200: ${f(ready)} (target <= 300 ms)`,
      "",
    ].join("\n"),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`startup bench: ${(err as Error).message}\n`);
  process.exitCode = 1;
});

import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { capturedLogs } from "./harness.js";

/** The built, bundled CLI: tests run what `npm ci` installs and `npm start` runs (`npm test` builds it first). */
export const CLI = join(PACKAGE_ROOT, "dist", "app", "cli.js");

/** Runs the CLI to completion and returns its exit code and output. */
export function runCli(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number; uid?: number; gid?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd ?? PACKAGE_ROOT,
      env: { PATH: process.env.PATH ?? "", ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      capturedLogs.push(d.toString());
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      capturedLogs.push(d.toString());
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 15_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A gateway running as a child process, as PM2 or a user would run it. */
export interface ChildGateway {
  child: ChildProcess;
  port: number;
  base: string;
  /** Every stdout line so far. */
  lines: string[];
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Starts `zeptoclaw gateway` and resolves once it logged "ready" (port read from that line). */
export function startChildGateway(args: string[], env: Record<string, string>, timeoutMs = 15_000): Promise<ChildGateway> {
  const child = spawn(process.execPath, [CLI, "gateway", ...args], {
    cwd: PACKAGE_ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`gateway did not become ready: ${stderr}\n${lines.join("\n")}`));
    }, timeoutMs);
    let buf = "";
    child.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        capturedLogs.push(line);
        if (line.includes("zeptoclaw gateway ready")) {
          clearTimeout(timer);
          const port = (JSON.parse(line) as { port: number }).port;
          resolve({ child, port, base: `http://127.0.0.1:${port}`, lines, exited });
        }
      }
    });
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      capturedLogs.push(d.toString());
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before ready: ${stderr}`));
    });
  });
}

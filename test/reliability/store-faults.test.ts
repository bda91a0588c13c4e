import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { capturedLogs, startTestGateway, type TestGateway } from "../support/harness.js";

let t: TestGateway | undefined;
let locker: ChildProcess | undefined;
afterEach(async () => {
  locker?.kill("SIGKILL");
  locker = undefined;
  await t?.close();
  t = undefined;
});

/**
 * Another program holding the journal's write lock for `holdMs`, as an operator's `sqlite3`
 * shell in a transaction would: the gateway's commits keep retrying for 5 s, then fail.
 * Resolves once the lock is held.
 */
function lockJournal(dir: string, holdMs: number): Promise<void> {
  const file = join(dir, "sessions.journal.sqlite");
  const code = `const db = new (require("better-sqlite3"))(${JSON.stringify(file)}); db.exec("BEGIN IMMEDIATE"); process.stdout.write("locked\\n"); setTimeout(() => { db.exec("COMMIT"); db.close(); }, ${holdMs});`;
  const child = spawn(process.execPath, ["-e", code], { cwd: PACKAGE_ROOT, stdio: ["ignore", "pipe", "inherit"] });
  locker = child;
  return new Promise((resolve, reject) => {
    child.once("exit", (c) => reject(new Error(`the locking process exited with ${c}`)));
    child.stdout?.once("data", () => resolve());
  });
}

/** Reads the web chat's event stream of `user`; `reply()` resolves with the first reply's text. */
async function replies(base: string, user: string): Promise<{ reply(): Promise<string> }> {
  const res = await fetch(`${base}/api/stream?user=${user}`);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  return {
    async reply() {
      for (let i = 0; i < 500; i++) {
        const m = /event: reply\ndata: (.*)\n\n/.exec(buf);
        if (m) return (JSON.parse(m[1]!) as { text: string }).text;
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
      }
      throw new Error(`no reply on the stream: ${buf}`);
    },
  };
}

describe("a message journal that cannot be written", () => {
  it("still answers a message whose reply cannot be stored, and stores it once it can", async () => {
    // The answer comes while another program holds the journal's lock.
    t = await startTestGateway({ llm: { latencyMs: 1_500 } });
    const stream = await replies(t.base, "ann");
    const posted = await t.post("ann", "hello");
    expect(posted.status).toBe(202);
    await lockJournal(t.dir, 7_000);
    // Storing the reply fails after the busy timeout; the user gets the answer all the same.
    expect(await stream.reply()).toBe("echo: hello");
    // Through the failure path, not ahead of the lock.
    expect(capturedLogs.some((l) => l.includes("reply could not be stored in the journal; sending it anyway"))).toBe(true);
    // The second try waits for the lock to go, then stores it: answered, not to be asked again.
    expect(await t.result(posted.body.id as string, 15_000)).toEqual({ status: "done", reply: "echo: hello" });
    expect(t.llm.count).toBe(1);
  }, 30_000);

  it("refuses a message it cannot journal with 503 and a reason, not a bare 500, and keeps serving meanwhile", async () => {
    t = await startTestGateway();
    await lockJournal(t.dir, 6_000);
    // The journal retries between turns of the event loop, not inside SQLite's busy wait:
    // everything else (here, a health check) is served while it does. (This test shares the
    // gateway's event loop: stalled, even its half-second timer would fire only after 5 s.)
    const started = performance.now();
    const posting = t.post("ann", "hello");
    await new Promise((r) => setTimeout(r, 500));
    expect((await fetch(`${t.base}/healthz`)).status).toBe(200);
    expect(performance.now() - started).toBeLessThan(2_000);
    const refused = await posting;
    expect(refused.status).toBe(503);
    expect(refused.body.error).toMatch(/message store is failing; the message was not accepted/);
    expect(t.llm.count).toBe(0);
  }, 30_000);
});

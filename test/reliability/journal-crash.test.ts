import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { MessageJournal } from "../../src/storage/journal.js";
import { openSyncSqlite } from "../../src/storage/sync-sqlite.js";
import { captureLogger, tempDir } from "../support/harness.js";

const WRITER = join(PACKAGE_ROOT, "dist", "test", "support", "journal-writer.js");

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * Runs the writer on `path` from message `start` until it has printed `lines` lines, then
 * kills it with SIGKILL. `unsure` is the one message whose delivery may have been committed
 * without being printed: the one the writer was answering when it died.
 */
async function writeThenKill(path: string, start: number, lines: number): Promise<{ accepted: Set<string>; delivered: Set<string>; unsure?: string }> {
  const child = spawn(process.execPath, [WRITER, path, String(start)], { stdio: ["ignore", "pipe", "inherit"] });
  cleanups.push(() => child.kill("SIGKILL"));
  const accepted = new Set<string>();
  const delivered = new Set<string>();
  const exited = new Promise((r) => child.once("exit", r));
  let seen = 0;
  let last = "";
  for await (const line of createInterface({ input: child.stdout })) {
    const [kind, id] = line.split(" ") as [string, string];
    (kind === "A" ? accepted : delivered).add(id);
    last = line;
    if (++seen === lines) child.kill("SIGKILL");
  }
  await exited;
  const n = /^A webchat:m(\d+)$/.exec(last)?.[1];
  return { accepted, delivered, ...(n === undefined ? {} : { unsure: `webchat:m${Number(n) - 5}` }) };
}

describe("journal crash safety", () => {
  it("after kill -9, a restart finds every accepted message not yet delivered, though the low mark passed them on every commit", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const path = join(dir.dir, "journal.sqlite");
    const accepted = new Set<string>();
    const delivered = new Set<string>();
    const unsure = new Set<string>();
    // Five lives of the file, each killed at a different point.
    for (const [start, lines] of [[0, 1_500], [10_000, 2_333], [20_000, 3_001], [30_000, 1_777], [40_000, 2_590]] as const) {
      const run = await writeThenKill(path, start, lines);
      if (run.unsure) unsure.add(run.unsure);
      for (const id of run.accepted) accepted.add(id);
      for (const id of run.delivered) delivered.add(id);
      const db = openSyncSqlite(`sqlite://${path}`);
      const left = await MessageJournal.open(db.db, captureLogger()).unfinished();
      db.close();
      const unfinished = new Set(left.accepted.map((m) => m.id));
      // Every acceptance the writer saw committed and no delivery it saw committed.
      const owed = [...accepted].filter((id) => !delivered.has(id) && !unsure.has(id));
      expect(owed.length).toBeGreaterThan(100);
      expect(owed.filter((id) => !unfinished.has(id))).toEqual([]);
      expect([...delivered].filter((id) => unfinished.has(id))).toEqual([]);
    }
  });
});

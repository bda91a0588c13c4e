import { closeSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openSyncSqlite, type SyncSqlite } from "../../src/storage/sync-sqlite.js";
import { startWalCheckpointer } from "../../src/storage/wal-checkpointer.js";
import { capturedLogs, captureLogger, tempDir } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const PAGE = 4096;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * A WAL database with one table, and the checkpoints its own (writer's) connection runs:
 * their count, and the WAL's length (in frames) each of them found.
 */
function open(): { sdb: SyncSqlite; path: string; writerCheckpoints: () => number; stepLogs: number[] } {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  const path = join(dir.dir, "wal.sqlite");
  const sdb = openSyncSqlite(`sqlite://${path}`);
  cleanups.push(() => sdb.close());
  sdb.db.exec("CREATE TABLE t (x TEXT)");
  const stepLogs: number[] = [];
  const pragma = sdb.db.pragma.bind(sdb.db);
  sdb.db.pragma = ((source: string, options?: { simple?: boolean }) => {
    const result = pragma(source, options);
    if (source.startsWith("wal_checkpoint")) stepLogs.push((result as { log: number }[])[0]?.log ?? -1);
    return result;
  }) as typeof sdb.db.pragma;
  return { sdb, path, writerCheckpoints: () => stepLogs.length, stepLogs };
}

const walFrames = (path: string): number => {
  try {
    return Math.floor(statSync(`${path}-wal`).size / (PAGE + 24));
  } catch {
    return 0;
  }
};

/** The WAL header's checkpoint sequence number: SQLite adds one each time the WAL restarts from its start. */
const walRestarts = (path: string): number => {
  const fd = openSync(`${path}-wal`, "r");
  try {
    const header = Buffer.alloc(16);
    readSync(fd, header, 0, 16, 0);
    return header.readUInt32BE(12);
  } finally {
    closeSync(fd);
  }
};

/** One small commit (one page) every turn for `ms`: a writer that never leaves the WAL fully copied. */
async function write(insert: { run(x: string): unknown }, ms: number): Promise<number> {
  let commits = 0;
  for (const until = Date.now() + ms; Date.now() < until; commits++) {
    insert.run(`row ${commits}`);
    await turn();
  }
  return commits;
}

/** Writes without pause in 100-ms stretches until `done()` or 10 s (the worker thread takes a while to start on a loaded machine); returns the commits. */
async function writeUntil(insert: { run(x: string): unknown }, done: () => boolean): Promise<number> {
  let commits = 0;
  for (const until = Date.now() + 10_000; Date.now() < until && !done(); ) commits += await write(insert, 100);
  return commits;
}

describe("WAL checkpointer", () => {
  it("keeps the WAL bounded under a writer that never pauses long enough, finishing the copy on the writer's connection at the bound", async () => {
    const { sdb, path, writerCheckpoints, stepLogs } = open();
    // A bound of 2,048 pages (8 MB) instead of 64 MB, so a test reaches it quickly, and well
    // above what this writer adds in one 25-ms interval (~800 pages on a fast machine): a
    // writer stepping in on every pass would be seen stepping below it.
    const bound = 2048;
    const stop = startWalCheckpointer([{ db: sdb.db, path }], captureLogger(), 25, bound * (PAGE + 24));
    cleanups.push(stop);
    const insert = sdb.db.prepare("INSERT INTO t (x) VALUES (?)");
    const commit = sdb.db.transaction((n: number) => {
      for (let k = 0; k < 8; k++) insert.run(`row ${n}.${k} ${"x".repeat(200)}`);
    });
    // A group-committing writer: one transaction per event-loop turn, as the journal under
    // load, so a commit lands during every pass of the worker (25-ms interval) and the worker
    // never finds the WAL fully copied. (One commit per timer turn, every millisecond or
    // more, let a fast machine's worker finish a pass between two commits: the WAL then
    // restarted by itself and the writer's step was never exercised.)
    const restartsBefore = walRestarts(path);
    let largestAfterFirstRestart = 0;
    for (let n = 0, until = Date.now() + 10_000; Date.now() < until && walRestarts(path) < restartsBefore + 4; n++) {
      commit(n);
      if (walRestarts(path) > restartsBefore) largestAfterFirstRestart = Math.max(largestAfterFirstRestart, walFrames(path));
      await turn();
    }
    expect(walRestarts(path)).toBeGreaterThanOrEqual(restartsBefore + 4);
    expect(writerCheckpoints()).toBeGreaterThan(0);
    // The writer stepped in only once the WAL had reached the bound, not on every pass (the
    // median, since a restart may rarely come between a pass and the step it asks for).
    const sorted = [...stepLogs].sort((x, y) => x - y);
    expect(sorted[Math.floor(sorted.length / 2)]).toBeGreaterThanOrEqual(bound);
    // The bound is soft (what the writer adds during a pass comes on top), but it holds: a
    // WAL that never restarts grows by two pages or more every commit.
    expect(largestAfterFirstRestart).toBeLessThan(4 * bound);
  });

  it("leaves the writer's thread alone below the bound: no checkpoint runs on it", async () => {
    const { sdb, path, writerCheckpoints } = open();
    // A bound this test cannot reach (the default 64 MB takes it under a second here).
    const stop = startWalCheckpointer([{ db: sdb.db, path }], captureLogger(), 25, 2 ** 40);
    cleanups.push(stop);
    const insert = sdb.db.prepare("INSERT INTO t (x) VALUES (?)");
    // Until the worker has copied pages into the database file, then a while longer.
    const commits = await writeUntil(insert, () => statSync(path).size > 10 * PAGE);
    expect(statSync(path).size).toBeGreaterThan(10 * PAGE);
    await write(insert, 300);
    // The worker's passes handed no checkpoint to the writer.
    expect(commits).toBeGreaterThan(0);
    expect(writerCheckpoints()).toBe(0);
  });

  it("restarts the WAL without the writer's step once the writer pauses and the worker catches up", async () => {
    const { sdb, path, writerCheckpoints } = open();
    const stop = startWalCheckpointer([{ db: sdb.db, path }], captureLogger(), 25, 2 ** 40);
    cleanups.push(stop);
    const insert = sdb.db.prepare("INSERT INTO t (x) VALUES (?)");
    const restartsBefore = walRestarts(path);
    await write(insert, 200);
    // Pauses of 50 ms, one commit after each: once a pass has copied everything, that
    // commit starts the WAL again from its beginning.
    for (let i = 0; i < 200 && walRestarts(path) === restartsBefore; i++) {
      await new Promise((r) => setTimeout(r, 50));
      insert.run(`after pause ${i}`);
    }
    expect(walRestarts(path)).toBeGreaterThan(restartsBefore);
    expect(writerCheckpoints()).toBe(0);
  });

  it("starts its worker on the first write, not before, and stops it after a quiet spell, starting it again on the next write", async () => {
    const { sdb, path, writerCheckpoints } = open();
    const seen = capturedLogs.length;
    /** The worker's starts and stops this test logged. */
    const since = (): string[] =>
      capturedLogs
        .slice(seen)
        .map((l) => (JSON.parse(l) as { msg: string }).msg)
        .filter((m) => m.startsWith("WAL checkpoint worker"));
    const waitFor = async (n: number): Promise<void> => {
      for (const until = Date.now() + 5_000; since().length < n && Date.now() < until; ) await new Promise((r) => setTimeout(r, 10));
    };
    const stop = startWalCheckpointer([{ db: sdb.db, path }], captureLogger(), 25, 2 ** 40, 300);
    cleanups.push(stop);
    // Twelve ticks without a write: no worker.
    await new Promise((r) => setTimeout(r, 300));
    expect(since()).toEqual([]);
    const insert = sdb.db.prepare("INSERT INTO t (x) VALUES (?)");
    await write(insert, 100);
    await waitFor(2);
    expect(since()).toEqual(["WAL checkpoint worker started", "WAL checkpoint worker stopped: no writes"]);
    // It copied the writes before it went: the database file holds them.
    expect(statSync(path).size).toBeGreaterThan(PAGE);
    await write(insert, 50);
    await waitFor(3);
    expect(since()[2]).toBe("WAL checkpoint worker started");
    expect(writerCheckpoints()).toBe(0);
  });
});

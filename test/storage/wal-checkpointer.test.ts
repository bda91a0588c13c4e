import { closeSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openSyncSqlite, type SyncSqlite } from "../../src/storage/sync-sqlite.js";
import { startWalCheckpointer } from "../../src/storage/wal-checkpointer.js";
import { captureLogger, tempDir } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const PAGE = 4096;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A WAL database with one table, and a count of the checkpoints its own (writer's) connection runs. */
function open(): { sdb: SyncSqlite; path: string; writerCheckpoints: () => number } {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  const path = join(dir.dir, "wal.sqlite");
  const sdb = openSyncSqlite(`sqlite://${path}`);
  cleanups.push(() => sdb.close());
  sdb.db.exec("CREATE TABLE t (x TEXT)");
  let count = 0;
  const pragma = sdb.db.pragma.bind(sdb.db);
  sdb.db.pragma = ((source: string, options?: { simple?: boolean }) => {
    if (source.startsWith("wal_checkpoint")) count++;
    return pragma(source, options);
  }) as typeof sdb.db.pragma;
  return { sdb, path, writerCheckpoints: () => count };
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

describe("WAL checkpointer", () => {
  it("keeps the WAL bounded under a writer that never pauses, resetting it from the writer's connection", async () => {
    const { sdb, path, writerCheckpoints } = open();
    const stop = startWalCheckpointer([{ db: sdb.db, path }], captureLogger(), 25);
    cleanups.push(stop);
    const insert = sdb.db.prepare("INSERT INTO t (x) VALUES (?)");
    // One small commit (one page) every turn: a writer that never leaves the WAL fully
    // copied, so it restarts only when the writer's own connection finishes the copy.
    const write = async (ms: number): Promise<number> => {
      let commits = 0;
      for (const until = Date.now() + ms; Date.now() < until; commits++) {
        insert.run(`row ${commits}`);
        await turn();
      }
      return commits;
    };
    const restartsBefore = walRestarts(path);
    const commits = await write(800);
    expect(commits).toBeGreaterThan(1_000);
    expect(writerCheckpoints()).toBeGreaterThan(0);
    // The WAL restarted from its start, so its file holds fewer pages than were committed
    // (it keeps its largest size). Without the writer's step it never restarts here and
    // grows by a page a commit.
    expect(walRestarts(path)).toBeGreaterThan(restartsBefore);
    expect(walFrames(path)).toBeLessThan(commits * 0.9);
  });
});

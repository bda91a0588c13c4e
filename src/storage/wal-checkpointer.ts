import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type Database from "better-sqlite3";
import type { Logger } from "pino";

// Runs in a worker thread with the same better-sqlite3 (one SQLite library in the process:
// two different SQLite copies on one file would defeat each other's locks).
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.module);
const db = new Database(workerData.path, { timeout: 5000 });
parentPort.on("message", () => {
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage(null);
  } catch (err) {
    parentPort.postMessage(String((err && err.message) || err));
  }
});
`;

/**
 * Checkpoints a WAL database off the main thread. SQLite's automatic checkpoint runs inside
 * a commit and copied ~4 MB on the committing (main) thread a few times a second: the whole
 * p99 tail of the journal. Here a worker copies the committed pages (PASSIVE: the writer is
 * not blocked), then the writer's own connection copies the few pages added meanwhile, which
 * lets its next commit restart the WAL from the beginning, so the file stays bounded.
 */
export function startWalCheckpointer(db: Database.Database, path: string, logger: Logger, intervalMs = 1_000): () => Promise<void> {
  db.pragma("wal_autocheckpoint = 0");
  let busy = false;
  let worker: Worker | undefined;
  // Started on the first tick, not at open: a thread takes milliseconds to start, and the
  // gateway should answer /readyz first.
  const startWorker = (): Worker => {
    const w = new Worker(WORKER, {
      eval: true,
      workerData: { path, module: createRequire(import.meta.url).resolve("better-sqlite3") },
    });
    w.unref();
    w.on("message", (err: string | null) => {
      busy = false;
      if (err) {
        logger.warn({ err }, "journal checkpoint failed");
        return;
      }
      try {
        if (db.open) db.pragma("wal_checkpoint(PASSIVE)");
      } catch (e) {
        logger.warn({ err: e }, "journal checkpoint failed");
      }
    });
    w.on("error", (err) => logger.error({ err }, "journal checkpoint worker failed"));
    // A worker that died is started again on the next tick, so checkpoints never stop for good.
    w.on("exit", () => {
      if (worker === w) worker = undefined;
      busy = false;
    });
    return w;
  };
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    (worker ??= startWorker()).postMessage(0);
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await worker?.terminate();
  };
}

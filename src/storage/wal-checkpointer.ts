import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type Database from "better-sqlite3";
import type { Logger } from "pino";

// Runs in a worker thread with the same better-sqlite3 (one SQLite library in the process:
// two different SQLite copies on one file would defeat each other's locks).
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.module);
const dbs = workerData.paths.map((path) => new Database(path, { timeout: 5000 }));
parentPort.on("message", (i) => {
  try {
    dbs[i].pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage({ i, err: null });
  } catch (err) {
    parentPort.postMessage({ i, err: String((err && err.message) || err) });
  }
});
`;

/** A database to checkpoint: the main thread's connection and the file's path. */
export interface WalTarget {
  db: Database.Database;
  path: string;
}

/**
 * Checkpoints WAL databases off the main thread, one worker for all of them. SQLite's
 * automatic checkpoint runs inside a commit and copied ~4 MB on the committing (main) thread
 * a few times a second: the whole p99 tail of the journal. Here a worker copies the committed
 * pages (PASSIVE: the writer is not blocked), then the writer's own connection copies the few
 * pages added meanwhile, which lets its next commit restart the WAL from the beginning, so
 * the file stays bounded.
 */
export function startWalCheckpointer(targets: readonly WalTarget[], logger: Logger, intervalMs = 1_000): () => Promise<void> {
  for (const t of targets) t.db.pragma("wal_autocheckpoint = 0");
  /** Checkpoints asked of the worker and not answered yet. */
  let busy = 0;
  let worker: Worker | undefined;
  // Started on the first tick, not at open: a thread takes milliseconds to start, and the
  // gateway should answer /readyz first.
  const startWorker = (): Worker => {
    const w = new Worker(WORKER, {
      eval: true,
      workerData: { paths: targets.map((t) => t.path), module: createRequire(import.meta.url).resolve("better-sqlite3") },
    });
    w.unref();
    w.on("message", ({ i, err }: { i: number; err: string | null }) => {
      busy--;
      const target = targets[i] as WalTarget;
      if (err) {
        logger.warn({ err, file: target.path }, "WAL checkpoint failed");
        return;
      }
      try {
        if (target.db.open) target.db.pragma("wal_checkpoint(PASSIVE)");
      } catch (e) {
        logger.warn({ err: e, file: target.path }, "WAL checkpoint failed");
      }
    });
    w.on("error", (err) => logger.error({ err }, "WAL checkpoint worker failed"));
    // A worker that died is started again on the next tick, so checkpoints never stop for good.
    w.on("exit", () => {
      if (worker === w) worker = undefined;
      busy = 0;
    });
    return w;
  };
  const timer = setInterval(() => {
    if (busy > 0 || targets.length === 0) return;
    busy = targets.length;
    const w = (worker ??= startWorker());
    for (let i = 0; i < targets.length; i++) w.postMessage(i);
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await worker?.terminate();
  };
}

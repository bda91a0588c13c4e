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
    const r = dbs[i].pragma("wal_checkpoint(PASSIVE)")[0];
    parentPort.postMessage({ i, err: null, frames: r.log });
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

/** How large a WAL may grow under unbroken writes before the writer's own connection finishes a checkpoint. */
export const MAX_WAL_BYTES = 64 * 1024 * 1024;

/**
 * Checkpoints WAL databases off the main thread, one worker for all of them. SQLite's
 * automatic checkpoint runs inside a commit and copied ~4 MB on the committing (main) thread
 * a few times a second: the whole p99 tail of the journal. Here a worker copies the committed
 * pages every `intervalMs` (PASSIVE: the writer is not blocked). When it has copied them all,
 * the writer's next commit restarts the WAL from its beginning, so the file stays bounded.
 *
 * Under unbroken writes the worker never catches up: the writer adds pages while it copies.
 * Then the writer's own connection must copy the last few itself, which costs two fsyncs on
 * the main thread (13-18 ms on a slow VPS disk, during which no message moves). It does so
 * only once the WAL holds `maxWalBytes`, not after every pass: at 1,000 msg/s the journal's
 * WAL grows ~17 MB a second, so that stall comes every few seconds instead of every second.
 * The bound is soft: the WAL reaches it plus what the writer adds in one interval and pass.
 * `journal_size_limit` (twice the bound) trims a file that grew further once the WAL restarts.
 * A restart itself costs the writer one fsync (the new WAL header, on its next commit).
 * The cost is disk (a WAL of the bound and a little more per database) and, after a crash
 * under load, reading that much WAL once when the gateway starts again.
 */
export function startWalCheckpointer(
  targets: readonly WalTarget[],
  logger: Logger,
  intervalMs = 1_000,
  maxWalBytes = MAX_WAL_BYTES,
): () => Promise<void> {
  const frameBytes = targets.map((t) => (t.db.pragma("page_size", { simple: true }) as number) + 24);
  for (const t of targets) {
    t.db.pragma("wal_autocheckpoint = 0");
    // Above the bound, so the file is not cut back (and grown again) on every cycle.
    t.db.pragma(`journal_size_limit = ${2 * maxWalBytes}`);
  }
  /** Checkpoints asked of the worker and not answered yet. */
  let busy = 0;
  /** Targets already warned about a checkpoint that could not run. */
  const unusual = new Set<number>();
  let worker: Worker | undefined;
  // Started on the first tick, not at open: a thread takes milliseconds to start, and the
  // gateway should answer /readyz first.
  const startWorker = (): Worker => {
    const w = new Worker(WORKER, {
      eval: true,
      workerData: { paths: targets.map((t) => t.path), module: createRequire(import.meta.url).resolve("better-sqlite3") },
    });
    w.unref();
    w.on("message", ({ i, err, frames }: { i: number; err: string | null; frames?: number }) => {
      busy--;
      const target = targets[i] as WalTarget;
      if (err) {
        logger.warn({ err, file: target.path }, "WAL checkpoint failed");
        return;
      }
      if (frames === undefined || frames < 0) {
        // -1: the file is not in WAL mode, or another process holds the checkpoint lock.
        if (!unusual.has(i)) logger.warn({ file: target.path }, "WAL checkpoint could not run (another process checkpointing, or not in WAL mode)");
        unusual.add(i);
        return;
      }
      // `frames` is the WAL's length when the pass began: the worker's own view, which cannot
      // tell whether the writer added pages meanwhile. Below the bound, leave the writer
      // alone; at it, its connection finishes the copy (a no-op, without fsyncs, when the
      // worker had copied everything).
      if (frames * (frameBytes[i] as number) < maxWalBytes) return;
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

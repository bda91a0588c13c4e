import { statSync } from "node:fs";
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

/** How long the worker stays after the last write: its thread, SQLite and V8 heap hold ~7-12 MB. */
export const WORKER_IDLE_MS = 10_000;

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
 * `journal_size_limit` (twice the bound) trims a file that grew further once the WAL restarts;
 * while one interval's growth stays under the bound, the file is reused, not cut and regrown.
 * A restart itself costs the writer one fsync (the new WAL header, on its next commit).
 * The cost is disk (a WAL of the bound and a little more per database) and, after a crash
 * under load, reading that much WAL once when the gateway starts again.
 *
 * A pass runs only when a writer committed something since the last one (SQLite's
 * `total_changes()` on the writer's connection), and the worker, which holds ~7-12 MB of RSS
 * (its thread, its V8 heap, its SQLite connections), is started on the first write and
 * stopped after `idleMs` without any: an idle gateway does not carry it.
 */
export function startWalCheckpointer(
  targets: readonly WalTarget[],
  logger: Logger,
  intervalMs = 1_000,
  maxWalBytes = MAX_WAL_BYTES,
  idleMs = WORKER_IDLE_MS,
): () => Promise<void> {
  const frameBytes = targets.map((t) => (t.db.pragma("page_size", { simple: true }) as number) + 24);
  for (const t of targets) {
    t.db.pragma("wal_autocheckpoint = 0");
    // Above the bound, so the file is not cut back (and grown again) on every cycle.
    t.db.pragma(`journal_size_limit = ${2 * maxWalBytes}`);
  }
  /** Checkpoints asked of the worker and not answered yet. */
  let busy = 0;
  const changesOf = targets.map((t) => t.db.prepare("SELECT total_changes()").pluck());
  /** Each writer's change count when its last pass was asked for. */
  const passedAt = changesOf.map((c) => c.get() as number);
  /** When a writer was last seen to have written (epoch ms). */
  let wroteAt = 0;
  /** When each target was last warned about a failed checkpoint (at most one warning a minute). */
  const warnedAt = targets.map(() => Number.NEGATIVE_INFINITY);
  const warn = (i: number, err: unknown): void => {
    const now = Date.now();
    if (now - (warnedAt[i] as number) < 60_000) return;
    warnedAt[i] = now;
    logger.warn({ err, file: (targets[i] as WalTarget).path }, "WAL checkpoint failed");
  };
  /** The WAL length each target's writer last stepped in at: an idle WAL is not stepped into again. */
  const steppedAt = targets.map(() => -1);
  /** The writer finishes the copy on its own connection. */
  const step = (i: number): void => {
    const target = targets[i] as WalTarget;
    try {
      if (target.db.open) target.db.pragma("wal_checkpoint(PASSIVE)");
    } catch (e) {
      warn(i, e);
    }
  };
  /**
   * A pass that failed (or could not run: not in WAL mode, another process holding the
   * checkpoint lock) says nothing about the WAL's length: read it from the file, so a worker
   * that keeps failing cannot let the WAL grow without bound.
   */
  const failed = (i: number, err: unknown): void => {
    const target = targets[i] as WalTarget;
    warn(i, err);
    // Asked for again on the next tick, writes or not.
    passedAt[i] = -1;
    let bytes = 0;
    try {
      bytes = statSync(`${target.path}-wal`).size;
    } catch {
      // No WAL file: nothing to bound.
    }
    if (bytes >= maxWalBytes) step(i);
  };
  let worker: Worker | undefined;
  // Started on the first tick that finds a write, not at open: a thread takes milliseconds
  // to start, and the gateway should answer /readyz first.
  const startWorker = (): Worker => {
    const w = new Worker(WORKER, {
      eval: true,
      workerData: { paths: targets.map((t) => t.path), module: createRequire(import.meta.url).resolve("better-sqlite3") },
    });
    w.unref();
    logger.debug("WAL checkpoint worker started");
    w.on("message", ({ i, err, frames }: { i: number; err: string | null; frames?: number }) => {
      busy--;
      if (err) return failed(i, err);
      // -1: the file is not in WAL mode, or another process holds the checkpoint lock.
      if (frames === undefined || frames < 0) return failed(i, "the checkpoint could not run (another process checkpointing, or not in WAL mode)");
      // `frames` is the WAL's length when the pass began: the worker's own view, which cannot
      // tell whether the writer added pages meanwhile. Below the bound, leave the writer
      // alone; at it, its connection finishes the copy (a no-op, without fsyncs, when the
      // worker had copied everything). A WAL that has not moved since the last step is left.
      if (frames * (frameBytes[i] as number) < maxWalBytes || frames === steppedAt[i]) return;
      steppedAt[i] = frames;
      step(i);
    });
    w.on("error", (err) => logger.error({ err }, "WAL checkpoint worker failed"));
    // A worker that died is started again on the next tick, so checkpoints never stop for good.
    w.on("exit", () => {
      // Died rather than stopped for idling: its passes may not have run, so every database is asked for again.
      if (worker === w) {
        worker = undefined;
        passedAt.fill(-1);
      }
      busy = 0;
    });
    return w;
  };
  const timer = setInterval(() => {
    if (busy > 0 || targets.length === 0) return;
    const now = Date.now();
    const due: number[] = [];
    for (let i = 0; i < targets.length; i++) {
      if (!(targets[i] as WalTarget).db.open) continue;
      const changes = changesOf[i]?.get() as number;
      if (changes === passedAt[i]) continue;
      passedAt[i] = changes;
      due.push(i);
    }
    if (due.length === 0) {
      if (worker && now - wroteAt >= idleMs) {
        logger.debug({ idleMs }, "WAL checkpoint worker stopped: no writes");
        const w = worker;
        worker = undefined;
        void w.terminate();
      }
      return;
    }
    wroteAt = now;
    busy = due.length;
    const w = (worker ??= startWorker());
    for (const i of due) w.postMessage(i);
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await worker?.terminate();
  };
}

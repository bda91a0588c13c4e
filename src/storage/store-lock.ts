import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { StorageError } from "../errors.js";

/** How long a start waits for a gateway that is still exiting to let go of the store. */
const WAIT_MS = 1_000;

/** The lock file beside a store: `sqlite://data/sessions.sqlite` -> `data/sessions.lock`; none in memory. */
export function storeLockPath(store: string): string | undefined {
  const path = store.replace(/^sqlite:\/\//, "");
  if (path === ":memory:") return undefined;
  return path.endsWith(".sqlite") ? `${path.slice(0, -".sqlite".length)}.lock` : `${path}.lock`;
}

/** A held store lock. */
export interface StoreLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the store's lock: one gateway per store. Two gateways on one store (PM2 switched to
 * cluster mode, a second copy started by hand with another port) would write the same journal
 * file, each with its own idea of the newest row and of the rows not yet answered, and the
 * same sessions, each from its own cache: a restart of either could skip messages the other
 * had accepted, and sessions would lose turns. The second one is refused at start instead.
 *
 * The lock is SQLite's exclusive lock on a small file of its own (a connection in exclusive
 * locking mode keeps it until closed), not on the store, so `zeptoclaw pair` and `doctor` still
 * open the store beside a running gateway. The kernel drops it when the process dies: a
 * `kill -9` leaves nothing stale for the next start to clean up. Throws `StorageError`,
 * naming the file, when another process holds it.
 */
export function lockStore(store: string, waitMs = WAIT_MS): StoreLock | undefined {
  const path = storeLockPath(store);
  if (path === undefined) return undefined;
  let db: Database.Database | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new Database(path, { timeout: waitMs });
    db.pragma("locking_mode = EXCLUSIVE");
    // No rollback journal file: the transaction writes nothing, it only takes the lock.
    db.pragma("journal_mode = MEMORY");
    db.exec("BEGIN EXCLUSIVE; COMMIT");
  } catch (err) {
    db?.close();
    const busy = (err as { code?: string }).code === "SQLITE_BUSY";
    throw new StorageError(
      busy
        ? `another zeptoclaw gateway is running on session.store ${store} (it holds ${path}); run one gateway per store, or give this one a store of its own`
        : `cannot take the store's lock ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const held = db;
  return {
    path,
    release() {
      if (held.open) held.close();
    },
  };
}

/** Whether a gateway holds the store's lock right now (`zeptoclaw doctor` asks); never waits. */
export function storeInUse(store: string): boolean {
  try {
    lockStore(store, 0)?.release();
    return false;
  } catch (err) {
    return ((err as { cause?: { code?: string } }).cause?.code ?? "") === "SQLITE_BUSY";
  }
}

import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { StorageError } from "../errors.js";
import { sqlitePath } from "./sync-sqlite.js";

/** How long a start waits for a gateway that is still exiting to let go of the store. */
const WAIT_MS = 1_000;

/** The lock file beside a store: `sqlite://data/sessions.sqlite` -> `data/sessions.sqlite.lock`; none in memory. */
export function storeLockPath(store: string): string | undefined {
  const path = sqlitePath(store);
  return path === ":memory:" ? undefined : `${path}.lock`;
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
    // No rollback journal file for the one small write below.
    db.pragma("journal_mode = MEMORY");
    // A write, not just BEGIN EXCLUSIVE: on a file this user may only read (left by a gateway
    // once started as root, say) SQLite opens read-only without a word and BEGIN EXCLUSIVE
    // takes only a shared lock, which a second gateway could share. The write fails there.
    db.exec(`BEGIN EXCLUSIVE; PRAGMA user_version = ${process.pid}; COMMIT`);
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

/**
 * Whether a gateway holds the store's lock right now (`zeptoclaw doctor` asks). Reads only,
 * never creates the file and never waits: a read is refused while a gateway holds it.
 */
export function storeInUse(store: string): boolean {
  const path = storeLockPath(store);
  if (path === undefined || !existsSync(path)) return false;
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, timeout: 0 });
    db.prepare("SELECT count(*) FROM sqlite_master").get();
    return false;
  } catch (err) {
    return (err as { code?: string }).code === "SQLITE_BUSY";
  } finally {
    db?.close();
  }
}

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";

const CACHE_KIB = 2_000;

/** A synchronous SQLite connection (better-sqlite3): the journal's, and the sessions' under `SqliteKvStore`. */
export interface SyncSqlite {
  db: Database.Database;
  /** Runs one statement, prepared once and cached; resolves with its rows (or none). Async for `PairingStore` and health checks. */
  query(sql: string, ...params: unknown[]): Promise<unknown[]>;
  close(): void;
}

/** The file a `sqlite://` URI names (`sqlite://data/x.sqlite` -> `data/x.sqlite`), or `:memory:`. */
export function sqlitePath(uri: string): string {
  return uri.replace(/^sqlite:\/\//, "");
}

/**
 * Opens a SQLite file with better-sqlite3 in WAL mode with `synchronous=NORMAL`: a commit is a
 * write to the WAL, tens of microseconds on the calling thread, and survives a killed process
 * (a power cut may lose the last commits; the OS has not synced them).
 */
export function openSyncSqlite(uri: string): SyncSqlite {
  const path = sqlitePath(uri);
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: 5_000 });
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  // better-sqlite3 builds SQLite with a 16 MB page cache per connection; SQLite's own
  // default is 2 MB. The journal's hot pages are its tail (rows accepted in the last
  // seconds), so 16 MB only held old rows, and grew RSS with every message until full.
  db.pragma(`cache_size = -${CACHE_KIB}`);
  const cache = new Map<string, Database.Statement>();
  return {
    db,
    async query(sql, ...params) {
      let stmt = cache.get(sql);
      if (!stmt) {
        stmt = db.prepare(sql);
        if (cache.size < 100) cache.set(sql, stmt);
      }
      if (stmt.reader) return stmt.all(...params) as unknown[];
      stmt.run(...params);
      return [];
    },
    close() {
      if (db.open) db.close();
    },
  };
}

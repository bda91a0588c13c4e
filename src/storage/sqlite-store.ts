import { EventEmitter } from "node:events";
import type Database from "better-sqlite3";
import type { Statement } from "better-sqlite3";
import { SliceSizer, SWEEP_BUDGET_MS, sweepInRanges } from "./slices.js";

/** A row as Keyv hands it to a store: the key already namespaced, the value serialized. */
export interface SerializedEntry {
  key: string;
  value: unknown;
}

/**
 * A Keyv store on a synchronous better-sqlite3 connection, in the table layout of
 * `@keyv/sqlite` (`key VARCHAR(255) PRIMARY KEY, value TEXT`), so session files written by
 * earlier versions open unchanged.
 *
 * Why not `@keyv/sqlite`: it runs every query through the `sqlite3` package, which prepares
 * a new statement per call on the libuv thread pool and wraps each in promises and callbacks.
 * At 1,000 sessions written a second those callbacks, not SQLite, were a third of what held
 * the event loop during a flush. Here a batch is one transaction of prepared statements on
 * the calling thread, tens of microseconds per session; `WriteBehindMap` keeps each batch
 * small so no message waits long behind one. One SQLite library in the process (the journal
 * uses better-sqlite3 too), and no native build of `sqlite3` at install.
 */
export class SqliteKvStore extends EventEmitter {
  readonly opts: { table: string; dialect: "sqlite" };
  /** Set by Keyv; used by `clear()` only (the keys Keyv hands over are already prefixed). */
  namespace: string | undefined;
  private readonly selectStmt: Statement;
  private readonly upsertStmt: Statement;
  private readonly deleteStmt: Statement;
  private readonly upsertMany: (entries: readonly SerializedEntry[]) => void;
  private readonly deleteManyTx: (keys: readonly string[]) => number;

  constructor(
    private readonly db: Database.Database,
    table = "keyv",
  ) {
    super();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) throw new Error(`invalid table name: ${table}`);
    this.opts = { table, dialect: "sqlite" };
    db.exec(`CREATE TABLE IF NOT EXISTS ${table}(key VARCHAR(255) PRIMARY KEY, value TEXT )`);
    this.selectStmt = db.prepare(`SELECT value FROM ${table} WHERE key = ?`);
    this.upsertStmt = db.prepare(`INSERT INTO ${table} (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`);
    this.deleteStmt = db.prepare(`DELETE FROM ${table} WHERE key = ?`);
    this.upsertMany = db.transaction((entries: readonly SerializedEntry[]) => {
      for (const e of entries) this.upsertStmt.run(e.key, e.value);
    });
    this.deleteManyTx = db.transaction((keys: readonly string[]) => {
      let n = 0;
      for (const k of keys) n += this.deleteStmt.run(k).changes;
      return n;
    });
  }

  async get(key: string): Promise<string | undefined> {
    const row = this.selectStmt.get(key) as { value: string | null } | undefined;
    return row?.value ?? undefined;
  }

  async set(key: string, value: unknown): Promise<void> {
    this.upsertStmt.run(key, value);
  }

  /** Upserts every entry in one transaction: one WAL write for the whole batch. */
  async setMany(entries: SerializedEntry[]): Promise<boolean[]> {
    this.upsertMany(entries);
    return entries.map(() => true);
  }

  async delete(key: string): Promise<boolean> {
    return this.deleteStmt.run(key).changes > 0;
  }

  async deleteMany(keys: string[]): Promise<boolean> {
    return this.deleteManyTx(keys) > 0;
  }

  async has(key: string): Promise<boolean> {
    return this.selectStmt.get(key) !== undefined;
  }

  /** Deletes the current namespace's rows (every row when there is none). */
  async clear(): Promise<void> {
    if (this.namespace === undefined) {
      this.db.prepare(`DELETE FROM ${this.opts.table}`).run();
      return;
    }
    const prefix = `${this.namespace}:`.replace(/[\\%_]/g, (c) => `\\${c}`);
    this.db.prepare(`DELETE FROM ${this.opts.table} WHERE key LIKE ? ESCAPE '\\'`).run(`${prefix}%`);
  }

  /**
   * Deletes rows whose Keyv expiry has passed, a range of rows at a time with a turn of the
   * event loop between ranges: one DELETE over every session parses each row's JSON and
   * held the (synchronous) connection, and so the gateway, for as long as that takes.
   * Stops early when `stopped()` says so (the store is closing). Returns the rows deleted.
   */
  async sweepExpired(now: number, stopped: () => boolean = () => false): Promise<number> {
    const table = this.opts.table;
    const edgeStmt = this.db.prepare(`SELECT max(rowid) AS edge FROM (SELECT rowid FROM ${table} WHERE rowid > ? ORDER BY rowid LIMIT ?)`);
    const deleteStmt = this.db.prepare(
      `DELETE FROM ${table} WHERE rowid > ? AND rowid <= ? AND json_valid(value)
         AND json_extract(value, '$.expires') IS NOT NULL AND json_extract(value, '$.expires') < ?`,
    );
    return sweepInRanges(
      (after, size) => {
        const { edge } = edgeStmt.get(after, size) as { edge: number | null };
        return edge === null ? undefined : { edge, deleted: deleteStmt.run(after, edge, now).changes };
      },
      new SliceSizer(SWEEP_BUDGET_MS, 8, 5_000, 100),
      () => stopped() || !this.db.open,
    );
  }

  /** The connection belongs to whoever opened it; Keyv's disconnect does not close it. */
  async disconnect(): Promise<void> {}
}

import Keyv, { type KeyvOptions } from "keyv";
import type { Logger } from "pino";
import { StorageError } from "../errors.js";
import { MessageJournal } from "./journal.js";
import { PairingStore } from "./pairing.js";
import type { CompactHistory } from "./compact-history.js";
import { reviveSession, SessionStore } from "./session-store.js";
import { SqliteKvStore } from "./sqlite-store.js";
import { lockStore, type StoreLock } from "./store-lock.js";
import { openSyncSqlite, sqlitePath, type SyncSqlite } from "./sync-sqlite.js";
import { startWalCheckpointer } from "./wal-checkpointer.js";
import { WriteBehindMap } from "./write-behind.js";

/** Settings the stores need, taken from `[session]`. */
export interface StoresConfig {
  store: string;
  max_session_messages: number;
  session_ttl_hours: number;
  cache_size: number;
  flush_interval_ms: number;
}

/** The opened stores and how to flush and close them together. */
export interface Stores {
  sessions: SessionStore;
  /** Accepted messages and their outcomes: replay after a crash, results by id. */
  journal: MessageJournal;
  /** Small per-user counters (daily token usage), on the same file. */
  counters: WriteBehindMap<number>;
  /** One-time codes for users the operator approves with `zeptoclaw pair approve`. */
  pairing: PairingStore;
  /** Commits every pending write. */
  flush(): Promise<void>;
  /** True while the database answers. */
  healthy(): Promise<boolean>;
  close(): Promise<void>;
}

const HOUR = 3_600_000;

// Sessions are plain JSON: the default serializer's Buffer and BigInt handling costs time
// on every write and buys nothing here.
const plainJson: Pick<KeyvOptions, "serialize" | "deserialize"> = {
  serialize: (data) => JSON.stringify(data),
  deserialize: (data) => JSON.parse(data) as ReturnType<typeof JSON.parse>,
};

/** SQLite's own wait for a write lock on the gateway's connections: long enough for a `pair approve`'s few-ms write. */
const GATEWAY_BUSY_TIMEOUT_MS = 25;

/** The journal's file, beside the session store: `data/sessions.sqlite` -> `data/sessions.journal.sqlite`. */
export function journalUri(store: string): string {
  if (store === "sqlite://:memory:") return store;
  return store.endsWith(".sqlite") ? `${store.slice(0, -".sqlite".length)}.journal.sqlite` : `${store}.journal`;
}

/**
 * Opens the session store and, beside it, the message journal; throws `StorageError` if it
 * cannot. `exclusive` (the gateway) first takes the store's lock, held until `close()`: one
 * gateway per store (store-lock.ts); the CLI's `pair` and `doctor` open it beside a gateway.
 */
export async function openStores(cfg: StoresConfig, logger: Logger, { exclusive = false }: { exclusive?: boolean } = {}): Promise<Stores> {
  if (!cfg.store.startsWith("sqlite://")) {
    throw new StorageError(`session.store: only sqlite:// is supported by this build (got ${cfg.store.split(":")[0]}://)`);
  }
  const lock: StoreLock | undefined = exclusive ? lockStore(cfg.store) : undefined;
  // Two files, one connection each: sessions and counters in the configured file, the journal
  // in one beside it. A session flush writes megabytes a second and the journal small rows
  // that acknowledgements wait on; apart, each file's WAL and checkpoints stay its own, and
  // files from earlier versions (written through @keyv/sqlite, same table) open unchanged.
  const opened: SyncSqlite[] = [];
  const open = (uri: string): SyncSqlite => {
    const c = openSyncSqlite(uri);
    opened.push(c);
    return c;
  };
  let sdb: SyncSqlite;
  let db: SqliteKvStore;
  let jdb: SyncSqlite;
  let journal: MessageJournal;
  let pairing: PairingStore;
  try {
    sdb = open(cfg.store);
    db = new SqliteKvStore(sdb.db, "kv");
    jdb = open(journalUri(cfg.store));
    journal = MessageJournal.open(jdb.db, logger.child({ component: "journal" }));
    pairing = await PairingStore.open(jdb, { ttlMs: HOUR, maxPending: 20 });
    if (exclusive) {
      // The gateway's writes run on its one thread: waiting out another program's write lock
      // inside SQLite (5 s) would stop everything else. They fail fast instead, and retry
      // between turns: the journal for up to 5 s, session flushes with their backoff.
      sdb.db.pragma(`busy_timeout = ${GATEWAY_BUSY_TIMEOUT_MS}`);
      jdb.db.pragma(`busy_timeout = ${GATEWAY_BUSY_TIMEOUT_MS}`);
    }
  } catch (err) {
    // Nothing half-open is left behind: a caller that retries does not leak connections.
    for (const c of opened) c.close();
    lock?.release();
    const path = sqlitePath(cfg.store);
    throw new StorageError(`cannot open the session store at ${path}: ${(err as Error).message}`, { cause: err });
  }
  const ttlMs = cfg.session_ttl_hours * HOUR;
  const sessionsKeyv = new Keyv<unknown>({ store: db, namespace: "s", throwOnErrors: true, ...plainJson });
  const log = logger.child({ component: "storage" });
  const sessionMap = new WriteBehindMap<CompactHistory>(sessionsKeyv, {
    maxEntries: cfg.cache_size,
    flushIntervalMs: cfg.flush_interval_ms,
    ttlMs,
    logger: log,
    revive: reviveSession,
  });
  const counters = new WriteBehindMap<number>(new Keyv<unknown>({ store: db, namespace: "c", throwOnErrors: true, ...plainJson }), {
    maxEntries: cfg.cache_size,
    flushIntervalMs: cfg.flush_interval_ms,
    ttlMs: 48 * HOUR,
    logger: log,
  });
  let closing = false;
  let sweeping: Promise<void> | undefined;
  const sweep = async (): Promise<void> => {
    try {
      const now = Date.now();
      await db.sweepExpired(now, () => closing);
      // Outcomes stay readable by id for a day at least.
      await journal.sweep(now - Math.max(ttlMs, 24 * HOUR), () => closing);
    } catch (err) {
      log.warn({ err }, "sweeping expired rows failed");
    }
  };
  const startSweep = (): void => {
    if (!sweeping) sweeping = sweep().finally(() => (sweeping = undefined));
  };
  const stopCheckpoints =
    cfg.store === "sqlite://:memory:"
      ? async () => undefined
      : startWalCheckpointer(
          [
            { db: jdb.db, path: sqlitePath(journalUri(cfg.store)) },
            { db: sdb.db, path: sqlitePath(cfg.store) },
          ],
          log,
        );
  // The first sweep a minute after start, not during it: a gateway restarted at a busy
  // moment answers first. Then hourly; sweeps never overlap.
  const firstSweep = setTimeout(startSweep, 60_000);
  firstSweep.unref();
  const sweeper = setInterval(startSweep, HOUR);
  sweeper.unref();
  return {
    sessions: new SessionStore(sessionMap, cfg.max_session_messages),
    journal,
    counters,
    pairing,
    async flush() {
      await Promise.all([sessionMap.flush(), journal.flush(), counters.flush()]);
    },
    async healthy() {
      try {
        await sdb.query("SELECT 1");
        await jdb.query("SELECT 1");
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      closing = true;
      clearTimeout(firstSweep);
      clearInterval(sweeper);
      await sweeping;
      await stopCheckpoints();
      try {
        await Promise.all([sessionMap.close(), journal.flush(), counters.close()]);
      } finally {
        jdb.close();
        sdb.close();
        lock?.release();
      }
    },
  };
}

import type { Logger } from "pino";
import { StorageError } from "../errors.js";
import { SliceSizer, SWEEP_BUDGET_MS, sweepInRanges } from "./slices.js";
import type { InboundMessage } from "../messages.js";
import type Database from "better-sqlite3";
import type { Statement } from "better-sqlite3";

/** Where a message stands: waiting for its reply, answered, or answered with an error. */
export type MessageStatus = "pending" | "done" | "error";

/** The outcome of one accepted message, readable by its id, also after a restart. */
export interface MessageResult {
  status: MessageStatus;
  /** The owner, so a channel can refuse to show it to anyone else. */
  userId: string;
  reply?: string;
  error?: string;
}

/** What a restart finds in the journal. */
export interface Unfinished {
  /** Accepted, never answered: run them again, in acceptance order. */
  accepted: InboundMessage[];
  /** Answered but maybe not delivered: send the stored reply again, never the LLM. */
  finished: { m: InboundMessage; text: string; isError: boolean }[];
}

type Op =
  | { kind: "accept"; m: InboundMessage; done: (isNew: boolean) => void; fail: (e: unknown) => void }
  | { kind: "finish"; id: string; text: string; isError: boolean; final: boolean; done: () => void; fail: (e: unknown) => void }
  | { kind: "delivered"; id: string };

/** What one commit did, applied to `unlisted` once it has committed. */
interface Batch {
  /** Rows this commit added, by id: their `seq`. */
  fresh: Map<string, number>;
  /** The acceptances that added them: only the first of an id in a batch is new. */
  freshOps: Set<Op>;
  /** Rows this commit marked delivered. */
  closed: string[];
}

/** Longest a "delivered" mark waits for a commit to ride with. */
const DELIVERED_WAIT_MS = 50;

// Row states: 0 accepted, 1 finished (reply stored, maybe not delivered), 2 delivered.
const ACCEPTED = 0;
const FINISHED = 1;
const DELIVERED = 2;
/** The rows start-up recovery reads. */
const UNFINISHED = `state < ${DELIVERED}`;

/**
 * How long a commit keeps trying while another program holds the file's write lock (an
 * operator's `sqlite3` shell in a transaction): tries every BUSY_RETRY_MS between turns of
 * the event loop, not in SQLite's busy wait, which would hold the whole gateway.
 */
const BUSY_BUDGET_MS = 5_000;
const BUSY_RETRY_MS = 50;

/** How often, at most, the low mark moves up (see MessageJournal). */
const MARK_EVERY_MS = 5_000;

/** Tuning for tests. */
export interface JournalOptions {
  /** How often, at most, the low mark moves up; 0 moves it with every commit. */
  markEveryMs?: number;
}

/**
 * The durable record of every accepted message: "accepted means answered".
 *
 * A message is journaled before its channel acknowledges it; its reply is stored before
 * it is sent; it is marked delivered after. Writes from many messages are grouped into one
 * transaction per event-loop turn (group commit) on a synchronous connection: a commit is a
 * WAL write of tens of microseconds on this thread, with no hop to a worker thread and no
 * queue behind other writes. A `kill -9` loses nothing that was acknowledged: on start,
 * accepted rows run again and finished-but-undelivered rows have their stored reply sent
 * again. The one window left: a crash between a platform send and the commit that marks
 * it delivered may send that one reply twice. That mark has no one waiting for it, so it
 * does not start a commit of its own: it rides with the next acceptance or reply, or is
 * committed alone after DELIVERED_WAIT_MS when none comes (a third fewer commits a message
 * under load; the window stays one turn busy, at most DELIVERED_WAIT_MS idle).
 *
 * How a restart finds the unfinished rows without an index over them. At 1,000 msg/s each
 * message's two commits are alone, and each page they touch is written whole to the WAL: a
 * partial index over unfinished rows (an entry added on acceptance, removed on delivery)
 * and `AUTOINCREMENT`'s counter made six pages, ~26 KB, a message; without them it is three.
 * Instead a low mark (`journal_mark.low`) says where unfinished rows begin: every row not
 * yet delivered has a `seq` at or above it, or is listed in `journal_pending`. Every
 * MARK_EVERY_MS, inside a commit, the unfinished rows accepted since the last mark (known
 * here, in `unlisted`) are listed in `journal_pending` and the mark moves past the newest
 * row; a listed row's delivery removes it from the list in its own transaction (one page
 * more, for a reply slower than that). Both are written in the same transactions as the
 * rows, so the rule holds in every committed state: a restart reads the list and the rows
 * from the mark on (a few seconds of rows), in `seq` order. A mark written late only makes
 * that read longer. Rows get `seq` = the largest + 1, so the sweep never deletes the newest
 * row: a new row's `seq` could otherwise fall below the mark. A delivered row is never
 * written back to unfinished (it would be below the mark, and not listed).
 */
export class MessageJournal {
  private ops: Op[] = [];
  private scheduled = false;
  /** Commits "delivered" marks that found no commit to ride with. */
  private lateCommit: NodeJS.Timeout | undefined;
  private readonly insert: Statement;
  private readonly finishStmt: Statement;
  private readonly deliveredStmt: Statement;
  private readonly getStmt: Statement;
  private readonly pendStmt: Statement;
  private readonly unpendStmt: Statement;
  private readonly unpendByIdStmt: Statement;
  private readonly markStmt: Statement;
  private readonly commitBatch: (ops: Op[], now: number, mark: boolean) => Batch;
  /** Rows not yet delivered and not in `journal_pending` (accepted since the last mark), by id: their `seq` (as committed). */
  private readonly unlisted = new Map<string, number>();
  /** The largest `seq` committed. */
  private lastSeq: number;
  /** When the low mark last moved up (`performance.now()`: a clock that never goes back). */
  private markedAt = Number.NEGATIVE_INFINITY;
  /** When commits began to find the file locked by another program; undefined when they do not. */
  private busySince: number | undefined;

  private constructor(
    private readonly db: Database.Database,
    private readonly logger: Logger,
    private readonly markEveryMs: number,
  ) {
    this.insert = db.prepare(
      `INSERT INTO journal (id, user_id, conversation_id, payload, state, updated_at) VALUES (?, ?, ?, ?, ${ACCEPTED}, ?)
         ON CONFLICT(id) DO NOTHING`,
    );
    this.finishStmt = db.prepare(`UPDATE journal SET state = ?, reply = ?, is_error = ?, payload = NULL, updated_at = ? WHERE id = ? AND ${UNFINISHED}`);
    this.deliveredStmt = db.prepare(`UPDATE journal SET state = ${DELIVERED}, updated_at = ? WHERE id = ? AND ${UNFINISHED}`);
    this.getStmt = db.prepare("SELECT user_id, state, reply, is_error FROM journal WHERE id = ?");
    this.pendStmt = db.prepare("INSERT OR IGNORE INTO journal_pending (seq) VALUES (?)");
    this.unpendStmt = db.prepare("DELETE FROM journal_pending WHERE seq = ?");
    this.unpendByIdStmt = db.prepare("DELETE FROM journal_pending WHERE seq = (SELECT seq FROM journal WHERE id = ?)");
    this.markStmt = db.prepare("UPDATE journal_mark SET low = ? WHERE k = 0");
    this.lastSeq = (db.prepare("SELECT max(seq) FROM journal").pluck().get() as number | null) ?? 0;
    // The unfinished rows from the mark on are not listed; the listed ones stay on disk only.
    const low = this.low();
    for (const row of this.db.prepare(`SELECT id, seq FROM journal WHERE seq >= ? AND ${UNFINISHED}`).all(low) as { id: string; seq: number }[]) {
      this.unlisted.set(row.id, row.seq);
    }
    this.commitBatch = db.transaction((ops: Op[], now: number, mark: boolean) => {
      if (mark) {
        for (const seq of this.unlisted.values()) this.pendStmt.run(seq);
        this.markStmt.run(this.lastSeq + 1);
      }
      const batch: Batch = { fresh: new Map(), freshOps: new Set(), closed: [] };
      const close = (id: string): void => {
        const seq = this.unlisted.get(id);
        if (seq !== undefined) {
          // Listed a moment ago, by this very commit's mark.
          if (mark) this.unpendStmt.run(seq);
          batch.closed.push(id);
        } else if (batch.fresh.has(id)) batch.closed.push(id);
        // Accepted before the last mark: listed, unless it is delivered already or unknown.
        else this.unpendByIdStmt.run(id);
      };
      for (const op of ops) {
        if (op.kind === "accept") {
          const m = op.m;
          const r = this.insert.run(m.id, m.userId, m.conversationId, JSON.stringify(m), now);
          if (r.changes === 1) {
            batch.fresh.set(m.id, Number(r.lastInsertRowid));
            batch.freshOps.add(op);
          }
        } else if (op.kind === "finish") {
          this.finishStmt.run(op.final ? DELIVERED : FINISHED, op.text, op.isError ? 1 : 0, now, op.id);
          if (op.final) close(op.id);
        } else {
          this.deliveredStmt.run(now, op.id);
          close(op.id);
        }
      }
      return batch;
    });
  }

  /** The low mark as committed. */
  private low(): number {
    return this.db.prepare("SELECT low FROM journal_mark WHERE k = 0").pluck().get() as number;
  }

  /** The given columns of every row not yet delivered, in acceptance order: the listed ones and the rows from the low mark on. */
  private unfinishedRows(columns: string): Record<string, unknown>[] {
    return this.db
      .prepare(
        `SELECT ${columns}, seq AS s FROM journal WHERE seq >= @low AND ${UNFINISHED}
         UNION ALL
         SELECT ${columns}, seq AS s FROM journal WHERE seq IN (SELECT seq FROM journal_pending WHERE seq < @low) AND ${UNFINISHED}
         ORDER BY s`,
      )
      .all({ low: this.low() }) as Record<string, unknown>[];
  }

  /**
   * Opens (and creates) the journal's tables on the given connection. A file written before
   * the low mark (an `AUTOINCREMENT` table, and a partial index `journal_open` over unfinished
   * rows, or `journal_state` over every row's state before that) gets the mark at its
   * oldest unfinished row, and loses those indexes; its table keeps `AUTOINCREMENT`, which
   * costs it a page a commit but changes nothing else.
   */
  static open(db: Database.Database, logger: Logger, options: JournalOptions = {}): MessageJournal {
    // IMMEDIATE: it may write, and another process (the gateway, when `zeptoclaw pair` opens
    // the stores) may commit meanwhile; a read transaction that turns into a write then fails
    // at once, where this one waits for the lock.
    db.transaction(() => {
      db.exec(
        `CREATE TABLE IF NOT EXISTS journal (
           seq INTEGER PRIMARY KEY,
           id TEXT NOT NULL UNIQUE,
           user_id TEXT NOT NULL,
           conversation_id TEXT NOT NULL,
           state INTEGER NOT NULL,
           payload TEXT,
           reply TEXT,
           is_error INTEGER NOT NULL DEFAULT 0,
           updated_at INTEGER NOT NULL
         );
         CREATE TABLE IF NOT EXISTS journal_pending (seq INTEGER PRIMARY KEY);`,
      );
      const has = (type: string, name: string): boolean =>
        db.prepare("SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?").get(type, name) !== undefined;
      // A file without the mark, or one an earlier version wrote to since (it keeps its
      // index): the mark goes to the oldest unfinished row, read through that index.
      if (!has("table", "journal_mark") || has("index", "journal_open")) {
        const low = db.prepare(`SELECT coalesce(min(seq), (SELECT max(seq) + 1 FROM journal), 0) FROM journal WHERE ${UNFINISHED}`).pluck().get() as number;
        db.exec("CREATE TABLE IF NOT EXISTS journal_mark (k INTEGER PRIMARY KEY CHECK (k = 0), low INTEGER NOT NULL)");
        db.prepare("INSERT OR REPLACE INTO journal_mark (k, low) VALUES (0, ?)").run(low);
      }
      db.exec("DROP INDEX IF EXISTS journal_open; DROP INDEX IF EXISTS journal_state;");
      // A listed row that is no longer unfinished (this class never leaves one) would stay listed for good.
      db.exec(`DELETE FROM journal_pending WHERE NOT EXISTS (SELECT 1 FROM journal j WHERE j.seq = journal_pending.seq AND j.${UNFINISHED})`);
    }).immediate();
    return new MessageJournal(db, logger, options.markEveryMs ?? MARK_EVERY_MS);
  }

  /** Journals an inbound message; resolves true once committed, false if the id was already there. */
  accept(m: InboundMessage): Promise<boolean> {
    return new Promise((done, fail) => this.push({ kind: "accept", m, done, fail }));
  }

  /**
   * Stores the reply; resolves once committed, so it is never produced twice. `final` marks
   * it delivered at once, for channels whose outcome is read by id and never re-sent.
   */
  finish(id: string, text: string, isError: boolean, final = false): Promise<void> {
    return new Promise((done, fail) => this.push({ kind: "finish", id, text, isError, final, done, fail }));
  }

  /** Marks the reply delivered; committed with the next batch, within DELIVERED_WAIT_MS. */
  delivered(id: string): void {
    this.ops.push({ kind: "delivered", id });
    if (this.scheduled || this.lateCommit) return;
    this.lateCommit = setTimeout(() => this.schedule(), DELIVERED_WAIT_MS);
    this.lateCommit.unref();
  }

  private push(op: Op): void {
    this.ops.push(op);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.commit());
  }

  private commit(): void {
    this.scheduled = false;
    clearTimeout(this.lateCommit);
    this.lateCommit = undefined;
    const ops = this.ops;
    this.ops = [];
    if (ops.length === 0) return;
    const now = Date.now();
    const tick = performance.now();
    const mark = tick - this.markedAt >= this.markEveryMs;
    let batch: Batch;
    try {
      batch = this.commitBatch(ops, now, mark);
    } catch (err) {
      // The transaction rolled back whole: nothing of this batch was acknowledged.
      if (String((err as { code?: unknown }).code).startsWith("SQLITE_BUSY")) {
        if (this.busySince === undefined) {
          this.busySince = tick;
          this.logger.warn("the journal file is locked by another program; retrying");
        }
        if (tick - this.busySince < BUSY_BUDGET_MS) {
          this.ops = ops.concat(this.ops);
          this.scheduled = true;
          setTimeout(() => this.commit(), BUSY_RETRY_MS);
          return;
        }
      }
      this.busySince = undefined;
      this.logger.error({ err, ops: ops.length }, "journal write failed");
      const e = new StorageError("the message journal could not be written", { cause: err });
      for (const op of ops) if (op.kind !== "delivered") op.fail(e);
      return;
    }
    this.busySince = undefined;
    if (mark) {
      this.markedAt = tick;
      this.unlisted.clear();
    }
    for (const [id, seq] of batch.fresh) {
      this.unlisted.set(id, seq);
      if (seq > this.lastSeq) this.lastSeq = seq;
    }
    for (const id of batch.closed) this.unlisted.delete(id);
    for (const op of ops) {
      if (op.kind === "accept") op.done(batch.freshOps.has(op));
      else if (op.kind === "finish") op.done();
    }
  }

  /** Looks a message up by id. */
  async get(id: string): Promise<MessageResult | undefined> {
    let row: { user_id: string; state: number; reply: string | null; is_error: number } | undefined;
    try {
      row = this.getStmt.get(id) as typeof row;
    } catch (err) {
      throw new StorageError("the message journal could not be read", { cause: err });
    }
    if (!row) return undefined;
    if (row.state === ACCEPTED) return { status: "pending", userId: row.user_id };
    return row.is_error
      ? { status: "error", userId: row.user_id, error: row.reply ?? "" }
      : { status: "done", userId: row.user_id, reply: row.reply ?? "" };
  }

  /** What a crash or a cut-short drain left unfinished, in acceptance order. */
  async unfinished(): Promise<Unfinished> {
    const rows = this.unfinishedRows("state, payload, reply, is_error, id, user_id, conversation_id") as {
      state: number;
      payload: string | null;
      reply: string | null;
      is_error: number;
      id: string;
      user_id: string;
      conversation_id: string;
    }[];
    const out: Unfinished = { accepted: [], finished: [] };
    for (const row of rows) {
      if (row.state === ACCEPTED && row.payload) out.accepted.push(JSON.parse(row.payload) as InboundMessage);
      else if (row.state === FINISHED) out.finished.push({ m: stub(row.id, row.user_id, row.conversation_id), text: row.reply ?? "", isError: row.is_error === 1 });
    }
    return out;
  }

  /**
   * Deletes delivered rows last changed before `before` (epoch ms), oldest first, a range of
   * rows at a time with a turn of the event loop between ranges: at a busy hour's end one
   * DELETE would remove millions of rows while every acknowledgement waited. Rows are in
   * acceptance order, so the sweep stops at the first range whose last row is recent; a row
   * delivered late is left for a later sweep. Returns the rows deleted.
   */
  async sweep(before: number, stopped: () => boolean = () => false): Promise<number> {
    const edgeStmt = this.db.prepare("SELECT max(seq) AS edge FROM (SELECT seq FROM journal WHERE seq > ? ORDER BY seq LIMIT ?)");
    const lastStmt = this.db.prepare("SELECT updated_at FROM journal WHERE seq = ?");
    // Never the newest row: a new row's seq is the largest + 1, and must stay above the low mark.
    const deleteStmt = this.db.prepare(
      `DELETE FROM journal WHERE seq > ? AND seq <= ? AND state = ${DELIVERED} AND updated_at < ? AND seq < (SELECT max(seq) FROM journal)`,
    );
    return sweepInRanges(
      (after, size) => {
        const { edge } = edgeStmt.get(after, size) as { edge: number | null };
        if (edge === null) return undefined;
        const deleted = deleteStmt.run(after, edge, before).changes;
        const last = lastStmt.get(edge) as { updated_at: number } | undefined;
        return { edge, deleted, last: last !== undefined && last.updated_at >= before };
      },
      new SliceSizer(SWEEP_BUDGET_MS, 16, 20_000, 500),
      () => stopped() || !this.db.open,
    );
  }

  /** Waits for every queued write to commit. */
  async flush(): Promise<void> {
    if (this.ops.length > 0) this.schedule();
    while (this.scheduled) await new Promise((r) => setImmediate(r));
  }
}

/** A finished row no longer carries its payload: rebuild what a channel needs to re-send. */
function stub(id: string, userId: string, conversationId: string): InboundMessage {
  return {
    id,
    channel: id.slice(0, id.indexOf(":")) as InboundMessage["channel"],
    conversationId,
    userId,
    sender: { id: userId, isBot: false },
    text: "",
    isDirect: true,
    mentionsBot: true,
    attachments: [],
    receivedAt: Date.now(),
  };
}

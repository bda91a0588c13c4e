import type { Logger } from "pino";
import { StorageError } from "../errors.js";
import type { InboundMessage } from "../messages.js";
import type { BatchedSqliteStore } from "./sqlite-store.js";

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

// Row states: 0 accepted, 1 finished (reply stored, maybe not delivered), 2 delivered.
const ACCEPTED = 0;
const FINISHED = 1;
const DELIVERED = 2;
// Rows per statement: SQLite takes up to 32,766 parameters; five per row leaves room.
const ROWS = 1_000;

/**
 * The durable record of every accepted message: "accepted means answered".
 *
 * A message is journaled before its channel acknowledges it; its reply is stored before
 * it is sent; it is marked delivered after. Writes from many messages are grouped into one
 * transaction per event-loop turn (group commit), so durability costs one commit per
 * batch, not per message. A `kill -9` loses nothing that was acknowledged: on start,
 * accepted rows run again and finished-but-undelivered rows have their stored reply sent
 * again. The one window left: a crash between a platform send and the commit that marks
 * it delivered may send that one reply twice.
 */
export class MessageJournal {
  private ops: Op[] = [];
  private scheduled = false;
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly db: BatchedSqliteStore,
    private readonly logger: Logger,
  ) {}

  /** Opens (and creates) the journal table on the given connection. */
  static async open(db: BatchedSqliteStore, logger: Logger): Promise<MessageJournal> {
    await db.query(
      `CREATE TABLE IF NOT EXISTS journal (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         id TEXT NOT NULL UNIQUE,
         user_id TEXT NOT NULL,
         conversation_id TEXT NOT NULL,
         state INTEGER NOT NULL,
         payload TEXT,
         reply TEXT,
         is_error INTEGER NOT NULL DEFAULT 0,
         updated_at INTEGER NOT NULL
       )`,
    );
    await db.query("CREATE INDEX IF NOT EXISTS journal_state ON journal(state, seq)");
    return new MessageJournal(db, logger);
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

  /** Marks the reply delivered; committed with the next batch. */
  delivered(id: string): void {
    this.push({ kind: "delivered", id });
  }

  private push(op: Op): void {
    this.ops.push(op);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.writing = this.writing.then(() => this.commit());
    });
  }

  private async commit(): Promise<void> {
    const ops = this.ops;
    this.ops = [];
    if (ops.length === 0) return;
    const now = Date.now();
    const accepts: [string, string, string, string][] = [];
    const finishes: [string, string, number, number][] = [];
    const delivered: string[] = [];
    for (const op of ops) {
      if (op.kind === "accept") accepts.push([op.m.id, op.m.userId, op.m.conversationId, JSON.stringify(op.m)]);
      else if (op.kind === "finish") finishes.push([op.id, op.text, op.isError ? 1 : 0, op.final ? DELIVERED : FINISHED]);
      else delivered.push(op.id);
    }
    // Each kind is one statement and commits on its own: no transaction is held across
    // awaits, so session writes sharing this connection are never caught inside one, and a
    // failure fails only the operations of its own statement.
    if (accepts.length > 0) {
      const mine = ops.filter((op): op is Extract<Op, { kind: "accept" }> => op.kind === "accept");
      try {
        const rows: { id: string }[] = [];
        // Placeholders, not one JSON parameter: the payload is already JSON, and wrapping it
        // again would escape every quote in it.
        for (let i = 0; i < accepts.length; i += ROWS) {
          const chunk = accepts.slice(i, i + ROWS);
          rows.push(
            ...((await this.db.query(
              `INSERT INTO journal (id, user_id, conversation_id, payload, state, updated_at)
                 VALUES ${chunk.map(() => `(?, ?, ?, ?, ${ACCEPTED}, ${now})`).join(", ")}
                 ON CONFLICT(id) DO NOTHING
                 RETURNING id`,
              ...chunk.flat(),
            )) as { id: string }[]),
          );
        }
        const fresh = new Set(rows.map((r) => r.id));
        for (const op of mine) op.done(fresh.has(op.m.id));
      } catch (err) {
        this.fail(err, mine);
      }
    }
    if (finishes.length > 0) {
      const mine = ops.filter((op): op is Extract<Op, { kind: "finish" }> => op.kind === "finish");
      try {
        for (let i = 0; i < finishes.length; i += ROWS) {
          const chunk = finishes.slice(i, i + ROWS);
          await this.db.query(
            `WITH v(id, reply, is_error, state) AS (VALUES ${chunk.map(() => "(?, ?, ?, ?)").join(", ")})
             UPDATE journal SET state = v.state, reply = v.reply, is_error = v.is_error, payload = NULL, updated_at = ${now}
               FROM v WHERE journal.id = v.id`,
            ...chunk.flat(),
          );
        }
        for (const op of mine) op.done();
      } catch (err) {
        this.fail(err, mine);
      }
    }
    if (delivered.length > 0) {
      try {
        await this.db.query(
          `UPDATE journal SET state = ${DELIVERED}, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))`,
          now,
          JSON.stringify(delivered),
        );
      } catch (err) {
        // A lost "delivered" mark only means a replay re-sends that reply once.
        this.logger.error({ err, count: delivered.length }, "journal could not mark replies delivered");
      }
    }
  }

  private fail(err: unknown, ops: { fail: (e: unknown) => void }[]): void {
    this.logger.error({ err, ops: ops.length }, "journal write failed");
    const e = new StorageError("the message journal could not be written", { cause: err });
    for (const op of ops) op.fail(e);
  }

  /** Looks a message up by id. */
  async get(id: string): Promise<MessageResult | undefined> {
    let rows: { user_id: string; state: number; reply: string | null; is_error: number }[];
    try {
      rows = (await this.db.query("SELECT user_id, state, reply, is_error FROM journal WHERE id = ?", id)) as typeof rows;
    } catch (err) {
      throw new StorageError("the message journal could not be read", { cause: err });
    }
    const row = rows[0];
    if (!row) return undefined;
    if (row.state === ACCEPTED) return { status: "pending", userId: row.user_id };
    return row.is_error
      ? { status: "error", userId: row.user_id, error: row.reply ?? "" }
      : { status: "done", userId: row.user_id, reply: row.reply ?? "" };
  }

  /** What a crash or a cut-short drain left unfinished, in acceptance order. */
  async unfinished(): Promise<Unfinished> {
    const rows = (await this.db.query(
      `SELECT state, payload, reply, is_error, id, user_id, conversation_id FROM journal WHERE state < ${DELIVERED} ORDER BY seq`,
    )) as { state: number; payload: string | null; reply: string | null; is_error: number; id: string; user_id: string; conversation_id: string }[];
    const out: Unfinished = { accepted: [], finished: [] };
    for (const row of rows) {
      if (row.state === ACCEPTED && row.payload) out.accepted.push(JSON.parse(row.payload) as InboundMessage);
      else if (row.state === FINISHED) out.finished.push({ m: stub(row.id, row.user_id, row.conversation_id), text: row.reply ?? "", isError: row.is_error === 1 });
    }
    return out;
  }

  /** Deletes delivered rows older than `before` (epoch ms). */
  async sweep(before: number): Promise<void> {
    await this.db.query(`DELETE FROM journal WHERE state = ${DELIVERED} AND updated_at < ?`, before);
  }

  /** Waits for every queued write to commit. */
  async flush(): Promise<void> {
    while (this.ops.length > 0 || this.scheduled) {
      await new Promise((r) => setImmediate(r));
      await this.writing;
    }
    await this.writing;
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

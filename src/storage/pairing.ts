import { randomInt } from "node:crypto";
/** What pairing needs of a connection: one statement at a time. */
interface Queryable {
  query(sql: string, ...params: unknown[]): Promise<unknown[]>;
}

// No 0/O or 1/I: codes are read aloud and typed by hand.
const ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/** Settings of pairing: how long a code lives and how many may wait at once. */
export interface PairingOptions {
  ttlMs: number;
  maxPending: number;
}

/** What `request` gave an unknown user. */
export type PairingRequest = { status: "approved" } | { status: "pending"; code: string } | { status: "full" };

/** One code waiting for the operator. */
export interface PendingPairing {
  code: string;
  userId: string;
  name: string;
  createdAt: number;
}

/**
 * Pairing: an unknown user gets a one-time code; the operator approves it with
 * `zeptoclaw pair approve CODE`, from another process, through the same SQLite file.
 * Codes expire and only a few may wait at once, so strangers cannot fill the table.
 */
export class PairingStore {
  private readonly approved = new Set<string>();

  private constructor(
    private readonly db: Queryable,
    private readonly o: PairingOptions,
  ) {}

  /** Opens (and creates) the pairing table on the given connection. */
  static async open(db: Queryable, o: PairingOptions): Promise<PairingStore> {
    await db.query(
      `CREATE TABLE IF NOT EXISTS pairing (
         user_id TEXT PRIMARY KEY,
         code TEXT UNIQUE,
         name TEXT NOT NULL DEFAULT '',
         created_at INTEGER NOT NULL,
         approved_at INTEGER
       )`,
    );
    return new PairingStore(db, o);
  }

  /** True once the operator approved this user. */
  async isApproved(userId: string): Promise<boolean> {
    if (this.approved.has(userId)) return true;
    const rows = (await this.db.query("SELECT approved_at FROM pairing WHERE user_id = ?", userId)) as { approved_at: number | null }[];
    const ok = rows[0]?.approved_at != null;
    if (ok) this.approved.add(userId);
    return ok;
  }

  /** The user's pending code (a new one if theirs expired), unless approved or the queue is full. */
  async request(userId: string, name = "", now = Date.now()): Promise<PairingRequest> {
    if (await this.isApproved(userId)) return { status: "approved" };
    await this.db.query("DELETE FROM pairing WHERE approved_at IS NULL AND created_at < ?", now - this.o.ttlMs);
    const mine = (await this.db.query("SELECT code FROM pairing WHERE user_id = ?", userId)) as { code: string }[];
    if (mine[0]) return { status: "pending", code: mine[0].code };
    const pending = (await this.db.query("SELECT COUNT(*) AS n FROM pairing WHERE approved_at IS NULL")) as { n: number }[];
    if ((pending[0]?.n ?? 0) >= this.o.maxPending) return { status: "full" };
    const code = Array.from({ length: 8 }, () => ALPHABET[randomInt(ALPHABET.length)]).join("");
    await this.db.query("INSERT INTO pairing (user_id, code, name, created_at) VALUES (?, ?, ?, ?)", userId, code, name.slice(0, 100), now);
    return { status: "pending", code };
  }

  /** Approves a code; returns the user it belonged to, or undefined when unknown or expired. */
  async approve(code: string, now = Date.now()): Promise<string | undefined> {
    const rows = (await this.db.query(
      "UPDATE pairing SET approved_at = ?, code = NULL WHERE code = ? AND approved_at IS NULL AND created_at >= ? RETURNING user_id",
      now,
      code.trim().toUpperCase(),
      now - this.o.ttlMs,
    )) as { user_id: string }[];
    return rows[0]?.user_id;
  }

  /** Codes waiting for approval, oldest first. */
  async pending(now = Date.now()): Promise<PendingPairing[]> {
    const rows = (await this.db.query(
      "SELECT code, user_id, name, created_at FROM pairing WHERE approved_at IS NULL AND created_at >= ? ORDER BY created_at",
      now - this.o.ttlMs,
    )) as { code: string; user_id: string; name: string; created_at: number }[];
    return rows.map((r) => ({ code: r.code, userId: r.user_id, name: r.name, createdAt: r.created_at }));
  }
}

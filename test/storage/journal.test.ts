import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MessageJournal } from "../../src/storage/journal.js";
import { openSyncSqlite } from "../../src/storage/sync-sqlite.js";
import { captureLogger, tempDir, webchatMessage } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of cleanups.splice(0).reverse()) await c();
});


function tempFile(): string {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  return join(dir.dir, "journal.sqlite");
}

describe("message journal", () => {
  it("finds unfinished rows from the low mark and its pending list, across restarts, without an index over them", async () => {
    const sdb = openSyncSqlite(`sqlite://${tempFile()}`);
    cleanups.push(() => sdb.close());
    const db = sdb.db;
    // Every commit moves the mark, so it passes the unfinished rows at once.
    let journal = MessageJournal.open(db, captureLogger(), { markEveryMs: 0 });
    const seq = (id: string): number => db.prepare("SELECT seq FROM journal WHERE id = ?").pluck().get(id) as number;
    const low = (): number => db.prepare("SELECT low FROM journal_mark").pluck().get() as number;
    const pending = (): number[] => db.prepare("SELECT seq FROM journal_pending ORDER BY seq").pluck().all() as number[];
    for (const id of ["webchat:a", "webchat:b", "webchat:c", "webchat:d"]) expect(await journal.accept(webchatMessage(id, `text of ${id}`))).toBe(true);
    expect(await journal.accept(webchatMessage("webchat:a"))).toBe(false);
    await journal.finish("webchat:a", "answer a", false, true);
    await journal.finish("webchat:b", "answer b", false);
    await journal.finish("webchat:c", "answer c", false);
    journal.delivered("webchat:c");
    // Accepted and answered in one turn: one commit adds the row and closes it.
    await Promise.all([journal.accept(webchatMessage("webchat:e")), journal.finish("webchat:e", "answer e", false, true)]);
    for (let i = 0; i < 5; i++) {
      await journal.accept(webchatMessage(`webchat:later${i}`));
      await journal.finish(`webchat:later${i}`, "answer", false, true);
    }
    await journal.flush();

    expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").pluck().all()).toEqual([]);
    expect(low()).toBeGreaterThan(seq("webchat:later3"));
    expect(pending()).toEqual([seq("webchat:b"), seq("webchat:d")]);
    // Below the mark and not listed: a restart does not read it (what bounds the read). No
    // writer of this class leaves such a row.
    db.prepare("UPDATE journal SET state = 0 WHERE id = 'webchat:later0'").run();

    const expectLeft = async (j: MessageJournal, accepted: string[], finished: string[][]): Promise<void> => {
      const left = await j.unfinished();
      expect(left.accepted.map((m) => [m.id, m.text])).toEqual(accepted.map((id) => [id, `text of ${id}`]));
      expect(left.finished.map((f) => [f.m.id, f.text])).toEqual(finished);
    };
    await expectLeft(journal, ["webchat:d"], [["webchat:b", "answer b"]]);
    journal = MessageJournal.open(db, captureLogger(), { markEveryMs: 0 });
    await expectLeft(journal, ["webchat:d"], [["webchat:b", "answer b"]]);
    expect(await journal.get("webchat:a")).toEqual({ status: "done", userId: "webchat:ann", reply: "answer a" });

    // Delivered after the restart: off the list, and not found again.
    await journal.finish("webchat:d", "answer d", false, true);
    journal.delivered("webchat:b");
    await journal.flush();
    expect(pending()).toEqual([]);
    await expectLeft(MessageJournal.open(db, captureLogger()), [], []);
  });

  it("keeps the rule through a restart, a failed commit, a duplicate in one batch and a late reply", async () => {
    const sdb = openSyncSqlite(`sqlite://${tempFile()}`);
    cleanups.push(() => sdb.close());
    const db = sdb.db;
    const left = async (): Promise<string[]> => {
      const l = await MessageJournal.open(db, captureLogger()).unfinished();
      return [...l.accepted.map((m) => m.id), ...l.finished.map((f) => f.m.id)].sort();
    };
    // A mark far away: the first commit moves it, no later one does.
    let journal = MessageJournal.open(db, captureLogger(), { markEveryMs: 3_600_000 });
    await journal.accept(webchatMessage("webchat:x"));
    // A restart finds x from the mark on, unlisted; the next mark must list it before moving past it.
    journal = MessageJournal.open(db, captureLogger(), { markEveryMs: 0 });
    await journal.accept(webchatMessage("webchat:y"));
    // A mark never moves past the rows of its own commit.
    expect(await left()).toEqual(["webchat:x", "webchat:y"]);

    // A commit that fails (an insert refused) rolls back whole: y's reply is not stored, so y is still owed.
    db.exec("CREATE TRIGGER refuse BEFORE INSERT ON journal WHEN NEW.id = 'webchat:boom' BEGIN SELECT RAISE(ABORT, 'refused'); END");
    const failed = await Promise.allSettled([journal.finish("webchat:y", "answer y", false, true), journal.accept(webchatMessage("webchat:boom"))]);
    expect(failed.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    db.exec("DROP TRIGGER refuse");
    await journal.accept(webchatMessage("webchat:z"));
    expect(await left()).toEqual(["webchat:x", "webchat:y", "webchat:z"]);

    // The same id twice in one commit: only the first is new, so the message runs once.
    const twice = await Promise.all([journal.accept(webchatMessage("webchat:w")), journal.accept(webchatMessage("webchat:w"))]);
    expect(twice).toEqual([true, false]);

    // A reply stored after delivery does not make the row unfinished again.
    await journal.finish("webchat:z", "answer z", false, true);
    await journal.finish("webchat:z", "late answer", false);
    expect(db.prepare("SELECT state, reply FROM journal WHERE id = 'webchat:z'").get()).toEqual({ state: 2, reply: "answer z" });
    expect(await left()).toEqual(["webchat:w", "webchat:x", "webchat:y"]);
  });

  it("opens a file written with the partial index, drops it and puts the mark at its oldest unfinished row", async () => {
    const path = tempFile();
    const old = new Database(path);
    old.exec(`CREATE TABLE journal (
         seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
         conversation_id TEXT NOT NULL, state INTEGER NOT NULL, payload TEXT, reply TEXT,
         is_error INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL);
       CREATE INDEX journal_open ON journal(seq) WHERE state < 2;`);
    const insert = old.prepare("INSERT INTO journal (id, user_id, conversation_id, payload, state, reply, updated_at) VALUES (?, 'webchat:ann', 'webchat:ann', ?, ?, ?, 1)");
    insert.run("webchat:done", null, 2, "old answer");
    insert.run("webchat:waiting", JSON.stringify(webchatMessage("webchat:waiting", "text of webchat:waiting")), 0, null);
    insert.run("webchat:done2", null, 2, "old answer");
    insert.run("webchat:unsent", null, 1, "unsent answer");
    insert.run("webchat:done3", null, 2, "old answer");
    old.close();

    const sdb = openSyncSqlite(`sqlite://${path}`);
    cleanups.push(() => sdb.close());
    const journal = MessageJournal.open(sdb.db, captureLogger());
    const indexes = sdb.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'journal' AND sql IS NOT NULL").pluck().all();
    expect(indexes).toEqual([]);
    expect(sdb.db.prepare("SELECT low FROM journal_mark").pluck().get()).toBe(2);
    const left = await journal.unfinished();
    expect(left.accepted.map((m) => m.id)).toEqual(["webchat:waiting"]);
    expect(left.finished.map((f) => [f.m.id, f.text])).toEqual([["webchat:unsent", "unsent answer"]]);
    await journal.accept(webchatMessage("webchat:new"));
    expect(sdb.db.prepare("SELECT seq FROM journal WHERE id = 'webchat:new'").pluck().get()).toBe(6);
  });

  it("commits a delivered mark with the next write, or alone within 50 ms, or at once on flush", async () => {
    const sdb = openSyncSqlite(`sqlite://${tempFile()}`);
    cleanups.push(() => sdb.close());
    const journal = MessageJournal.open(sdb.db, captureLogger());
    const state = (id: string): unknown => sdb.db.prepare("SELECT state FROM journal WHERE id = ?").pluck().get(id);
    for (const id of ["telegram:1:1", "telegram:1:2", "telegram:1:3"]) {
      await journal.accept(webchatMessage(id));
      await journal.finish(id, `answer ${id}`, false);
    }
    expect(state("telegram:1:1")).toBe(1);

    // Timers frozen, so only a commit of its own could write the mark in these turns.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    journal.delivered("telegram:1:1");
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    // No commit of its own: the row still reads "finished".
    expect(state("telegram:1:1")).toBe(1);
    await journal.accept(webchatMessage("telegram:1:4"));
    expect(state("telegram:1:1")).toBe(2);
    vi.useRealTimers();

    journal.delivered("telegram:1:2");
    const until = Date.now() + 2_000;
    while (state("telegram:1:2") !== 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(state("telegram:1:2")).toBe(2);

    journal.delivered("telegram:1:3");
    await journal.flush();
    expect(state("telegram:1:3")).toBe(2);
  });
});

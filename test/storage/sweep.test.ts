import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { MessageJournal } from "../../src/storage/journal.js";
import { SqliteKvStore } from "../../src/storage/sqlite-store.js";
import { openSyncSqlite, type SyncSqlite } from "../../src/storage/sync-sqlite.js";
import { captureLogger, tempDir, turnsDuring, webchatMessage } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function open(name: string): SyncSqlite {
  const dir = tempDir();
  const db = openSyncSqlite(`sqlite://${join(dir.dir, name)}`);
  cleanups.push(dir.cleanup, () => db.close());
  return db;
}


describe("journal sweep", () => {
  it("deletes old delivered rows in slices, keeps undelivered and recent ones", async () => {
    const sdb = open("j.sqlite");
    const journal = MessageJournal.open(sdb.db, captureLogger());
    const old = 1_000;
    const recent = 10_000_000;
    const insert = sdb.db.prepare("INSERT INTO journal (id, user_id, conversation_id, payload, state, updated_at) VALUES (?, 'webchat:ann', 'webchat:ann', ?, ?, ?)");
    sdb.db.transaction(() => {
      for (let i = 0; i < 20_000; i++) insert.run(`webchat:old${i}`, null, 2, old);
      insert.run("webchat:stuck", JSON.stringify(webchatMessage("webchat:stuck")), 0, old);
      for (let i = 0; i < 100; i++) insert.run(`webchat:new${i}`, null, 2, recent);
    })();
    const before = 5_000_000;
    let deleted = 0;
    const turns = await turnsDuring(async () => {
      deleted = await journal.sweep(before);
    });
    expect(deleted).toBe(20_000);
    expect(turns).toBeGreaterThan(1);
    const left = sdb.db.prepare("SELECT id FROM journal ORDER BY seq").pluck().all() as string[];
    expect(left[0]).toBe("webchat:stuck");
    expect(left).toHaveLength(101);
    // The accepted, never answered row still runs again after a restart.
    expect((await journal.unfinished()).accepted.map((m) => m.id)).toEqual(["webchat:stuck"]);
  });

  it("never deletes the newest row, so a new row's seq never goes back below the low mark", async () => {
    const sdb = open("j.sqlite");
    const journal = MessageJournal.open(sdb.db, captureLogger());
    for (const id of ["webchat:1", "webchat:2", "webchat:3"]) {
      await journal.accept(webchatMessage(id));
      await journal.finish(id, "answer", false, true);
    }
    await journal.flush();
    expect(await journal.sweep(Date.now() + 60_000)).toBe(2);
    expect(sdb.db.prepare("SELECT seq FROM journal").pluck().all()).toEqual([3]);
    await journal.accept(webchatMessage("webchat:4"));
    expect(sdb.db.prepare("SELECT seq FROM journal WHERE id = 'webchat:4'").pluck().get()).toBe(4);
  });

  it("stops when asked to, between slices", async () => {
    const sdb = open("j.sqlite");
    const journal = MessageJournal.open(sdb.db, captureLogger());
    const insert = sdb.db.prepare("INSERT INTO journal (id, user_id, conversation_id, state, updated_at) VALUES (?, 'u', 'u', 2, 1)");
    sdb.db.transaction(() => {
      for (let i = 0; i < 5_000; i++) insert.run(`webchat:${i}`);
    })();
    let asked = 0;
    const deleted = await journal.sweep(10, () => asked++ > 0);
    expect(deleted).toBeGreaterThan(0);
    expect(deleted).toBeLessThan(5_000);
  });
});

describe("session store sweep", () => {
  it("deletes expired rows across the table in slices, keeps live and non-Keyv rows", async () => {
    const sdb = open("s.sqlite");
    const store = new SqliteKvStore(sdb.db, "kv");
    const now = 1_000_000;
    await store.setMany([
      ...Array.from({ length: 3_000 }, (_, i) => ({ key: `s:gone${i}`, value: JSON.stringify({ value: { messages: [] }, expires: now - 1 }) })),
      { key: "s:live", value: JSON.stringify({ value: { messages: [] }, expires: now + 1 }) },
      { key: "s:forever", value: JSON.stringify({ value: { messages: [] } }) },
      { key: "s:odd", value: "not json" },
    ]);
    let deleted = 0;
    const turns = await turnsDuring(async () => {
      deleted = await store.sweepExpired(now);
    });
    expect(deleted).toBe(3_000);
    expect(turns).toBeGreaterThan(1);
    const keys = sdb.db.prepare("SELECT key FROM kv ORDER BY key").pluck().all();
    expect(keys).toEqual(["s:forever", "s:live", "s:odd"]);
  });
});

import { mkdirSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { StorageError } from "../../src/errors.js";
import { openStores, type Stores } from "../../src/storage/open-stores.js";
import { type ChatMessage, pruneHistory } from "../../src/storage/session-store.js";
import { captureLogger, tempDir, turnsDuring } from "../support/harness.js";

const open: { stores: Stores; cleanup: () => void }[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const o of open.splice(0)) {
    await o.stores.close().catch(() => undefined);
    o.cleanup();
  }
});

async function stores(over: Partial<Parameters<typeof openStores>[0]> = {}, dir = tempDir()) {
  const s = await openStores(
    {
      store: `sqlite://${join(dir.dir, "s.sqlite")}`,
      max_session_messages: 6,
      session_ttl_hours: 24,
      cache_size: 100,
      flush_interval_ms: 10,
      ...over,
    },
    captureLogger(),
  );
  open.push({ stores: s, cleanup: dir.cleanup });
  return { s, dir };
}

function turns(n: number): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (let i = 0; i < n; i++) out.push({ role: "user", content: `q${i}` }, { role: "assistant", content: `a${i}` });
  return out;
}

/** Runs SQL on the file through a separate connection, as another process would. */
async function exec(file: string, sql: string): Promise<void> {
  const db = new Database(file, { timeout: 5_000 });
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

describe("pruneHistory", () => {
  it("keeps the newest messages and never starts mid-exchange", () => {
    expect(pruneHistory(turns(5), 4).map((m) => m.content)).toEqual(["q3", "a3", "q4", "a4"]);
    // An odd limit would start at an answer: that answer is dropped too.
    expect(pruneHistory(turns(5), 3).map((m) => m.content)).toEqual(["q4", "a4"]);
    expect(pruneHistory(turns(2), 10)).toHaveLength(4);
  });

  it("keeps an exchange longer than the limit whole, rather than nothing", () => {
    const call = (i: number): ChatMessage[] => [
      { role: "assistant", content: null, tool_calls: [{ id: `c${i}`, type: "function", function: { name: "current_time", arguments: "{}" } }] },
      { role: "tool", tool_call_id: `c${i}`, content: "12:00" },
    ];
    // An earlier turn, then a question answered after eight tool calls: 18 messages of one exchange.
    const long: ChatMessage[] = [...turns(1), { role: "user", content: "what is my name?" }, ...Array.from({ length: 8 }, (_, i) => call(i)).flat(), { role: "assistant", content: "Ann" }];
    const kept = pruneHistory(long, 10);
    expect(kept[0]).toEqual({ role: "user", content: "what is my name?" });
    expect(kept.at(-1)).toEqual({ role: "assistant", content: "Ann" });
    expect(kept).toHaveLength(18);
  });
});

describe("SessionStore on SQLite", () => {
  it("persists sessions across a reopen, pruned to max_session_messages", async () => {
    const dir = tempDir();
    const { s } = await stores({}, { dir: dir.dir, cleanup: () => undefined });
    s.sessions.save("webchat:alice", turns(10));
    await s.close();
    const again = await stores({}, dir);
    const loaded = await again.s.sessions.load("webchat:alice");
    expect(loaded.map((m) => m.content)).toEqual(["q7", "a7", "q8", "a8", "q9", "a9"]);
  });

  it("keeps users apart: one user's key never reads another's session", async () => {
    const { s } = await stores();
    s.sessions.save("webchat:alice", [{ role: "user", content: "alice secret" }]);
    s.sessions.save("telegram:alice", [{ role: "user", content: "telegram alice" }]);
    await s.flush();
    expect(await s.sessions.load("webchat:bob")).toEqual([]);
    expect((await s.sessions.load("telegram:alice"))[0]?.content).toBe("telegram alice");
  });

  it("forgets a session after session_ttl_hours without activity", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const { s } = await stores({ session_ttl_hours: 1 });
    s.sessions.save("webchat:alice", turns(1));
    await s.flush();
    vi.setSystemTime(Date.now() + 30 * 60_000);
    expect(await s.sessions.load("webchat:alice")).toHaveLength(2);
    vi.setSystemTime(Date.now() + 61 * 60_000);
    expect(await s.sessions.load("webchat:alice")).toEqual([]);
  });

  it("expires sessions that are only on disk, not in the cache", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const dir = tempDir();
    const first = await stores({ session_ttl_hours: 1 }, { dir: dir.dir, cleanup: () => undefined });
    first.s.sessions.save("webchat:alice", turns(1));
    await first.s.close();
    const again = await stores({ session_ttl_hours: 1 }, dir);
    vi.setSystemTime(Date.now() + 2 * 3_600_000);
    expect(await again.s.sessions.load("webchat:alice")).toEqual([]);
  });

  it("reset forgets the session, also on disk", async () => {
    const dir = tempDir();
    const first = await stores({}, { dir: dir.dir, cleanup: () => undefined });
    first.s.sessions.save("webchat:alice", turns(2));
    await first.s.flush();
    first.s.sessions.reset("webchat:alice");
    expect(await first.s.sessions.load("webchat:alice")).toEqual([]);
    await first.s.close();
    const again = await stores({}, dir);
    expect(await again.s.sessions.load("webchat:alice")).toEqual([]);
  });

  it("turns a failing store into a StorageError, never an empty session", async () => {
    const { s, dir } = await stores({ cache_size: 1 });
    const file = join(dir.dir, "s.sqlite");
    s.sessions.save("webchat:alice", turns(1));
    await s.flush();
    s.sessions.save("webchat:bob", turns(1));
    await s.flush();
    await exec(file, "DROP TABLE kv;");
    // alice was evicted from the one-entry cache, so this read must reach the (broken) disk.
    await expect(s.sessions.load("webchat:alice")).rejects.toBeInstanceOf(StorageError);
  });

  it("keeps a write that failed and commits it once the store works again", async () => {
    const { s, dir } = await stores();
    const file = join(dir.dir, "s.sqlite");
    await exec(file, "ALTER TABLE kv RENAME TO kv_away;");
    s.sessions.save("webchat:alice", turns(1));
    await expect(s.flush()).rejects.toBeInstanceOf(StorageError);
    await exec(file, "ALTER TABLE kv_away RENAME TO kv;");
    await s.flush();
    await s.close();
    const again = await stores({}, dir);
    expect(await again.s.sessions.load("webchat:alice")).toHaveLength(2);
  });

  it("commits thousands of writes in batches, quickly", async () => {
    const dir = tempDir();
    const first = await stores({ cache_size: 100 }, { dir: dir.dir, cleanup: () => undefined });
    for (let i = 0; i < 5000; i++) first.s.sessions.save(`webchat:u${i}`, turns(1));
    await first.s.close();
    const again = await stores({ cache_size: 100 }, dir);
    expect(await again.s.sessions.load("webchat:u4999")).toHaveLength(2);
    expect(await again.s.sessions.load("webchat:u0")).toHaveLength(2);
    expect(again.s.sessions.hot).toBeLessThanOrEqual(100);
  });

  it("flushes a big batch in slices, letting the event loop run between them", async () => {
    const dir = tempDir();
    const first = await stores({ cache_size: 5000, flush_interval_ms: 60_000 }, { dir: dir.dir, cleanup: () => undefined });
    for (let i = 0; i < 3000; i++) first.s.sessions.save(`webchat:u${i}`, turns(3));
    // With one slice (or slices chained through promises only) a flush of 3,000 sessions
    // is a single turn of the event loop.
    const loopTurns = await turnsDuring(() => first.s.flush());
    expect(loopTurns).toBeGreaterThan(3);
    await first.s.close();
    const again = await stores({ cache_size: 5000 }, dir);
    expect((await again.s.sessions.load("webchat:u0")).map((m) => m.content)).toEqual(["q0", "a0", "q1", "a1", "q2", "a2"]);
    expect(await again.s.sessions.load("webchat:u2999")).toHaveLength(6);
  });

  it("fails to open with a StorageError and leaves no connection open behind it", async () => {
    const dir = tempDir();
    onTestFinished(dir.cleanup);
    // The journal's file is taken by a folder: the sessions' file opens, the journal's cannot.
    mkdirSync(join(dir.dir, "s.journal.sqlite"));
    const handlesOn = (name: string): number =>
      readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).endsWith(name);
        } catch {
          return false;
        }
      }).length;
    await expect(
      openStores({ store: `sqlite://${join(dir.dir, "s.sqlite")}`, max_session_messages: 6, session_ttl_hours: 24, cache_size: 100, flush_interval_ms: 10 }, captureLogger()),
    ).rejects.toThrow(/cannot open the session store at .*s\.sqlite/);
    expect(handlesOn("/s.sqlite")).toBe(0);
  });

  it("reads session files written by @keyv/sqlite (same table and row format)", async () => {
    const dir = tempDir();
    const file = join(dir.dir, "s.sqlite");
    // The layout @keyv/sqlite 4 creates, with a row as Keyv 5 serializes it.
    await exec(
      file,
      `CREATE TABLE kv(key VARCHAR(255) PRIMARY KEY, value TEXT );
       INSERT INTO kv VALUES ('s:webchat:alice', '{"value":{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]},"expires":${Date.now() + 3_600_000}}');`,
    );
    const { s } = await stores({}, dir);
    expect(await s.sessions.load("webchat:alice")).toEqual([
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello" },
    ]);
  });
});

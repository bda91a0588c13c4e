import { createServer, type Socket, connect } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Keyv from "keyv";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SqliteKvStore } from "../../src/storage/sqlite-store.js";
import { openSyncSqlite } from "../../src/storage/sync-sqlite.js";
import { WriteBehindMap } from "../../src/storage/write-behind.js";
import { captureLogger, tempDir } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A write-behind map on a real SQLite file whose store logs each slice it commits into `log`. */
function sessions(flushIntervalMs: number, log: string[], written = { rows: 0 }, paceForMs?: number): WriteBehindMap<string[]> {
  const dir = tempDir();
  const sdb = openSyncSqlite(`sqlite://${join(dir.dir, "s.sqlite")}`);
  cleanups.push(dir.cleanup, () => sdb.close());
  const store = new SqliteKvStore(sdb.db);
  const setMany = store.setMany.bind(store);
  store.setMany = (entries) => {
    log.push("slice");
    written.rows += entries.length;
    return setMany(entries);
  };
  const map = new WriteBehindMap<string[]>(new Keyv({ store, namespace: "s", throwOnErrors: true }), {
    maxEntries: 10_000,
    flushIntervalMs,
    ttlMs: 3_600_000,
    logger: captureLogger(),
    ...(paceForMs !== undefined ? { paceForMs } : {}),
  });
  cleanups.push(() => map.close());
  return map;
}

/**
 * Bounces bytes over a loopback connection until `done()`; on each arrival (an I/O callback,
 * as a platform's request is) logs "io" and queues an immediate that logs "imm", as the
 * journal's group commit is queued.
 */
async function pingPong(log: string[], done: () => boolean): Promise<void> {
  const server = createServer((s) => s.on("data", (b) => s.write(b)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const client: Socket = connect((server.address() as AddressInfo).port, "127.0.0.1");
  await new Promise<void>((resolve) => {
    client.on("data", () => {
      log.push("io");
      setImmediate(() => {
        log.push("imm");
        if (done()) resolve();
        else client.write("x");
      });
    });
    client.write("x");
  });
  client.destroy();
  await new Promise<void>((r) => server.close(() => r()));
}

/** How often a slice ran between an I/O callback and the immediate it queued. */
function slicesBetweenIoAndImmediate(log: string[]): number {
  let n = 0;
  for (let i = 0; i < log.length; i++) {
    if (log[i] !== "io") continue;
    for (let j = i + 1; j < log.length && log[j] !== "imm"; j++) if (log[j] === "slice") n++;
  }
  return n;
}

describe("write-behind flush", () => {
  it("paces a background flush: no slice runs between an I/O callback and the commit it queues", async () => {
    const log: string[] = [];
    const written = { rows: 0 };
    // Paced for the whole flush however slow the machine: the switch to back-to-back slices
    // after a while is not what this test is about.
    const map = sessions(200, log, written, 60_000);
    for (let i = 0; i < 2_000; i++) map.set(`webchat:u${i}`, [`question ${i}`, `answer ${i}`, `question ${i} again`]);
    // The timer's flush starts at 200 ms; the I/O goes on until it has written everything (or 20 s).
    const started = performance.now();
    await pingPong(log, () => written.rows >= 2_000 || performance.now() - started > 20_000);
    expect(written.rows).toBe(2_000);
    expect(log.filter((e) => e === "slice").length).toBeGreaterThan(5);
    expect(slicesBetweenIoAndImmediate(log)).toBe(0);
    await map.flush();
    expect((await map.get("webchat:u1999"))?.[2]).toBe("question 1999 again");
  });

  it("runs the slices of an awaited flush back to back", async () => {
    const log: string[] = [];
    const map = sessions(60_000, log);
    for (let i = 0; i < 4_000; i++) map.set(`webchat:u${i}`, [`question ${i}`, `answer ${i}`]);
    // With timers frozen, a flush that waited for a timer tick between slices would never end.
    vi.useFakeTimers({ toFake: ["setTimeout"] });
    await map.flush();
    vi.useRealTimers();
    expect(log.length).toBeGreaterThan(3);
    expect(map.pending).toBe(0);
  });

  it("finishes a paced background flush back to back once someone awaits it", async () => {
    const log: string[] = [];
    const written = { rows: 0 };
    const map = sessions(50, log, written, 60_000);
    for (let i = 0; i < 8_000; i++) map.set(`webchat:u${i}`, [`question ${i}`, `answer ${i}`]);
    const until = Date.now() + 10_000;
    while (written.rows === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 1));
    expect(written.rows).toBeGreaterThan(0);
    expect(written.rows).toBeLessThan(8_000);
    // With timers frozen from here, a flush still waiting for timer ticks would never end.
    vi.useFakeTimers({ toFake: ["setTimeout"] });
    await map.flush();
    vi.useRealTimers();
    expect(written.rows).toBe(8_000);
  });
});

describe("WriteBehindMap eviction", () => {
  it("stays linear when more users arrive within a flush interval than the cache holds", () => {
    const map = new WriteBehindMap<string>(new Keyv(), { maxEntries: 1_000, flushIntervalMs: 60_000, ttlMs: 3_600_000, logger: captureLogger() });
    cleanups.push(() => map.close());
    // Every entry is unsaved until the flush: none can be evicted. Scanning them all on each
    // set took 22 s for these 20,000 (quadratic); a pass that knows better takes milliseconds.
    const started = performance.now();
    for (let i = 0; i < 20_000; i++) map.set(`user${i}`, "hello");
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(map.pending).toBe(20_000);
  });
});

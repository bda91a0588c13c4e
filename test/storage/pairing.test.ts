import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PairingStore } from "../../src/storage/pairing.js";
import { openSyncSqlite } from "../../src/storage/sync-sqlite.js";
import { tempDir } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function store(maxPending = 3) {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  const db = openSyncSqlite(`sqlite://${join(dir.dir, "p.sqlite")}`);
  cleanups.push(() => db.close());
  return PairingStore.open(db, { ttlMs: 60_000, maxPending });
}

describe("PairingStore", () => {
  it("gives one code per user until it expires, then a new one", async () => {
    const p = await store();
    const a = await p.request("telegram:1", "Ann", 0);
    expect(a).toMatchObject({ status: "pending", code: expect.stringMatching(/^[A-Z2-9]{8}$/) });
    expect(await p.request("telegram:1", "Ann", 30_000)).toEqual(a);
    const later = await p.request("telegram:1", "Ann", 61_000);
    expect(later.status).toBe("pending");
    expect(later).not.toEqual(a);
    // The expired code no longer approves anyone.
    expect(await p.approve((a as { code: string }).code, 61_000)).toBeUndefined();
  });

  it("limits the codes waiting at once, so strangers cannot fill the table", async () => {
    const p = await store(2);
    await p.request("telegram:1", "", 0);
    await p.request("telegram:2", "", 0);
    expect(await p.request("telegram:3", "", 0)).toEqual({ status: "full" });
    expect((await p.pending(0)).map((x) => x.userId)).toEqual(["telegram:1", "telegram:2"]);
  });

  it("approves a code once; the user stays approved", async () => {
    const p = await store();
    const r = (await p.request("telegram:7", "Zed")) as { code: string };
    expect(await p.approve(r.code.toLowerCase())).toBe("telegram:7");
    expect(await p.approve(r.code)).toBeUndefined();
    expect(await p.isApproved("telegram:7")).toBe(true);
    expect(await p.request("telegram:7", "Zed")).toEqual({ status: "approved" });
    expect(await p.isApproved("telegram:8")).toBe(false);
  });
});

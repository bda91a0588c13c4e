import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { StorageError } from "../../src/errors.js";
import { lockStore, storeLockPath, type StoreLock } from "../../src/storage/store-lock.js";
import { tempDir } from "../support/harness.js";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

describe("the store lock", () => {
  it("lives beside the store, and there is none for a store in memory", () => {
    expect(storeLockPath("sqlite://data/sessions.sqlite")).toBe("data/sessions.lock");
    expect(storeLockPath("sqlite:///var/lib/zc/store.db")).toBe("/var/lib/zc/store.db.lock");
    expect(storeLockPath("sqlite://:memory:")).toBeUndefined();
    expect(lockStore("sqlite://:memory:")).toBeUndefined();
  });

  it("is held by one holder at a time, and free again once released", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const store = `sqlite://${join(dir.dir, "nested", "s.sqlite")}`;
    const first = lockStore(store) as StoreLock;
    cleanups.push(() => first.release());
    expect(first.path).toBe(join(dir.dir, "nested", "s.lock"));
    const started = performance.now();
    let refused: unknown;
    try {
      lockStore(store, 50);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(StorageError);
    expect((refused as Error).message).toBe(
      `another zeptoclaw gateway is running on session.store ${store} (it holds ${first.path}); run one gateway per store, or give this one a store of its own`,
    );
    // It waited for the holder about as long as it was told, no longer.
    expect(performance.now() - started).toBeLessThan(2_000);
    first.release();
    const again = lockStore(store, 0) as StoreLock;
    cleanups.push(() => again.release());
    expect(again.path).toBe(first.path);
  });
});

import { chmodSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { StorageError } from "../../src/errors.js";
import { startGateway } from "../../src/gateway.js";
import { lockStore, storeInUse, storeLockPath, type StoreLock } from "../../src/storage/store-lock.js";
import { runCli } from "../support/child-gateway.js";
import { captureLogger, tempDir } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("the store lock", () => {
  it("lives beside the store, one file per store, and there is none for a store in memory", () => {
    expect(storeLockPath("sqlite://data/sessions.sqlite")).toBe("data/sessions.sqlite.lock");
    expect(storeLockPath("sqlite://data/sessions")).toBe("data/sessions.lock");
    expect(storeLockPath("sqlite://:memory:")).toBeUndefined();
    expect(lockStore("sqlite://:memory:")).toBeUndefined();
    expect(storeInUse("sqlite://:memory:")).toBe(false);
  });

  it("is held by one holder at a time, and free again once released", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const store = `sqlite://${join(dir.dir, "nested", "s.sqlite")}`;
    expect(storeInUse(store)).toBe(false);
    const first = lockStore(store) as StoreLock;
    cleanups.push(() => first.release());
    expect(first.path).toBe(join(dir.dir, "nested", "s.sqlite.lock"));
    expect(storeInUse(store)).toBe(true);
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
    expect(storeInUse(store)).toBe(false);
    const again = lockStore(store, 0) as StoreLock;
    cleanups.push(() => again.release());
    expect(again.path).toBe(first.path);
  });

  it("is let go when a start fails, so the same process can start again", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    cleanups.push(() => new Promise<void>((r) => blocker.close(() => r())));
    const taken = String((blocker.address() as { port: number }).port);
    const env = { ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir.dir, "s.sqlite")}`, ZEPTOCLAW_HTTP_PORT: taken };
    const first = loadConfig({ env });
    await expect(startGateway({ config: first.config, logger: captureLogger() })).rejects.toMatchObject({ code: "EADDRINUSE" });
    const second = loadConfig({ env: { ...env, ZEPTOCLAW_HTTP_PORT: "0" } });
    const gw = await startGateway({ config: second.config, logger: captureLogger() });
    cleanups.push(() => gw.close());
    expect(gw.port).toBeGreaterThan(0);
  });

  // A lock file this user may only read: SQLite would open it read-only without a word, and a
  // second gateway could then share the lock. Only root can run a child as another user.
  it.skipIf(process.getuid?.() !== 0)("refuses a lock file this user cannot write, rather than share it", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    chmodSync(dir.dir, 0o777);
    const store = `sqlite://${join(dir.dir, "s.sqlite")}`;
    const lockFile = storeLockPath(store) as string;
    // Left by root (a gateway once started with sudo, before the service's own user).
    new Database(lockFile).close();
    chmodSync(lockFile, 0o644);
    writeFileSync(join(dir.dir, "s.sqlite"), "");
    chmodSync(join(dir.dir, "s.sqlite"), 0o666);
    const { code, stderr } = await runCli(["gateway"], {
      env: { ZEPTOCLAW_HTTP_PORT: "0", ZEPTOCLAW_SESSION_STORE: store },
      uid: 65534,
      gid: 65534,
      timeoutMs: 10_000,
    });
    expect(code).toBe(1);
    expect(stderr).toContain(`cannot start: cannot take the store's lock ${lockFile}: attempt to write a readonly database`);
  });
});

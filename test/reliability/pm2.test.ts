import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { PACKAGE_ROOT } from "../../src/package-info.js";
import { startFakeOpenAi } from "../support/fake-openai.js";
import { tempDir } from "../support/harness.js";

const run = promisify(execFile);
const PM2 = join(PACKAGE_ROOT, "node_modules", ".bin", "pm2");

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const cleanups: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("under PM2", () => {
  it("pm2 start, reload and stop lose no accepted message", async () => {
    const llm = await startFakeOpenAi({ latencyMs: 150 });
    cleanups.push(() => llm.close());
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const port = await freePort();
    const env = {
      ...process.env,
      PM2_HOME: join(dir.dir, "pm2"),
      ZEPTOCLAW_HTTP_PORT: String(port),
      ZEPTOCLAW_LLM_BASE_URL: llm.url,
      ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir.dir, "s.sqlite")}`,
      ZEPTOCLAW_LIMITS_MESSAGES_PER_MINUTE: "0",
    };
    const pm2 = (...args: string[]) => run(PM2, args, { cwd: PACKAGE_ROOT, env, timeout: 60_000 });
    cleanups.push(() => pm2("kill").catch(() => undefined));
    const base = `http://127.0.0.1:${port}`;
    const accepted = new Map<string, string>();
    const send = async (n: number, tag: string): Promise<void> => {
      await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const text = `${tag} ${i}`;
          try {
            const res = await fetch(`${base}/api/messages`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ user: `u${i % 10}`, text }),
            });
            if (res.status === 202) accepted.set(((await res.json()) as { id: string }).id, text);
          } catch {
            // Refused while the process restarts: never accepted, so nothing owed.
          }
        }),
      );
    };

    await pm2("start", "ecosystem.config.cjs");
    // wait_ready: pm2 start returns once the gateway sent "ready".
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    await send(40, "before-reload");
    const reloading = pm2("reload", "zeptoclaw");
    await send(40, "during-reload");
    await reloading;
    await send(20, "after-reload");
    await pm2("stop", "zeptoclaw");
    await pm2("start", "zeptoclaw");
    expect(accepted.size).toBeGreaterThanOrEqual(60);

    const pending = new Set(accepted.keys());
    const until = Date.now() + 30_000;
    while (pending.size > 0 && Date.now() < until) {
      for (const id of [...pending]) {
        const body = (await (await fetch(`${base}/api/messages/${encodeURIComponent(id)}`)).json()) as { status: string; reply?: string };
        if (body.status !== "pending") {
          expect(body).toEqual({ status: "done", reply: `echo: ${accepted.get(id)}` });
          pending.delete(id);
        }
      }
      if (pending.size > 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect([...pending]).toEqual([]);
  }, 90_000);
});

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runCli, startChildGateway } from "../support/child-gateway.js";
import { startFakeOpenAi } from "../support/fake-openai.js";
import { capturedLogs, captureLogger, tempDir } from "../support/harness.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("secrets stay out of logs and output", () => {
  it("scrubs configured secrets from any log line, even inside error messages", () => {
    const before = capturedLogs.length;
    const log = captureLogger(["sk-test-secret-key-123456"]);
    log.error({ err: new Error("upstream said: bad key sk-test-secret-key-123456") }, "call failed with sk-test-secret-key-123456");
    log.info({ api_key: "raw-value-not-in-secrets", nested: { token: "tok-not-in-secrets" } }, "redacted fields");
    log.flush();
    const lines = capturedLogs.slice(before).join("\n");
    expect(lines).toContain("[REDACTED]");
    expect(lines).not.toContain("raw-value-not-in-secrets");
    expect(lines).not.toContain("tok-not-in-secrets");
  });

  it("a gateway with keys in file and environment never prints them, also when the LLM rejects the key", async () => {
    const llm = await startFakeOpenAi();
    cleanups.push(() => llm.close());
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const cfg = join(dir.dir, "z.toml");
    writeFileSync(cfg, `[llm]\napi_key = "sk-file-secret-999"\nbase_url = "${llm.url}"\n[http]\nport = 0\nadmin_token = "admin-secret-token-42"\n[session]\nstore = "sqlite://s.sqlite"\n`);
    const check = await runCli(["config", "check", "--config", cfg]);
    expect(check.code).toBe(0);
    expect(check.stdout).not.toContain("sk-file-secret-999");
    expect(check.stdout).not.toContain("admin-secret-token-42");
    const gw = await startChildGateway(["--config", cfg], { LOG_LEVEL: "debug" });
    cleanups.push(() => gw.child.kill("SIGKILL"));
    llm.faults.push({ status: 401, message: "Incorrect API key provided: sk-file-secret-999" });
    const res = await fetch(`${gw.base}/api/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user: "a", text: "hi" }) });
    const { id } = (await res.json()) as { id: string };
    let body: { status: string; error?: string } = { status: "pending" };
    for (let i = 0; i < 200 && body.status === "pending"; i++) {
      body = (await (await fetch(`${gw.base}/api/messages/${encodeURIComponent(id)}`)).json()) as typeof body;
      if (body.status === "pending") await new Promise((r) => setTimeout(r, 20));
    }
    expect(body.status).toBe("error");
    expect(body.error).not.toContain("sk-file-secret-999");
    gw.child.kill("SIGTERM");
    await gw.exited;
    const all = gw.lines.join("\n");
    expect(all).toContain("LLM failed after retries");
    expect(all).not.toContain("sk-file-secret-999");
    expect(all).not.toContain("admin-secret-token-42");
  });
});

import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startFakeOpenAi, type FakeOpenAi } from "../support/fake-openai.js";
import { CLI, runCli, startChildGateway } from "../support/child-gateway.js";
import { tempDir } from "../support/harness.js";
import { openStores } from "../../src/storage/open-stores.js";
import { captureLogger } from "../support/harness.js";
import { PACKAGE_ROOT, packageVersion } from "../../src/package-info.js";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function file(contents: string): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  const path = join(t.dir, "zeptoclaw.toml");
  writeFileSync(path, contents);
  return path;
}

/** A config with the Telegram channel on `token` and `apiRoot`, a store in `dir`, any port, and `more` lines. */
function telegramConfig(dir: string, token: string, apiRoot: string, more: string[] = []): string {
  return file(
    [
      "[channels.telegram]",
      "enabled = true",
      `token = "${token}"`,
      `api_root = "${apiRoot}"`,
      ...more,
      "[http]",
      "port = 0",
      "[session]",
      `store = "sqlite://${join(dir, "s.sqlite")}"`,
    ].join("\n"),
  );
}

describe("zeptoclaw CLI", () => {
  it("prints its version and help", async () => {
    expect(await runCli(["--version"])).toMatchObject({ code: 0, stdout: `${packageVersion()}\n` });
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/gateway \[--config FILE\]/);
    expect((await runCli(["gateway", "--help"])).stdout).toMatch(/Usage: zeptoclaw gateway/);
    expect((await runCli(["config", "check", "--help"])).stdout).toMatch(/Usage: zeptoclaw config check/);
  });

  it("exits 2 with a clear message on unknown commands and flags", async () => {
    const cmd = await runCli(["frobnicate"]);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toMatch(/unknown command "frobnicate"/);
    const flag = await runCli(["gateway", "--prot", "1"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/--prot/);
    expect((await runCli(["config", "chek"])).code).toBe(2);
  });

  it("config check names every bad key at once and exits 2", async () => {
    const bad = file(
      ['[session]', "max_session_messages = -3", 'stor = "x"', "[llm]", "max_retries = \"many\"", "[bus]", "buffer_size = 0", "[http]", "port = 70000"].join("\n"),
    );
    const r = await runCli(["config", "check", "--config", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("session.max_session_messages: expected a positive integer");
    expect(r.stderr).toMatch(/session\.stor: unknown key; did you mean "store"\?/);
    expect(r.stderr).toContain("llm.max_retries:");
    expect(r.stderr).toContain("bus.buffer_size: expected a positive integer");
    expect(r.stderr).toContain("http.port:");
  });

  it("config check lists every Telegram problem at once, cross-key ones included", async () => {
    const bad = file(['[channels.telegram]', "enabled = true", 'mode = "webhook"', 'group_mode = "any"'].join("\n"));
    const r = await runCli(["config", "check", "--config", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("the configuration has 4 problems");
    for (const key of ["group_mode", "token", "webhook_url", "secret_token"]) expect(r.stderr).toContain(`channels.telegram.${key}:`);
  });

  it("config check refuses what the gateway could not run with", async () => {
    // Timers take at most 2^31 - 1 ms; a longer timeout fired after 1 ms, failing every LLM call.
    const long = await runCli(["config", "check"], { env: { ZEPTOCLAW_LLM_TIMEOUT_MS: "3000000000" } });
    expect(long.code).toBe(2);
    expect(long.stderr).toContain("llm.timeout_ms: expected a whole number of milliseconds from 1 to 2147483647 (24.8 days) (set by ZEPTOCLAW_LLM_TIMEOUT_MS)");
    const redis = await runCli(["config", "check", "--config", file('[session]\nstore = "redis://:hunter2pw@127.0.0.1:6390"\n')]);
    expect(redis.code).toBe(2);
    expect(redis.stderr).toContain('session.store: Redis session stores are not supported yet; expected "sqlite://<path>"');
    expect(redis.stderr + redis.stdout).not.toContain("hunter2pw");
    // An unset shell variable ("--config $CONFIG") is a mistake, not a wish for the defaults.
    const empty = await runCli(["gateway", "--config", ""]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain("--config: expected a file name, got an empty string");
  });

  it("blames a bad value from the environment on its variable, and takes the config file from ZEPTOCLAW_CONFIG", async () => {
    const r = await runCli(["config", "check", "--config", file('[log]\nlevel = "info"\n')], { env: { LOG_LEVEL: "loud" } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("log.level: expected one of fatal, error, warn, info, debug, trace, silent (set by LOG_LEVEL)");
    // As containers often set it.
    expect((await runCli(["config", "check"], { env: { LOG_LEVEL: "WARN" } })).stdout).toContain('level = "warn"');
    const fromEnv = await runCli(["config", "check"], { env: { ZEPTOCLAW_CONFIG: file('[llm]\nmodel = "from-zeptoclaw-config"\n') } });
    expect(fromEnv.code).toBe(0);
    expect(fromEnv.stdout).toContain('model = "from-zeptoclaw-config"');
  });

  it("prints a store it cannot open as one line, not a stack trace", async () => {
    const r = await runCli(["pair", "list"], { env: { ZEPTOCLAW_SESSION_STORE: "sqlite:///proc/version/s.sqlite" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^zeptoclaw: cannot open the session store at \/proc\/version\/s\.sqlite: \S+/);
    expect(r.stderr).not.toContain("    at ");
  });

  it("config check names the line of a TOML syntax error and the path of a missing file", async () => {
    const broken = file('[llm]\nmodel = "x"\nbase_url = \n');
    const r = await runCli(["config", "check", "--config", broken]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/TOML syntax error at line 3/);
    const missing = await runCli(["config", "check", "--config", "/nonexistent/zc.toml"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("config file not found: /nonexistent/zc.toml");
  });

  it("config check prints the effective config, env over file over defaults, secrets masked", async () => {
    const cfg = file('[llm]\nmodel = "from-file"\napi_key = "sk-file-secret-999"\n[bus]\nbuffer_size = 5\n');
    const r = await runCli(["config", "check", "--config", cfg], { env: { ZEPTOCLAW_BUS_BUFFER_SIZE: "7", OPENAI_BASE_URL: "http://127.0.0.1:1/v1" } });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('model = "from-file"');
    expect(r.stdout).toContain("buffer_size = 7");
    expect(r.stdout).toContain('base_url = "http://127.0.0.1:1/v1"');
    expect(r.stdout).toContain("max_session_messages = 100");
    expect(r.stdout).not.toContain("sk-file-secret-999");
    expect(r.stdout).toContain('api_key = "********"');
    const env = await runCli(["config", "check"], { env: { ZEPTOCLAW_BUS_BUFER_SIZE: "7" } });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/ZEPTOCLAW_BUS_BUFER_SIZE: unknown environment variable; did you mean ZEPTOCLAW_BUS_BUFFER_SIZE\?/);
  });

  it("resolves a relative store path from the config file's folder, whatever the working directory", async () => {
    const cfg = file('[session]\nstore = "sqlite://state/s.sqlite"\n');
    const r = await runCli(["config", "check", "--config", cfg], { cwd: "/" });
    expect(r.stdout).toContain(`store = "sqlite://${join(cfg, "..", "state", "s.sqlite")}"`);
  });

  it("on SIGTERM stops intake, drains in-flight work and exits 0", async () => {
    const llm: FakeOpenAi = await startFakeOpenAi({ latencyMs: 400 });
    cleanups.push(() => llm.close());
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const store = `sqlite://${join(dir.dir, "s.sqlite")}`;
    const gw = await startChildGateway([], {
      ZEPTOCLAW_HTTP_PORT: "0",
      ZEPTOCLAW_LLM_BASE_URL: llm.url,
      ZEPTOCLAW_SESSION_STORE: store,
    });
    cleanups.push(() => gw.child.kill("SIGKILL"));
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${gw.base}/api/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user: `u${i}`, text: `hello ${i}` }),
      });
      ids.push(((await res.json()) as { id: string }).id);
    }
    gw.child.kill("SIGTERM");
    expect(await gw.exited).toBe(0);
    expect(gw.lines.some((l) => l.includes("shutting down"))).toBe(true);
    const stores = await openStores(
      { store, max_session_messages: 10, session_ttl_hours: 1, cache_size: 10, flush_interval_ms: 10 },
      captureLogger(),
    );
    for (const id of ids) expect(await stores.journal.get(id)).toMatchObject({ status: "done" });
    await stores.close();
  });

  it("stops waiting after bus.drain_timeout_ms and still exits 0", async () => {
    const llm = await startFakeOpenAi({ latencyMs: 20_000 });
    cleanups.push(() => llm.close());
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const gw = await startChildGateway([], {
      ZEPTOCLAW_HTTP_PORT: "0",
      ZEPTOCLAW_LLM_BASE_URL: llm.url,
      ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir.dir, "s.sqlite")}`,
      ZEPTOCLAW_BUS_DRAIN_TIMEOUT_MS: "300",
    });
    cleanups.push(() => gw.child.kill("SIGKILL"));
    await fetch(`${gw.base}/api/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: "slow", text: "take your time" }),
    });
    const started = Date.now();
    gw.child.kill("SIGTERM");
    expect(await gw.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(gw.lines.some((l) => l.includes("drain budget ran out"))).toBe(true);
  });
});

describe("zeptoclaw doctor", () => {
  it("says all is well against a reachable LLM and a writable store", async () => {
    const llm = await startFakeOpenAi();
    cleanups.push(() => llm.close());
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const r = await runCli(["doctor"], {
      env: { ZEPTOCLAW_LLM_BASE_URL: llm.url, ZEPTOCLAW_HTTP_PORT: "0", ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir.dir, "s.sqlite")}` },
    });
    expect(r.stdout).toMatch(/ok {4}llm: .* reachable \(HTTP 200\)/);
    expect(r.stdout).toMatch(/ok {4}store: SQLite at .* opens and is writable\n/);
    expect(r.code).toBe(0);
  });

  it("names what is wrong and how to fix it", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    // A port that was free a moment ago: nothing listens there.
    const gone = await startFakeOpenAi();
    const deadUrl = gone.url;
    await gone.close();
    const r = await runCli(["doctor"], {
      env: { ZEPTOCLAW_LLM_BASE_URL: deadUrl, ZEPTOCLAW_HTTP_PORT: "0", ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir.dir, "s.sqlite")}` },
    });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`FAIL  llm: cannot reach ${deadUrl} (ECONNREFUSED)`);
    expect(r.stdout).toMatch(/fix: check llm\.base_url/);
    const none = await runCli(["doctor"], { env: { ZEPTOCLAW_HTTP_PORT: "0", ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir.dir, "s.sqlite")}` } });
    expect(none.stdout).toMatch(/FAIL {2}llm: no LLM configured\n {6}fix: set OPENAI_API_KEY/);
  });
});

describe("zeptoclaw doctor and config check keep secrets out of what they print", () => {
  it("scrubs the bot token and URL passwords from findings, and masks URL passwords", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const token = "123456:AAHsupersecretTOKEN";
    // A URL with credentials makes fetch refuse it with the whole URL, token path and all, in its message.
    const config = telegramConfig(dir.dir, token, "http://user:tgpassword@127.0.0.1:1", ["[llm]", 'base_url = "http://proxyuser:llmpassword@127.0.0.1:1/v1"']);
    const doctor = await runCli(["doctor", "--config", config]);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toMatch(/FAIL {2}telegram: cannot reach/);
    expect(doctor.stdout).toMatch(/FAIL {2}llm: cannot reach/);
    const check = await runCli(["config", "check", "--config", config]);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('base_url = "http://proxyuser:********@127.0.0.1:1/v1"');
    // A password written raw, with characters a URL encodes.
    const raw = await runCli(["config", "check"], { env: { ZEPTOCLAW_LLM_BASE_URL: "http://u:p@ss^word@127.0.0.1:1/v1" } });
    expect(raw.stdout).toContain('base_url = "http://u:********@127.0.0.1:1/v1"');
    expect(raw.stdout).not.toContain("ss^word");
    for (const out of [doctor.stdout, doctor.stderr, check.stdout, check.stderr]) {
      for (const secret of ["AAHsupersecretTOKEN", "tgpassword", "llmpassword"]) expect(out).not.toContain(secret);
    }
  });
});

describe("output to a reader that went away", () => {
  it("ends quietly when stdout is closed early (config check | head -1)", async () => {
    const child = spawn(process.execPath, [CLI, "config", "check"], { cwd: PACKAGE_ROOT, env: { PATH: process.env.PATH ?? "" }, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    // Read the first chunk, then hang up, as head does.
    child.stdout.once("data", () => child.stdout.destroy());
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    expect(stderr).not.toMatch(/EPIPE|Unhandled 'error' event/);
    expect(code).toBe(0);
  });
});

describe("config/production.toml", () => {
  it("documents every config key, in its section", async () => {
    const { listLeaves } = await import("../../src/config/leaves.js");
    const { configSchema } = await import("../../src/config/schema.js");
    const text = readFileSync(join(PACKAGE_ROOT, "config", "production.toml"), "utf8");
    // Section by section: a key set, or shown commented out ("# max_tokens = 1024").
    const sections = new Map<string, string>();
    let current = "";
    for (const line of text.split("\n")) {
      const header = /^\[([\w.]+)\]/.exec(line);
      if (header) current = header[1] as string;
      else sections.set(current, `${sections.get(current) ?? ""}${line}\n`);
    }
    const missing = listLeaves(configSchema)
      .map((l) => l.path)
      .filter((path) => {
        const key = path.slice(path.lastIndexOf(".") + 1);
        const body = sections.get(path.slice(0, path.lastIndexOf("."))) ?? "";
        return !new RegExp(`^#?\\s*${key}\\s*=`, "m").test(body);
      });
    expect(missing).toEqual([]);
  });
});

describe("what the CLI prints is safe to print", () => {
  it("scrubs a URL password from a start failure on stderr, as the log line is", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const config = telegramConfig(dir.dir, "123456:AAHsupersecretTOKEN", "http://proxyuser:hunter2pass@127.0.0.1:9");
    const r = await runCli(["gateway", "--config", config]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot start: Telegram getMe at http:\/\/proxyuser:\[REDACTED\]@127\.0\.0\.1:9 failed/);
    expect(r.stderr + r.stdout).not.toContain("hunter2pass");
  });

  it("shows a waiting user's display name without terminal escapes or bidi overrides", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const store = `sqlite://${join(dir.dir, "s.sqlite")}`;
    const stores = await openStores({ store, max_session_messages: 10, session_ttl_hours: 1, cache_size: 10, flush_interval_ms: 10 }, captureLogger());
    await stores.pairing.request("telegram:77", "Eve\u001b[2J\u202Egnp.exe");
    await stores.close();
    const list = await runCli(["pair", "list"], { env: { ZEPTOCLAW_SESSION_STORE: store } });
    expect(list.code).toBe(0);
    expect(list.stdout).toContain("telegram:77 (Eve?[2J?gnp.exe)");
  });
});

describe("zeptoclaw gateway start failures", () => {
  it("refuses a second gateway on the same store, and frees the store when the first dies", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const store = `sqlite://${join(dir.dir, "s.sqlite")}`;
    const env = { ZEPTOCLAW_HTTP_PORT: "0", ZEPTOCLAW_SESSION_STORE: store };
    const first = await startChildGateway([], env);
    cleanups.push(() => first.child.kill("SIGKILL"));
    // Another port, the same store: as a copy started by hand, or PM2 in cluster mode.
    const second = await runCli(["gateway"], { env });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`cannot start: another zeptoclaw gateway is running on session.store ${store} (it holds ${join(dir.dir, "s.sqlite.lock")})`);
    expect((await fetch(`${first.base}/readyz`)).status).toBe(200);
    // The CLI's other commands still open the store beside a running gateway.
    expect(await runCli(["pair", "list"], { env })).toMatchObject({ code: 0 });
    expect((await runCli(["doctor"], { env })).stdout).toMatch(/ok {4}store: SQLite at .* opens and is writable; a gateway is running on it\n/);
    // kill -9 leaves no stale lock: the kernel drops it with the process.
    first.child.kill("SIGKILL");
    await first.exited;
    const third = await startChildGateway([], env);
    cleanups.push(() => third.child.kill("SIGKILL"));
    expect((await fetch(`${third.base}/readyz`)).status).toBe(200);
  });

  it("exits 1 naming the port when http.port is taken", async () => {
    const { createServer } = await import("node:net");
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    cleanups.push(() => new Promise<void>((r) => blocker.close(() => r())));
    const port = (blocker.address() as { port: number }).port;
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const r = await runCli(["gateway"], { env: { ZEPTOCLAW_HTTP_PORT: String(port), ZEPTOCLAW_SESSION_STORE: `sqlite://${join(dir.dir, "s.sqlite")}` } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`http.port ${port} on 127.0.0.1 is already in use`);
  });
});

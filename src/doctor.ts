import { createServer } from "node:net";
import { join } from "node:path";
import { pino } from "pino";
import type { Config } from "./config/schema.js";
import { OPENAI_DEFAULT_BASE_URL } from "./config/schema.js";
import { secretsOf } from "./config/load.js";
import { scrubSecrets } from "./observability/logger.js";
import { openStores } from "./storage/open-stores.js";
import { storeInUse } from "./storage/store-lock.js";
import { sqlitePath } from "./storage/sync-sqlite.js";

/** One finding of `zeptoclaw doctor`. */
export interface Finding {
  ok: boolean;
  what: string;
  detail: string;
  /** How to fix it, when not ok. */
  fix?: string;
}

async function probe(url: string, headers: Record<string, string>, timeoutMs: number): Promise<{ status?: number; error?: string }> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel();
    return { status: res.status };
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } }).cause;
    return { error: cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (err as Error).message };
  }
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

async function checkStore(config: Config): Promise<Finding> {
  const path = sqlitePath(config.session.store);
  try {
    const stores = await openStores(config.session, pino({ level: "silent" }));
    await stores.close();
    const running = storeInUse(config.session.store) ? "; a gateway is running on it" : "";
    return { ok: true, what: "store", detail: `SQLite at ${path} opens and is writable${running}` };
  } catch (err) {
    return { ok: false, what: "store", detail: (err as Error).message, fix: `make ${join(path, "..")} writable, or set session.store to another path` };
  }
}

async function checkLlm(config: Config, timeoutMs: number): Promise<Finding> {
  const { base_url: base, api_key: key, model } = config.llm;
  if (!key && base === OPENAI_DEFAULT_BASE_URL) {
    return { ok: false, what: "llm", detail: "no LLM configured", fix: "set OPENAI_API_KEY, or llm.base_url / OPENAI_BASE_URL to a local server such as Ollama (http://127.0.0.1:11434/v1)" };
  }
  const r = await probe(`${base.replace(/\/$/, "")}/models`, key ? { authorization: `Bearer ${key}` } : {}, timeoutMs);
  if (r.error) return { ok: false, what: "llm", detail: `cannot reach ${base} (${r.error})`, fix: "check llm.base_url, that the server runs, and the network/firewall" };
  if (r.status === 401 || r.status === 403) return { ok: false, what: "llm", detail: `${base} rejected the API key (HTTP ${r.status})`, fix: "set a valid key in OPENAI_API_KEY or llm.api_key" };
  if (r.status !== undefined && r.status >= 500) return { ok: false, what: "llm", detail: `${base} answers HTTP ${r.status}`, fix: "the provider has trouble; try later or set llm.fallback_model" };
  // Some compatible servers have no /models: reachable with an accepted key is what matters.
  return { ok: true, what: "llm", detail: `${base} reachable (HTTP ${r.status}), model ${model}` };
}

async function checkTelegram(config: Config, timeoutMs: number): Promise<Finding | undefined> {
  const t = config.channels.telegram;
  if (!t.enabled) return undefined;
  const r = await probe(`${t.api_root.replace(/\/$/, "")}/bot${t.token}/getMe`, {}, timeoutMs);
  if (r.error) return { ok: false, what: "telegram", detail: `cannot reach ${t.api_root} (${r.error})`, fix: "check channels.telegram.api_root and the network" };
  if (r.status === 401 || r.status === 404) return { ok: false, what: "telegram", detail: "Telegram rejected the bot token", fix: "get the token from @BotFather and set TELEGRAM_BOT_TOKEN" };
  if (r.status !== 200) return { ok: false, what: "telegram", detail: `getMe answered HTTP ${r.status}`, fix: "try again later" };
  return { ok: true, what: "telegram", detail: `token accepted (${t.mode} mode)` };
}

async function checkHttp(config: Config): Promise<Finding> {
  const { host, port } = config.http;
  if (port === 0 || (await portFree(host, port))) return { ok: true, what: "http", detail: `${host}:${port} is free` };
  const health = await probe(`http://${host.includes(":") ? `[${host}]` : host}:${port}/healthz`, {}, 2_000);
  return health.status === 200
    ? { ok: true, what: "http", detail: `a gateway already answers on ${host}:${port}` }
    : { ok: false, what: "http", detail: `${host}:${port} is taken by another program`, fix: "stop it or set http.port" };
}

/**
 * Checks the config's store, LLM endpoint, channels and port; every finding says how to fix it.
 * Findings quote error messages and URLs, which can hold a bot token (in Telegram's URL path)
 * or a URL's password: every secret of the config is scrubbed from them before they are shown.
 */
export async function runDoctor(config: Config, timeoutMs = 5_000): Promise<Finding[]> {
  const findings = await Promise.all([checkStore(config), checkLlm(config, timeoutMs), checkTelegram(config, timeoutMs), checkHttp(config)]);
  const secrets = secretsOf(config);
  return findings
    .filter((f): f is Finding => f !== undefined)
    .map((f) => ({ ...f, detail: scrubSecrets(f.detail, secrets), ...(f.fix === undefined ? {} : { fix: scrubSecrets(f.fix, secrets) }) }));
}

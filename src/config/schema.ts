import en from "zod/v4/locales/en.js";
import * as z from "zod/mini";

// zod/mini, not the classic API: the same validation, but a bundler keeps only the parts used
// here, which takes ~100 ms off the gateway's start (classic zod is 119 ms to import).
z.config(en());

const posInt = () => z.int({ error: "expected a positive integer" }).check(z.positive({ error: "expected a positive integer" }));
const nonNegInt = () => z.int({ error: "expected a whole number of 0 or more" }).check(z.minimum(0, { error: "expected a whole number of 0 or more" }));
// Node's timers take at most 2^31 - 1 ms (~24.8 days); a longer one fires after 1 ms.
const MAX_MS = 2 ** 31 - 1;
const ms = (least: 0 | 1) => {
  const error = `expected a whole number of milliseconds from ${least} to ${MAX_MS} (24.8 days)`;
  return z.int({ error }).check(z.minimum(least, { error }), z.maximum(MAX_MS, { error }));
};
const str = () => z.string({ error: "expected a string" });
const bool = () => z.boolean({ error: "expected true or false" });
const url = () => str().check(z.refine((v) => /^https?:\/\/[^\s]+$/.test(v), { error: "expected an http:// or https:// URL" }));
const def = z._default;
const opt = z.optional;

/** The default LLM endpoint; with no key set for it, the gateway starts and says what to configure. */
export const OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1";

const llm = z.strictObject({
  base_url: def(url(), OPENAI_DEFAULT_BASE_URL),
  api_key: def(str(), ""),
  model: def(str().check(z.minLength(1, { error: "expected a model name" })), "gpt-4o-mini"),
  max_concurrency: def(posInt(), 16),
  requests_per_minute: def(nonNegInt(), 600),
  timeout_ms: def(ms(1), 60_000),
  max_retries: def(nonNegInt(), 4),
  max_tokens: opt(posInt()),
  temperature: opt(z.number({ error: "expected a number from 0 to 2" }).check(z.minimum(0), z.maximum(2))),
  /** Used when the primary provider fails for good or its circuit is open. */
  fallback_model: opt(str()),
  fallback_base_url: opt(url()),
  fallback_api_key: opt(str()),
});

const agent = z.strictObject({
  system_prompt: def(str(), "You are a helpful personal assistant. Answer clearly and briefly."),
});

const session = z.strictObject({
  store: def(
    str().check(
      z.refine((v) => v.startsWith("sqlite://"), {
        error: (issue) =>
          typeof issue.input === "string" && /^rediss?:\/\//.test(issue.input)
            ? 'Redis session stores are not supported yet; expected "sqlite://<path>"'
            : 'expected "sqlite://<path>"',
      }),
    ),
    "sqlite://data/sessions.sqlite",
  ),
  max_session_messages: def(posInt(), 100),
  session_ttl_hours: def(z.number({ error: "expected a positive number" }).check(z.positive({ error: "expected a positive number" })), 24),
  cache_size: def(posInt(), 10_000),
  flush_interval_ms: def(ms(1), 1_000),
});

const bus = z.strictObject({
  buffer_size: def(posInt(), 10_000),
  max_concurrency: def(posInt(), 256),
  drain_timeout_ms: def(ms(0), 10_000),
});

const http = z.strictObject({
  host: def(z.string({ error: "expected a host name or address" }).check(z.minLength(1)), "127.0.0.1"),
  port: def(
    z.int({ error: "expected a port number 0-65535" }).check(z.minimum(0), z.maximum(65535, { error: "expected a port number 0-65535" })),
    8787,
  ),
  max_body_bytes: def(posInt(), 1_048_576),
  /**
   * Names the server may be called by besides IP addresses and localhost (a reverse proxy's
   * public name, when it passes Host on); ".example.com" admits its subdomains too.
   */
  allowed_hosts: def(
    z.array(
      str().check(
        z.refine((v) => /^\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$/i.test(v), {
          error: 'expected a host name without scheme or port, such as "chat.example.com" or ".example.com"',
        }),
      ),
      { error: "expected a list of host names" },
    ),
    [],
  ),
  /** Bearer token for /metrics and /dashboard; without it they answer only on loopback. */
  admin_token: def(str(), ""),
});

const log = z.strictObject({
  level: def(
    z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
      error: "expected one of fatal, error, warn, info, debug, trace, silent",
    }),
    "info",
  ),
});

const limits = z.strictObject({
  messages_per_minute: def(nonNegInt(), 30),
  burst: def(posInt(), 20),
  daily_tokens_per_user: def(nonNegInt(), 0),
});

const webchat = z.strictObject({
  enabled: def(bool(), true),
  /** User names allowed to post; empty = everyone (unless deny_by_default). */
  allow_from: def(z.array(str(), { error: "expected a list of user names" }), []),
  deny_by_default: def(bool(), false),
});

const telegram = z
  .strictObject({
    enabled: def(bool(), false),
    token: def(str(), ""),
    mode: def(z.enum(["polling", "webhook"], { error: 'expected "polling" or "webhook"' }), "polling"),
    api_root: def(url(), "https://api.telegram.org"),
    webhook_url: opt(url()),
    webhook_path: def(str().check(z.refine((v) => v.startsWith("/"), { error: 'expected a path starting with "/"' })), "/telegram/webhook"),
    secret_token: opt(
      str().check(z.refine((v) => /^[A-Za-z0-9_-]{1,256}$/.test(v), { error: "expected 1-256 characters of A-Z, a-z, 0-9, _ and -" })),
    ),
    allow_from: def(z.array(z.union([str(), z.int()], { error: "expected a user id or an @username" }), { error: "expected a list of user ids or @usernames" }), []),
    deny_by_default: def(bool(), false),
    group_mode: def(z.enum(["mention", "all"], { error: 'expected "mention" or "all"' }), "mention"),
    /** Users the allowlist keeps out get a one-time code; `zeptoclaw pair approve CODE` lets them in. */
    pairing: def(bool(), false),
  })
  .check(
    z.superRefine(
      (t, ctx) => {
        if (!t.enabled) return;
        if (!t.token) ctx.addIssue({ code: "custom", path: ["token"], message: "required when the channel is enabled (or set TELEGRAM_BOT_TOKEN)" });
        if (t.mode === "webhook" && !t.webhook_url) ctx.addIssue({ code: "custom", path: ["webhook_url"], message: 'required when mode = "webhook"' });
        if (t.mode === "webhook" && !t.secret_token) {
          ctx.addIssue({ code: "custom", path: ["secret_token"], message: 'required when mode = "webhook", so forged updates are refused' });
        }
      },
      // Also when another key of the section is wrong: every problem is listed at once.
      { when: (payload) => typeof payload.value === "object" && payload.value !== null },
    ),
  );

const channels = z.strictObject({
  webchat: z.prefault(webchat, {}),
  telegram: z.prefault(telegram, {}),
});

/** The whole configuration: one schema, every key with its default. */
export const configSchema = z.strictObject({
  llm: z.prefault(llm, {}),
  agent: z.prefault(agent, {}),
  session: z.prefault(session, {}),
  bus: z.prefault(bus, {}),
  http: z.prefault(http, {}),
  log: z.prefault(log, {}),
  limits: z.prefault(limits, {}),
  channels: z.prefault(channels, {}),
});

/** The validated configuration the gateway runs with. */
export type Config = z.infer<typeof configSchema>;

/** `[channels.telegram]`, validated. */
export type TelegramConfig = Config["channels"]["telegram"];

/** Keys whose values are secrets: masked in `config check` and scrubbed from logs. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(["api_key", "fallback_api_key", "token", "secret_token", "admin_token", "signing_secret", "app_token", "bot_token"]);

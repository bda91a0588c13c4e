import { z } from "zod";

const posInt = () =>
  z.int({ error: "expected a positive integer" }).positive({ error: "expected a positive integer" });
const nonNegInt = () =>
  z.int({ error: "expected a whole number of 0 or more" }).min(0, { error: "expected a whole number of 0 or more" });
const str = () => z.string({ error: "expected a string" });
const bool = () => z.boolean({ error: "expected true or false" });
const url = () =>
  str().refine((v) => /^https?:\/\/[^\s]+$/.test(v), { error: "expected an http:// or https:// URL" });

/** The default LLM endpoint; with no key set for it, the gateway starts and says what to configure. */
export const OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1";

const llm = z.strictObject({
  base_url: url().default(OPENAI_DEFAULT_BASE_URL),
  api_key: str().default(""),
  model: str().min(1, { error: "expected a model name" }).default("gpt-4o-mini"),
  max_concurrency: posInt().default(16),
  requests_per_minute: nonNegInt().default(600),
  timeout_ms: posInt().default(60_000),
  max_retries: nonNegInt().default(4),
  max_tokens: posInt().optional(),
  temperature: z.number({ error: "expected a number" }).min(0).max(2).optional(),
  /** Used when the primary provider fails for good or its circuit is open. */
  fallback_model: str().optional(),
  fallback_base_url: url().optional(),
  fallback_api_key: str().optional(),
});

const agent = z.strictObject({
  system_prompt: str().default("You are a helpful personal assistant. Answer clearly and briefly."),
});

const session = z.strictObject({
  store: str()
    .refine((v) => v.startsWith("sqlite://") || v.startsWith("redis://") || v.startsWith("rediss://"), {
      error: 'expected "sqlite://<path>" or "redis://host:port"',
    })
    .default("sqlite://data/sessions.sqlite"),
  max_session_messages: posInt().default(100),
  session_ttl_hours: z.number({ error: "expected a positive number" }).positive({ error: "expected a positive number" }).default(24),
  cache_size: posInt().default(10_000),
  flush_interval_ms: posInt().default(1_000),
});

const bus = z.strictObject({
  buffer_size: posInt().default(10_000),
  max_concurrency: posInt().default(256),
  drain_timeout_ms: nonNegInt().default(10_000),
});

const http = z.strictObject({
  host: str().min(1).default("127.0.0.1"),
  port: z.int({ error: "expected a port number 0-65535" }).min(0).max(65535, { error: "expected a port number 0-65535" }).default(8787),
  max_body_bytes: posInt().default(1_048_576),
  /** Bearer token for /metrics and /dashboard; without it they answer only on loopback. */
  admin_token: str().default(""),
});

const log = z.strictObject({
  level: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
      error: "expected one of fatal, error, warn, info, debug, trace, silent",
    })
    .default("info"),
});

const limits = z.strictObject({
  messages_per_minute: nonNegInt().default(30),
  burst: posInt().default(20),
  daily_tokens_per_user: nonNegInt().default(0),
});

const webchat = z.strictObject({
  enabled: bool().default(true),
  /** User names allowed to post; empty = everyone (unless deny_by_default). */
  allow_from: z.array(str(), { error: "expected a list of user names" }).default([]),
  deny_by_default: bool().default(false),
});

const telegram = z
  .strictObject({
    enabled: bool().default(false),
    token: str().default(""),
    mode: z.enum(["polling", "webhook"], { error: 'expected "polling" or "webhook"' }).default("polling"),
    api_root: url().default("https://api.telegram.org"),
    webhook_url: url().optional(),
    webhook_path: str()
      .refine((v) => v.startsWith("/"), { error: 'expected a path starting with "/"' })
      .default("/telegram/webhook"),
    secret_token: str()
      .refine((v) => /^[A-Za-z0-9_-]{1,256}$/.test(v), { error: "expected 1-256 characters of A-Z, a-z, 0-9, _ and -" })
      .optional(),
    allow_from: z.array(z.union([str(), z.int()]), { error: "expected a list of user ids or @usernames" }).default([]),
    deny_by_default: bool().default(false),
    group_mode: z.enum(["mention", "all"], { error: 'expected "mention" or "all"' }).default("mention"),
    /** Users the allowlist keeps out get a one-time code; `zeptoclaw pair approve CODE` lets them in. */
    pairing: bool().default(false),
  })
  .superRefine((t, ctx) => {
    if (!t.enabled) return;
    if (!t.token) ctx.addIssue({ code: "custom", path: ["token"], message: "required when the channel is enabled (or set TELEGRAM_BOT_TOKEN)" });
    if (t.mode === "webhook" && !t.webhook_url) ctx.addIssue({ code: "custom", path: ["webhook_url"], message: 'required when mode = "webhook"' });
    if (t.mode === "webhook" && !t.secret_token) ctx.addIssue({ code: "custom", path: ["secret_token"], message: 'required when mode = "webhook", so forged updates are refused' });
  });

const channels = z.strictObject({
  webchat: webchat.prefault({}),
  telegram: telegram.prefault({}),
});

/** The whole configuration: one schema, every key with its default. */
export const configSchema = z.strictObject({
  llm: llm.prefault({}),
  agent: agent.prefault({}),
  session: session.prefault({}),
  bus: bus.prefault({}),
  http: http.prefault({}),
  log: log.prefault({}),
  limits: limits.prefault({}),
  channels: channels.prefault({}),
});

/** The validated configuration the gateway runs with. */
export type Config = z.infer<typeof configSchema>;

/** `[channels.telegram]`, validated. */
export type TelegramConfig = Config["channels"]["telegram"];

/** Keys whose values are secrets: masked in `config check` and scrubbed from logs. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(["api_key", "fallback_api_key", "token", "secret_token", "admin_token", "signing_secret", "app_token", "bot_token"]);

import { pino, type DestinationStream, type Logger } from "pino";

/** Field paths redacted wherever they appear in a log object. */
const REDACT_PATHS = [
  "api_key",
  "apiKey",
  "token",
  "authorization",
  "*.api_key",
  "*.apiKey",
  "*.token",
  "*.secret_token",
  "*.authorization",
  "*.Authorization",
  "headers.authorization",
  "headers.cookie",
  'headers["x-telegram-bot-api-secret-token"]',
  "req.headers.authorization",
];

/**
 * A function that replaces every one of `secrets` of four characters or more in a text: safe to
 * log or print. Each is also looked for as it appears inside a JSON log line, when it holds a
 * quote or a backslash; those forms are worked out once, not per line.
 */
export function secretScrubber(secrets: readonly string[]): (text: string) => string {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (s.length < 4) continue;
    forms.add(s);
    forms.add(JSON.stringify(s).slice(1, -1));
  }
  return (text) => {
    let out = text;
    for (const f of forms) if (out.includes(f)) out = out.split(f).join("[REDACTED]");
    return out;
  };
}

/** `text` with every one of `secrets` of four characters or more replaced (see `secretScrubber`). */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  return secretScrubber(secrets)(text);
}

/** Options of `createLogger`. */
export interface LoggerOptions {
  level: string;
  /** Secret values from the config; any log line containing one has it replaced. */
  secrets?: readonly string[];
  /** Where lines go; stdout by default. */
  destination?: DestinationStream;
}

/**
 * The root pino logger: JSON lines to stdout, known secret fields redacted, and every
 * configured secret value scrubbed from the final line wherever it hides (an error message,
 * a URL with a bot token in it).
 */
export function createLogger(options: LoggerOptions): Logger {
  const secrets = (options.secrets ?? []).filter((s) => s.length >= 4);
  const scrub = secretScrubber(secrets);
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
      ...(secrets.length > 0 ? { hooks: { streamWrite: scrub } } : {}),
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

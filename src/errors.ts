/** The base of every error zeptoclaw raises: a stable string `code` and the `cause` it wraps. */
export class ZeptoError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** One problem in the configuration, naming the key it is about. */
export interface ConfigIssue {
  key: string;
  message: string;
}

/** The configuration could not be loaded; `issues` lists every problem at once. */
export class ConfigError extends ZeptoError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[], options?: { cause?: unknown }) {
    super("E_CONFIG", issues.map((i) => (i.key ? `${i.key}: ${i.message}` : i.message)).join("\n"), options);
    this.issues = issues;
  }
}

/** The bus refused a message; `BusFullError` and `BusClosedError` say why. */
export class BusError extends ZeptoError {}

/** The bounded buffer is full: the sender should hear "busy, try again". */
export class BusFullError extends BusError {
  constructor(capacity: number) {
    super("E_BUS_FULL", `bus is full (${capacity} messages waiting); try again shortly`);
  }
}

/** The bus is shutting down and takes no new messages. */
export class BusClosedError extends BusError {
  constructor() {
    super("E_BUS_CLOSED", "bus is closed: the gateway is shutting down");
  }
}

/**
 * A message was refused before the bus (flood limit, access). The gateway has already told
 * the user when `userNotified`; a channel acknowledges it to its platform and moves on.
 */
export class RefusedError extends BusError {
  readonly reason: "flood" | "access";
  readonly userNotified: boolean;
  constructor(reason: "flood" | "access", message: string, userNotified: boolean) {
    super(reason === "flood" ? "E_FLOOD" : "E_ACCESS", message);
    this.reason = reason;
    this.userNotified = userNotified;
  }
}

/** The session or result store failed; never turned into an empty session. */
export class StorageError extends ZeptoError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E_STORAGE", message, options);
  }
}

/** An LLM call failed; `retryable` and `retryAfterMs` drive the retry loop. */
export class LlmError extends ZeptoError {
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly status: number | undefined;
  constructor(
    code: string,
    message: string,
    opts: { retryable: boolean; retryAfterMs?: number; status?: number; cause?: unknown },
  ) {
    super(code, message, { cause: opts.cause });
    this.retryable = opts.retryable;
    this.retryAfterMs = opts.retryAfterMs;
    this.status = opts.status;
  }
}

/** A platform call failed; `retryable` and `retryAfterMs` drive the channel's retry loop. */
export class ChannelError extends ZeptoError {
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  /** The platform's HTTP status, when it answered at all. */
  readonly status: number | undefined;
  constructor(
    code: string,
    message: string,
    opts: { retryable: boolean; retryAfterMs?: number; status?: number; cause?: unknown },
  ) {
    super(code, message, { cause: opts.cause });
    this.retryable = opts.retryable;
    this.retryAfterMs = opts.retryAfterMs;
    this.status = opts.status;
  }

  /** The platform refused this send for good (a 4xx other than 429): it will never go through. */
  get refused(): boolean {
    return !this.retryable && this.status !== undefined && this.status >= 400 && this.status < 500;
  }
}

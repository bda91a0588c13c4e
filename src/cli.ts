#!/usr/bin/env node
import module from "node:module";
import { parseArgs } from "node:util";

// Node 22.1+ caches compiled code between runs: a faster start for free. Absent on Node 20.
(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();

// Only what `--version` and `--help` need is imported up front; each command loads its
// own modules, so the CLI starts about as fast as Node itself.

const HELP = `zeptoclaw - a lean, self-hosted personal AI assistant gateway

Usage:
  zeptoclaw gateway [--config FILE]        run the gateway
  zeptoclaw config check [--config FILE]   validate a config and print it, secrets masked
  zeptoclaw doctor [--config FILE]         check config, store, LLM endpoint and channels
  zeptoclaw pair list|approve CODE         see and approve users waiting for access
  zeptoclaw bench [options]                measure throughput, latency and memory
  zeptoclaw --version                      print the version
  zeptoclaw --help                         print this help

Run "zeptoclaw <command> --help" for a command's options.
`;

const GATEWAY_HELP = `Usage: zeptoclaw gateway [--config FILE]

Runs the gateway: the web chat on [http] host:port and every enabled channel.

Options:
  -c, --config FILE   TOML config file (default: $ZEPTOCLAW_CONFIG; without either,
                      the built-in defaults apply)
  -h, --help          print this help

Environment: ZEPTOCLAW_<SECTION>_<KEY> overrides any key (ZEPTOCLAW_LLM_MODEL=...),
plus OPENAI_API_KEY, OPENAI_BASE_URL, TELEGRAM_BOT_TOKEN and LOG_LEVEL.
`;

const CONFIG_HELP = `Usage: zeptoclaw config check [--config FILE]

Validates the configuration (defaults < file < environment) and prints the effective
config with secrets masked. Exits 0 when valid, 2 listing every problem when not.

Options:
  -c, --config FILE   TOML config file (default: $ZEPTOCLAW_CONFIG)
  -h, --help          print this help
`;

const DOCTOR_HELP = `Usage: zeptoclaw doctor [--config FILE]

Checks the configuration, the session store, the LLM endpoint, each enabled channel's
token and the HTTP port, and prints what is wrong and how to fix it.
Exits 0 when all is well, 1 when something needs fixing, 2 for config problems.

Options:
  -c, --config FILE   TOML config file (default: $ZEPTOCLAW_CONFIG)
  -h, --help          print this help
`;

const PAIR_HELP = `Usage: zeptoclaw pair list [--config FILE]
       zeptoclaw pair approve CODE [--config FILE]

With pairing on (channels.telegram.pairing = true), a user not on the allowlist gets a
one-time code. "list" shows the codes waiting (they expire after an hour); "approve"
lets that user in, through the same store the gateway uses, while it runs.

Options:
  -c, --config FILE   TOML config file (the one the gateway runs with)
  -h, --help          print this help
`;

/** `text` without control characters (ESC, CR, ...) or bidirectional overrides, each shown as "?". */
function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "?");
}

/** A usage mistake: printed with a pointer to --help, exit code 2. */
class UsageError extends Error {}

function parse(args: string[], withConfig: boolean): { config?: string; help: boolean } {
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: "boolean", short: "h" },
        ...(withConfig ? { config: { type: "string" as const, short: "c" } } : {}),
      },
    });
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    // An empty --config is an unset shell variable ("--config $CONFIG"), not a wish for the defaults.
    if (values.config === "") throw new UsageError("--config: expected a file name, got an empty string");
    const config = typeof values.config === "string" ? values.config : process.env.ZEPTOCLAW_CONFIG || undefined;
    return { help: values.help === true, ...(config !== undefined ? { config } : {}) };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message);
  }
}

async function printConfigProblems(err: unknown): Promise<boolean> {
  const { ConfigError } = await import("./errors.js");
  if (!(err instanceof ConfigError)) return false;
  process.stderr.write(`zeptoclaw: the configuration has ${err.issues.length === 1 ? "a problem" : `${err.issues.length} problems`}:\n`);
  for (const i of err.issues) process.stderr.write(`  - ${i.key ? `${i.key}: ` : ""}${i.message}\n`);
  return true;
}

/** Loads the config, or prints every problem and returns exit code 2. */
/** The loaded config's secrets: scrubbed from whatever this process prints to stderr. */
let secrets: readonly string[] = [];

/** `text` safe to print: every secret of the loaded config replaced. */
async function scrubbed(text: string): Promise<string> {
  if (secrets.length === 0) return text;
  const { scrubSecrets } = await import("./observability/logger.js");
  return scrubSecrets(text, secrets);
}

async function loadOrReport(file: string | undefined): Promise<import("./config/load.js").LoadedConfig | number> {
  const { loadConfig } = await import("./config/load.js");
  try {
    const loaded = loadConfig({ file });
    secrets = loaded.secrets;
    return loaded;
  } catch (err) {
    if (!(await printConfigProblems(err))) throw err;
    if (file !== undefined && file === process.env.ZEPTOCLAW_CONFIG) process.stderr.write("  (the config file is the one ZEPTOCLAW_CONFIG names)\n");
    return 2;
  }
}

async function configCheck(args: string[]): Promise<number> {
  const opts = parse(args, true);
  if (opts.help) {
    process.stdout.write(CONFIG_HELP);
    return 0;
  }
  const loaded = await loadOrReport(opts.config);
  if (typeof loaded === "number") return loaded;
  const { maskSecrets } = await import("./config/load.js");
  const { stringify } = await import("smol-toml");
  process.stdout.write(`# effective configuration${loaded.file ? ` from ${loaded.file}` : " (defaults)"}; secrets masked\n`);
  process.stdout.write(`${stringify(maskSecrets(loaded.config) as Record<string, unknown>)}\n`);
  return 0;
}

async function gateway(args: string[]): Promise<number> {
  const opts = parse(args, true);
  if (opts.help) {
    process.stdout.write(GATEWAY_HELP);
    return 0;
  }
  const loaded = await loadOrReport(opts.config);
  if (typeof loaded === "number") return loaded;
  const { createLogger } = await import("./observability/logger.js");
  const logger = createLogger({ level: loaded.config.log.level, secrets: loaded.secrets });
  const { startGateway } = await import("./gateway.js");
  let gw;
  try {
    gw = await startGateway({ config: loaded.config, logger });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === "EADDRINUSE"
        ? `http.port ${loaded.config.http.port} on ${loaded.config.http.host} is already in use; stop the other process or set a different port`
        : (err as Error).message;
    logger.fatal({ err }, `cannot start: ${message}`);
    logger.flush();
    // The log line above is scrubbed by the logger; under PM2 or systemd stderr is a log too.
    process.stderr.write(await scrubbed(`zeptoclaw: cannot start: ${message}\n`));
    return 1;
  }
  // PM2's wait_ready: tell it we serve.
  process.send?.("ready");
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        logger.warn({ signal }, "second signal: exiting without finishing the drain");
        logger.flush();
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, "shutting down: intake stopped, draining");
      gw.close().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    // PM2 on Windows and some supervisors send this message instead of a signal.
    process.on("message", (msg) => {
      if (msg === "shutdown") stop("shutdown");
    });
  });
}

async function doctor(args: string[]): Promise<number> {
  const opts = parse(args, true);
  if (opts.help) {
    process.stdout.write(DOCTOR_HELP);
    return 0;
  }
  const loaded = await loadOrReport(opts.config);
  if (typeof loaded === "number") return loaded;
  process.stdout.write(`ok    config: ${loaded.file ?? "built-in defaults"} is valid\n`);
  const { runDoctor } = await import("./doctor.js");
  const findings = await runDoctor(loaded.config);
  for (const f of findings) {
    process.stdout.write(`${f.ok ? "ok  " : "FAIL"}  ${f.what}: ${f.detail}\n`);
    if (!f.ok && f.fix) process.stdout.write(`      fix: ${f.fix}\n`);
  }
  return findings.every((f) => f.ok) ? 0 : 1;
}

async function pair(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    process.stdout.write(PAIR_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== "list" && sub !== "approve") throw new UsageError(`unknown pair subcommand "${sub}"`);
  const code = sub === "approve" ? rest.shift() : undefined;
  if (sub === "approve" && (!code || code.startsWith("-"))) throw new UsageError("pair approve needs the CODE the user was given");
  const opts = parse(rest, true);
  if (opts.help) {
    process.stdout.write(PAIR_HELP);
    return 0;
  }
  const loaded = await loadOrReport(opts.config);
  if (typeof loaded === "number") return loaded;
  const { pino } = await import("pino");
  const { openStores } = await import("./storage/open-stores.js");
  const { StorageError } = await import("./errors.js");
  let stores: Awaited<ReturnType<typeof openStores>>;
  try {
    stores = await openStores(loaded.config.session, pino({ level: "silent" }));
  } catch (err) {
    if (!(err instanceof StorageError)) throw err;
    process.stderr.write(`zeptoclaw: ${err.message}\n`);
    return 1;
  }
  try {
    if (code) {
      const userId = await stores.pairing.approve(code);
      if (!userId) {
        process.stderr.write(`zeptoclaw: no pending code ${code.toUpperCase()} (unknown, already used, or expired after an hour)\n`);
        return 1;
      }
      process.stdout.write(`approved ${userId}\n`);
      return 0;
    }
    const pending = await stores.pairing.pending();
    if (pending.length === 0) process.stdout.write("no codes waiting\n");
    for (const p of pending) {
      // A display name is whatever the user typed: no escape sequences or bidi overrides on the operator's terminal.
      const name = p.name ? ` (${printable(p.name)})` : "";
      process.stdout.write(`${p.code}  ${p.userId}${name}  since ${new Date(p.createdAt).toISOString()}\n`);
    }
    return 0;
  } finally {
    await stores.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "--version":
    case "-v":
    case "version": {
      const { packageVersion } = await import("./package-info.js");
      process.stdout.write(`${packageVersion()}\n`);
      return 0;
    }
    case "--help":
    case "-h":
    case "help":
      process.stdout.write(HELP);
      return 0;
    case undefined:
      process.stderr.write(HELP);
      return 2;
    case "gateway":
      return gateway(rest);
    case "config": {
      const [sub, ...subArgs] = rest;
      if (sub === "check") return configCheck(subArgs);
      if (sub === "--help" || sub === "-h" || sub === undefined) {
        process.stdout.write(CONFIG_HELP);
        return sub === undefined ? 2 : 0;
      }
      throw new UsageError(`unknown config subcommand "${sub}"`);
    }
    case "doctor":
      return doctor(rest);
    case "pair":
      return pair(rest);
    case "bench": {
      const { benchCommand } = await import("../bench/cli.js");
      return benchCommand(rest);
    }
    default:
      throw new UsageError(command.startsWith("-") ? `unknown option "${command}"` : `unknown command "${command}"`);
  }
}

// `zeptoclaw config check | head`: a reader that has gone away ends the output, not in a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code !== "EPIPE") throw err;
  process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Anything still holding the loop (a stuck socket) must not keep a stopped gateway alive.
    setTimeout(() => process.exit(code), 3_000).unref();
  },
  async (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`zeptoclaw: ${err.message}\nRun "zeptoclaw --help" for usage.\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(await scrubbed(`zeptoclaw: ${(err as Error)?.stack ?? String(err)}\n`));
    process.exitCode = 1;
  },
);

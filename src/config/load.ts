import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import type * as z from "zod/mini";
import { ConfigError, type ConfigIssue } from "../errors.js";
import { PACKAGE_ROOT } from "../package-info.js";
import { applyEnv } from "./env.js";
import { listLeaves } from "./leaves.js";
import { type Config, configSchema, SECRET_KEYS } from "./schema.js";
import { suggest } from "./suggest.js";


/** A loaded configuration with what is needed to report on it. */
export interface LoadedConfig {
  config: Config;
  /** The config file's absolute path, if one was read. */
  file: string | undefined;
  /** Every secret value in the config, so logs can scrub them. */
  secrets: string[];
}

/** Options for `loadConfig`; `env` defaults to `process.env`. */
export interface LoadConfigOptions {
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

const leaves = listLeaves(configSchema);

function readToml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "config file not found" : code === "EACCES" ? "config file not readable" : "cannot read config file";
    throw new ConfigError([{ key: "", message: `${why}: ${file}` }], { cause: err });
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split("\n")[0] ?? "invalid TOML";
      throw new ConfigError(
        [{ key: "", message: `${file}: TOML syntax error at line ${err.line}, column ${err.column}: ${first}` }],
        { cause: err },
      );
    }
    throw err;
  }
}

function keyOf(path: ReadonlyArray<PropertyKey>): string {
  return path.map(String).join(".");
}

function formatIssues(issues: z.core.$ZodIssue[]): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of issues) {
    if (issue.code === "unrecognized_keys") {
      const parent = keyOf(issue.path);
      const siblings = leaves
        .map((l) => l.path)
        .filter((p) => (parent ? p.startsWith(`${parent}.`) : true))
        .map((p) => p.slice(parent ? parent.length + 1 : 0).split(".")[0] as string);
      for (const k of issue.keys) {
        const hint = suggest(k, [...new Set(siblings)]);
        out.push({ key: parent ? `${parent}.${k}` : k, message: `unknown key${hint ? `; did you mean "${hint}"?` : ""}` });
      }
      continue;
    }
    let message = issue.message;
    if (issue.code === "invalid_type" && message.startsWith("Invalid input")) {
      message = `expected ${issue.expected}`;
    }
    out.push({ key: keyOf(issue.path), message });
  }
  return out;
}

/** The password in a URL's user info (`redis://:pw@host`, `http://user:pw@host`), as written and decoded. */
function urlPasswords(value: string): string[] {
  if (!value.includes("@") || !value.includes("://")) return [];
  try {
    const { password } = new URL(value);
    if (password === "") return [];
    const decoded = decodeURIComponent(password);
    return decoded === password ? [password] : [password, decoded];
  } catch {
    return [];
  }
}

function collectSecrets(value: unknown, out: string[], key = ""): void {
  if (typeof value === "string") {
    if (SECRET_KEYS.has(key) && value.length > 0) out.push(value);
    else out.push(...urlPasswords(value));
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) collectSecrets(v, out, k);
  }
}

/** Every secret value in a config: the secret keys' values and the passwords in its URLs. */
export function secretsOf(config: Config): string[] {
  const out: string[] = [];
  collectSecrets(config, out);
  return out;
}

function resolveStore(store: string, base: string): string {
  if (!store.startsWith("sqlite://")) return store;
  const path = store.slice("sqlite://".length);
  if (path === ":memory:" || isAbsolute(path)) return store;
  return `sqlite://${resolve(base, path)}`;
}

/**
 * Loads the configuration: defaults < config file < environment, validated by one schema.
 * Throws a `ConfigError` listing every problem, each naming its key.
 */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const file = options.file ? resolve(cwd, options.file) : undefined;
  const raw = file ? readToml(file) : {};
  const storeInFile = typeof (raw.session as Record<string, unknown> | undefined)?.store === "string";
  const { fromEnv, issues } = applyEnv(raw, env, leaves, suggest);
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    // A value from the environment is blamed on its variable too: the file may look right.
    for (const issue of formatIssues(parsed.error.issues)) {
      // A list's element (`http.allowed_hosts.0`) came from its list's variable.
      const name = fromEnv.get(issue.key) ?? fromEnv.get(issue.key.replace(/\.\d+$/, ""));
      issues.push(name === undefined ? issue : { ...issue, message: `${issue.message} (set by ${name})` });
    }
  }
  if (issues.length > 0 || !parsed.success) throw new ConfigError(issues);
  const config = parsed.data;
  // Relative store paths resolve from where they were written: the file's folder, the
  // working directory for the environment, and the package for the built-in default.
  const base = fromEnv.has("session.store") ? cwd : storeInFile && file ? dirname(file) : PACKAGE_ROOT;
  config.session.store = resolveStore(config.session.store, base);
  return { config, file, secrets: secretsOf(config) };
}

/** A deep copy of the config with every secret replaced, safe to print. */
export function maskSecrets(value: unknown, key = ""): unknown {
  if (typeof value === "string") {
    if (SECRET_KEYS.has(key) && value.length > 0) return "********";
    if (urlPasswords(value).length === 0) return value;
    // Rebuilt rather than replaced in the text: a password written raw ("p@ss") is not the
    // encoded one URL gives back.
    const url = new URL(value);
    url.password = "********";
    return url.href;
  }
  if (Array.isArray(value)) return value.map((v) => maskSecrets(v));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, maskSecrets(v, k)]));
  }
  return value;
}

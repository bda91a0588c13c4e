import type { ConfigIssue } from "../errors.js";
import type { Leaf } from "./leaves.js";

/** Maps a config key to its environment variable: `llm.base_url` -> `ZEPTOCLAW_LLM_BASE_URL`. */
export function envName(path: string): string {
  return `ZEPTOCLAW_${path.replace(/\./g, "_").toUpperCase()}`;
}

/** Well-known variables that other tools use too, mapped onto our keys (weaker than ZEPTOCLAW_*). */
export const ALIASES: ReadonlyArray<[string, string]> = [
  ["OPENAI_API_KEY", "llm.api_key"],
  ["OPENAI_BASE_URL", "llm.base_url"],
  ["LOG_LEVEL", "log.level"],
  ["TELEGRAM_BOT_TOKEN", "channels.telegram.token"],
];

function coerce(leaf: Leaf, raw: string, name: string, issues: ConfigIssue[]): unknown {
  switch (leaf.kind) {
    case "number": {
      const n = Number(raw.trim());
      if (raw.trim() === "" || !Number.isFinite(n)) {
        issues.push({ key: leaf.path, message: `${name}: expected a number, got "${raw}"` });
        return undefined;
      }
      return n;
    }
    case "boolean": {
      const v = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(v)) return true;
      if (["0", "false", "no", "off"].includes(v)) return false;
      issues.push({ key: leaf.path, message: `${name}: expected true or false, got "${raw}"` });
      return undefined;
    }
    case "array":
      return raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
    default:
      // LOG_LEVEL=INFO is common in containers; pino's levels are lower case.
      return leaf.path === "log.level" ? raw.trim().toLowerCase() : raw;
  }
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== "object" || next === null || Array.isArray(next)) {
      node[part] = {};
    }
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1] as string] = value;
}

/** Variables that start with ZEPTOCLAW_ but are not config keys. */
const NON_KEYS: ReadonlySet<string> = new Set(["ZEPTOCLAW_CONFIG"]);

/**
 * Applies environment overrides onto the raw (parsed TOML) object, in place.
 * Returns the keys that were set from the environment, and any problems found.
 */
export function applyEnv(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  leaves: Leaf[],
  suggest: (name: string, candidates: string[]) => string | undefined,
): { fromEnv: Map<string, string>; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  /** Keys set from the environment, and by which variable (a ZEPTOCLAW_ one wins over an alias). */
  const fromEnv = new Map<string, string>();
  const byPath = new Map(leaves.map((l) => [l.path, l]));
  for (const [name, path] of ALIASES) {
    const value = env[name];
    const leaf = byPath.get(path);
    if (value === undefined || value === "" || !leaf) continue;
    setPath(raw, path, coerce(leaf, value, name, issues));
    fromEnv.set(path, name);
  }
  const byEnv = new Map(leaves.map((l) => [envName(l.path), l]));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith("ZEPTOCLAW_") || value === undefined || NON_KEYS.has(name)) continue;
    const leaf = byEnv.get(name);
    if (!leaf) {
      const hint = suggest(name, [...byEnv.keys()]);
      issues.push({ key: name, message: `unknown environment variable${hint ? `; did you mean ${hint}?` : ""}` });
      continue;
    }
    setPath(raw, leaf.path, coerce(leaf, value, name, issues));
    fromEnv.set(leaf.path, name);
  }
  return { fromEnv, issues };
}

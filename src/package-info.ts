import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(): string {
  // Works from the TypeScript sources (tests) and from dist/ (the installed command) alike.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "config", "default.toml"))) return dir;
    dir = dirname(dir);
  }
  throw new Error("zeptoclaw: cannot find the package root (package.json next to config/default.toml)");
}

/** The package's root folder: where the web page, `config/` and the default `data/` live. */
export const PACKAGE_ROOT = findRoot();

/** The package version from package.json. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
  return pkg.version;
}

/**
 * The node flags the gateway's launchers (`npm start`, ecosystem.config.cjs) give it, and the
 * bench gives its gateway child. A 32 MB young-generation semi-space, twice V8's default:
 * under load, the objects of the messages in flight outlive a 16 MB scavenge cycle, and
 * copying and then promoting them was a fifth of the main thread at capacity (11 % with
 * this). It costs ~30 MB of RSS at peak load and none idle, as V8 shrinks the young
 * generation again when allocation stops.
 */
export const GATEWAY_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=32"];

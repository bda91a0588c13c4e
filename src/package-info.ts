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

// Bundles the compiled CLI (dist/src/cli.js, from tsc) into dist/app/, the code the
// `zeptoclaw` command and `npm start` run. Why: Node 20 loads ES modules one file at a time
// (resolve, stat, read, compile) and has no compile cache for them; our ~40 modules plus
// zod's ~100 made up a third of the time to /readyz. One chunk for the start-up path, with
// zod/mini tree-shaken to what the config schema uses, takes that away. Lazily imported
// parts (Telegram, metrics, the bench) stay separate chunks, loaded when first needed.
// Packages with native addons or file-relative assets stay external and load from
// node_modules as before.
import { chmodSync, rmSync } from "node:fs";
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import { build } from "rolldown";

const root = fileURLToPath(new URL("..", import.meta.url));

// Pure-JS packages on the start-up path, small once bundled. Everything else stays external.
const BUNDLED = new Set([
  "zod", "smol-toml", "p-limit", "yocto-queue", "keyv", "@keyv/serialize",
  "pino", "@pinojs/redact", "atomic-sleep", "on-exit-leak-free", "pino-std-serializers", "process-warning",
  "quick-format-unescaped", "safe-stable-stringify", "sonic-boom",
]);

function packageName(id) {
  const parts = id.split("/");
  return id.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
}

function external(id) {
  if (id.startsWith("node:") || builtinModules.includes(id)) return true;
  if (id.startsWith(".") || id.startsWith("/") || id.startsWith("\0")) return false;
  return !BUNDLED.has(packageName(id));
}

rmSync(`${root}dist/app`, { recursive: true, force: true });
await build({
  cwd: root,
  input: { cli: "dist/src/cli.js" },
  platform: "node",
  external,
  logLevel: "warn",
  output: {
    dir: "dist/app",
    format: "esm",
    sourcemap: true,
    entryFileNames: "[name].js",
    chunkFileNames: "[name]-[hash].js",
  },
});
// npm links bin/zeptoclaw to it once, setting the execute bit then; a rebuild writes a
// new file, which must stay executable for `npx zeptoclaw` to keep working.
chmodSync(`${root}dist/app/cli.js`, 0o755);

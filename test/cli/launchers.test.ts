import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GATEWAY_NODE_FLAGS, PACKAGE_ROOT } from "../../src/package-info.js";

describe("gateway launchers", () => {
  it("npm start and the PM2 file give the gateway the node flags the bench measures it with", () => {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { scripts: { start: string } };
    expect(pkg.scripts.start).toBe(`node ${GATEWAY_NODE_FLAGS.join(" ")} dist/app/cli.js gateway --config config/default.toml`);
    const ecosystem = createRequire(import.meta.url)(join(PACKAGE_ROOT, "ecosystem.config.cjs")) as { apps: { node_args?: string[] }[] };
    expect(ecosystem.apps[0]?.node_args).toEqual([...GATEWAY_NODE_FLAGS]);
  });

  it("the built command stays executable after a rebuild, for npx zeptoclaw", () => {
    // `npm test` has just rebuilt it (the bundler writes a new file).
    expect(statSync(join(PACKAGE_ROOT, "dist", "app", "cli.js")).mode & 0o111).toBe(0o111);
  });
});

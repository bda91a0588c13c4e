import { fork } from "node:child_process";
import { Agent, createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { numberFlag } from "./script-args.js";

/**
 * The floor under the web chat path: what one keep-alive HTTP exchange between two Node
 * processes costs in CPU, with no application logic at all (a 27-byte JSON POST answered
 * with 11 bytes). A web chat message needs about two and a half of them (the POST, the LLM
 * call, the SSE event), so this bounds what any gateway on node:http can do on this machine.
 * `node dist/bench/http-floor.js [--exchanges N] [--concurrency C]`.
 */
async function main(): Promise<void> {
  if (process.argv[2] === "--serve") {
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json", "content-length": 11 });
        res.end('{"ok":true}');
      });
    });
    server.listen(0, "127.0.0.1", () => process.send?.((server.address() as AddressInfo).port));
    process.on("message", (m) => {
      if (m !== "cpu") return;
      const u = process.cpuUsage();
      process.send?.(u.user + u.system);
    });
    process.on("disconnect", () => process.exit(0));
    return;
  }
  const exchanges = numberFlag("--exchanges", 40_000);
  const concurrency = numberFlag("--concurrency", 64);
  const child = fork(fileURLToPath(import.meta.url), ["--serve"]);
  const port = await new Promise<number>((resolve) => child.once("message", (m) => resolve(Number(m))));
  const serverCpu = (): Promise<number> =>
    new Promise((resolve) => {
      child.once("message", (m) => resolve(Number(m)));
      child.send("cpu");
    });
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const body = '{"model":"m","messages":[]}';
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, method: "POST", path: "/", agent, headers: { "content-type": "application/json", "content-length": body.length } },
        (res) => {
          res.resume();
          res.on("end", resolve);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  let started = 0;
  const s0 = await serverCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started++ < exchanges) await one();
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const s = (await serverCpu()) - s0;
  agent.destroy();
  child.disconnect();
  const client = (c.user + c.system) / exchanges;
  const server = s / exchanges;
  process.stdout.write(
    `${exchanges} keep-alive exchanges, ${concurrency} in flight: ${(exchanges / seconds).toFixed(0)}/s; ` +
      `CPU per exchange: client ${client.toFixed(0)} us + server ${server.toFixed(0)} us = ${(client + server).toFixed(0)} us\n`,
  );
}

void main();

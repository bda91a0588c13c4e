import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { withCachedRequestHeaders } from "../src/agent/sdk-request-cache.js";
import { createHttpFetch } from "../src/http/http-fetch.js";
import { startFakeOpenAi } from "../test/support/fake-openai.js";
import { numberFlag } from "./script-args.js";

/**
 * What one chat call through the official openai SDK costs the calling process, apart from
 * everything else the gateway does: the fake server runs in a child process, this process
 * only makes calls. `node dist/bench/sdk-cost.js [--calls N] [--concurrency C] [--no-stream] [--builtin-fetch]`:
 * the gateway's own fetch (node:http) by default, Node's built-in fetch (undici) with the last flag.
 */
async function main(): Promise<void> {
  if (process.argv[2] === "--serve") {
    const fake = await startFakeOpenAi({ record: false });
    process.send?.(fake.url);
    return;
  }
  // 20,000 calls: the first few thousand run before the JIT has warmed up and would inflate the figure.
  const calls = numberFlag("--calls", 20_000);
  const concurrency = numberFlag("--concurrency", 64);
  const stream = !process.argv.includes("--no-stream");
  const child = fork(fileURLToPath(import.meta.url), ["--serve"]);
  try {
    const url = await new Promise<string>((resolve) => child.once("message", (m) => resolve(String(m))));
    const builtin = process.argv.includes("--builtin-fetch");
    const http = createHttpFetch(concurrency);
    const stockHeaders = process.argv.includes("--stock-headers");
    const Client = stockHeaders ? OpenAI : withCachedRequestHeaders(OpenAI);
    const sdk = new Client({ baseURL: url, apiKey: "not-needed", maxRetries: 0, ...(builtin ? {} : { fetch: http.fetch as unknown as typeof fetch }) });
    const messages = [{ role: "user" as const, content: "hello there" }];
    let started = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (started++ < calls) {
          if (stream) {
            const s = await sdk.chat.completions.create({ model: "m", messages, stream: true });
            for await (const _ of s);
          } else {
            await sdk.chat.completions.create({ model: "m", messages });
          }
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    process.stdout.write(
      `${calls} ${stream ? "streamed" : "plain"} calls with ${builtin ? "built-in fetch" : "node:http fetch"}, ${stockHeaders ? "stock" : "cached"} headers, ${concurrency} in flight: ${(calls / seconds).toFixed(0)} calls/s, ` +
        `client CPU ${((cpu.user + cpu.system) / calls).toFixed(0)} us per call\n`,
    );
    http.close();
  } finally {
    child.kill();
  }
}

void main();

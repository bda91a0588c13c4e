import { describe, expect, it } from "vitest";
import { MemoryBus } from "../../src/bus/memory-bus.js";
import { BusClosedError, BusFullError } from "../../src/errors.js";
import type { InboundMessage } from "../../src/messages.js";
import { captureLogger } from "../support/harness.js";

let seq = 0;
function msg(user: string, text = `m${seq}`): InboundMessage {
  seq++;
  return {
    id: `webchat:${seq}`,
    channel: "webchat",
    conversationId: `webchat:${user}`,
    userId: `webchat:${user}`,
    sender: { id: user, isBot: false },
    text,
    isDirect: true,
    mentionsBot: true,
    attachments: [],
    receivedAt: Date.now(),
  };
}

function bus(opts: Partial<{ bufferSize: number; maxConcurrency: number; drainTimeoutMs: number }> = {}): MemoryBus {
  return new MemoryBus({ bufferSize: 1000, maxConcurrency: 8, drainTimeoutMs: 1000, logger: captureLogger(), ...opts });
}

/** A promise with its resolver, to hold a handler until the test lets it go. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe("MemoryBus", () => {
  it("runs one user's messages one at a time, in arrival order", async () => {
    const b = bus();
    const seen: string[] = [];
    let running = 0;
    let maxRunning = 0;
    b.consume(async (m) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, Math.random() * 3));
      seen.push(m.text);
      running--;
    });
    const texts = Array.from({ length: 50 }, (_, i) => `t${i}`);
    for (const t of texts) await b.publish(msg("alice", t));
    await b.close(5000);
    expect(seen).toEqual(texts);
    expect(maxRunning).toBe(1);
  });

  it("runs different users in parallel, up to max_concurrency", async () => {
    const b = bus({ maxConcurrency: 3 });
    const gate = deferred();
    let running = 0;
    let maxRunning = 0;
    const started: string[] = [];
    b.consume(async (m) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      started.push(m.userId);
      await gate.promise;
      running--;
    });
    for (const u of ["a", "b", "c", "d", "e"]) await b.publish(msg(u));
    expect(started).toHaveLength(3);
    gate.resolve();
    await b.close(5000);
    expect(maxRunning).toBe(3);
    expect(started).toHaveLength(5);
  });

  it("rejects with BusFullError when the buffer is full, and accepts again once it drains", async () => {
    const b = bus({ bufferSize: 3, maxConcurrency: 1 });
    const gate = deferred();
    b.consume(() => gate.promise);
    await b.publish(msg("a"));
    await b.publish(msg("b"));
    await b.publish(msg("c"));
    await expect(b.publish(msg("d"))).rejects.toBeInstanceOf(BusFullError);
    expect(b.depth).toBe(3);
    gate.resolve();
    await expect.poll(() => b.depth).toBe(0);
    await expect(b.publish(msg("e"))).resolves.toBeUndefined();
    await b.close(1000);
  });

  it("keeps serving other users while one user floods its own lane", async () => {
    const b = bus({ maxConcurrency: 2 });
    const order: string[] = [];
    b.consume(async (m) => {
      order.push(m.userId);
      await new Promise((r) => setImmediate(r));
    });
    for (let i = 0; i < 20; i++) await b.publish(msg("flood"));
    await b.publish(msg("quiet"));
    await b.close(5000);
    // The quiet user is served long before the flooder's 20 messages are done.
    expect(order.indexOf("webchat:quiet")).toBeLessThan(5);
  });

  it("close() stops intake, drains in-flight work, and reports what the budget cut off", async () => {
    const b = bus({ maxConcurrency: 1 });
    const done: string[] = [];
    b.consume(async (m, signal) => {
      if (m.text === "slow") {
        await new Promise((resolve, reject) => {
          const t = setTimeout(resolve, 10_000);
          signal.addEventListener("abort", () => {
            clearTimeout(t);
            reject(signal.reason);
          });
        });
      }
      done.push(m.text);
    });
    await b.publish(msg("a", "fast"));
    await b.publish(msg("a", "slow"));
    await b.publish(msg("b", "never"));
    const report = await b.close(100);
    await expect(b.publish(msg("c"))).rejects.toBeInstanceOf(BusClosedError);
    expect(done).toEqual(["fast"]);
    expect(report.aborted).toHaveLength(1);
    expect(report.unstarted).toHaveLength(1);
  });

  it("survives a handler that throws and goes on with the next message", async () => {
    const b = bus();
    const done: string[] = [];
    b.consume(async (m) => {
      if (m.text === "boom") throw new Error("bug");
      done.push(m.text);
    });
    await b.publish(msg("a", "boom"));
    await b.publish(msg("a", "after"));
    await b.close(1000);
    expect(done).toEqual(["after"]);
  });
});

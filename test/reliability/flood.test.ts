import { afterEach, describe, expect, it } from "vitest";
import { FloodLimit } from "../../src/bus/flood-limit.js";
import { startTestGateway, type TestGateway } from "../support/harness.js";

let t: TestGateway | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] as number;
}

describe("per-user flood limit", () => {
  it("allows a burst, then the sustained rate, and warns once a minute", () => {
    const f = new FloodLimit({ perMinute: 30, burst: 20 });
    const t0 = 1_000_000;
    const first = Array.from({ length: 25 }, () => f.take("u", t0));
    expect(first.filter((d) => d === "ok")).toHaveLength(20);
    expect(first.filter((d) => d === "refuse-and-warn")).toHaveLength(1);
    // 2 s later one more token has been refilled (30 a minute).
    expect(f.take("u", t0 + 2_000)).toBe("ok");
    expect(f.take("u", t0 + 2_000)).toBe("refuse");
    expect(f.take("other", t0)).toBe("ok");
    expect(f.take("u", t0 + 61_000)).toBe("ok");
    expect(new FloodLimit({ perMinute: 0, burst: 1 }).take("u")).toBe("ok");
  });

  it("a flood of 1,000 messages from one user neither slows other users nor passes the limit", async () => {
    t = await startTestGateway({ llm: { latencyMs: 5 }, env: { ZEPTOCLAW_LIMITS_MESSAGES_PER_MINUTE: "30", ZEPTOCLAW_LIMITS_BURST: "20" } });
    const timeOthers = async (): Promise<number[]> => {
      const latencies: number[] = [];
      await Promise.all(
        Array.from({ length: 10 }, async (_, u) => {
          for (let n = 0; n < 5; n++) {
            const started = performance.now();
            const { body } = await t!.post(`calm${u}`, `hello ${n}`);
            await t!.result(body.id as string);
            latencies.push(performance.now() - started);
          }
        }),
      );
      return latencies;
    };
    const baseline = await timeOthers();
    const statuses: number[] = [];
    const flood = (async () => {
      for (let i = 0; i < 1000; i += 50) {
        const batch = await Promise.all(Array.from({ length: 50 }, (_, k) => t!.post("flooder", `spam ${i + k}`)));
        statuses.push(...batch.map((b) => b.status));
      }
    })();
    const during = await timeOthers();
    await flood;
    const accepted = statuses.filter((s) => s === 202).length;
    expect(statuses).toHaveLength(1000);
    expect(accepted).toBeGreaterThanOrEqual(20);
    // The burst plus what 30 a minute refills during the test, never the flood.
    expect(accepted).toBeLessThanOrEqual(25);
    expect(statuses.filter((s) => s !== 202).every((s) => s === 429)).toBe(true);
    // Other users keep their normal latency (loose bound: this is a correctness check, not a benchmark).
    expect(p99(during)).toBeLessThan(p99(baseline) * 3 + 100);
  });
});

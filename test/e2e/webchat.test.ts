import { afterEach, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "../support/harness.js";

let t: TestGateway | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

describe("web chat end to end", () => {
  it("answers a posted message with the LLM's reply", async () => {
    t = await startTestGateway();
    const { status, body } = await t.post("alice", "hello there");
    expect(status).toBe(202);
    expect(body.id).toMatch(/^webchat:/);
    const result = await t.result(body.id as string);
    expect(result).toEqual({ status: "done", reply: "echo: hello there" });
    expect(t.llm.requests[0]?.messages.at(-1)).toEqual({ role: "user", content: "hello there" });
    expect(t.llm.requests[0]?.authorization).toBe("Bearer sk-test-secret-key-123456");
  });
});

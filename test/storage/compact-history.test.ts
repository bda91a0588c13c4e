import { describe, expect, it } from "vitest";
import { CompactHistory } from "../../src/storage/compact-history.js";
import type { ChatMessage } from "../../src/storage/session-store.js";
import { reviveSession } from "../../src/storage/session-store.js";

const withTools: ChatMessage[] = [
  { role: "user", content: "what time is it? 🕰️" },
  { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "now", arguments: "{}" } }] },
  { role: "tool", tool_call_id: "c1", content: '{"now":"12:00"}' },
  { role: "assistant", content: "" },
  { role: "user", content: "thanks" },
  { role: "assistant", content: "you're welcome" },
];

describe("CompactHistory", () => {
  it("gives back exactly the messages it packed: roles, null and empty contents, tool fields, non-Latin text", () => {
    expect(CompactHistory.from(withTools).messages()).toStrictEqual(withTools);
  });

  it("keeps the on-disk shape { messages } so sessions written before still load", () => {
    const h = CompactHistory.from(withTools);
    const stored: unknown = JSON.parse(JSON.stringify(h));
    expect(stored).toStrictEqual({ messages: withTools });
    expect(reviveSession(stored).messages()).toStrictEqual(withTools);
  });

  it("hands out fresh objects, so a caller changing them cannot change the session", () => {
    const h = CompactHistory.from([{ role: "user", content: "hi" }]);
    const first = h.messages();
    (first[0] as ChatMessage).content = "changed";
    first.push({ role: "assistant", content: "extra" });
    expect(h.messages()).toStrictEqual([{ role: "user", content: "hi" }]);
    expect(h.length).toBe(1);
  });

  it("revives a missing or malformed stored value as an empty history", () => {
    expect(reviveSession(null).messages()).toEqual([]);
    expect(reviveSession({ messages: "nope" }).length).toBe(0);
  });
});

describe("CompactHistory of a plain conversation", () => {
  it("round-trips alternating turns, and a history that breaks the alternation", () => {
    const plain: ChatMessage[] = [
      { role: "user", content: "q0" },
      { role: "assistant", content: "a0" },
      { role: "user", content: "q1" },
    ];
    expect(CompactHistory.from(plain).messages()).toStrictEqual(plain);
    const twoQuestions: ChatMessage[] = [{ role: "user", content: "q0" }, { role: "user", content: "q1" }, { role: "assistant", content: "a" }];
    expect(CompactHistory.from(twoQuestions).messages()).toStrictEqual(twoQuestions);
  });

  it("packs from a start index, as the store does when it prunes", () => {
    const plain: ChatMessage[] = [
      { role: "user", content: "q0" },
      { role: "assistant", content: "a0" },
      { role: "user", content: "q1" },
      { role: "assistant", content: "a1" },
    ];
    expect(CompactHistory.from(plain, 2).messages()).toStrictEqual(plain.slice(2));
    expect(CompactHistory.from(plain, 4).length).toBe(0);
  });
});

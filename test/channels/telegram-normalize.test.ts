import type { Update } from "grammy/types";
import { describe, expect, it } from "vitest";
import { createAccessCheck } from "../../src/channels/telegram/access.js";
import { parseConversationId, parseMessageId } from "../../src/channels/telegram/ids.js";
import { EDITED_NOTICE, EMPTY_MENTION_NOTICE, NON_TEXT_NOTICE, normalizeUpdate } from "../../src/channels/telegram/normalize.js";
import { telegramFixture } from "../support/fake-telegram.js";

const me = { id: 123456789, username: "zepto_test_bot" };
const read = (name: string, message: Record<string, unknown> = {}, mode: "mention" | "all" = "mention") =>
  normalizeUpdate(telegramFixture(name, message) as unknown as Update, me, mode);

describe("normalizeUpdate", () => {
  it("turns a private text message into an InboundMessage with prefixed ids", () => {
    const n = read("private-text");
    expect(n.kind).toBe("message");
    if (n.kind !== "message") return;
    expect(n.message).toMatchObject({
      id: "telegram:4242:11",
      channel: "telegram",
      conversationId: "telegram:4242",
      userId: "telegram:4242",
      sender: { id: "4242", name: "Alice Liddell", isBot: false },
      text: "hello bot",
      isDirect: true,
      mentionsBot: false,
      attachments: [],
    });
    expect(n.from).toEqual({ id: 4242, username: "alice" });
  });

  it("takes group messages only when addressed, and strips the mention", () => {
    expect(read("group-plain")).toMatchObject({ kind: "ignore" });
    expect(read("group-plain", {}, "all")).toMatchObject({ kind: "message", message: { text: "just chatting with friends", isDirect: false } });
    expect(read("group-mention")).toMatchObject({ kind: "message", message: { text: "what is 2+2?", mentionsBot: true, conversationId: "telegram:-1001234567890" } });
    expect(read("group-reply-to-bot")).toMatchObject({ kind: "message", message: { mentionsBot: true, replyToId: "telegram:-1001234567890:5001" } });
    expect(read("group-command")).toMatchObject({ kind: "message", message: { text: "/help@zepto_test_bot" } });
    expect(read("group-command", { text: "/help@other_bot", entities: [{ offset: 0, length: 15, type: "bot_command" }] }, "all")).toMatchObject({ kind: "ignore" });
    expect(read("group-mention", { text: "@ZEPTO_TEST_BOT" })).toMatchObject({ kind: "notice", text: EMPTY_MENTION_NOTICE });
    expect(read("group-mention", { text: "hey @someone_else", entities: [{ offset: 4, length: 13, type: "mention" }] })).toMatchObject({ kind: "ignore" });
    expect(read("group-mention", { text: "hi Zepto", entities: [{ offset: 3, length: 5, type: "text_mention", user: { id: me.id, is_bot: true, first_name: "Z" } }] })).toMatchObject({
      kind: "message",
      message: { mentionsBot: true },
    });
  });

  it("makes each forum topic its own conversation and does not quote the topic root", () => {
    const n = read("forum-topic");
    expect(n).toMatchObject({ kind: "message", message: { id: "telegram:-1009876543210:77", conversationId: "telegram:-1009876543210:70", text: "summarize the topic" } });
    if (n.kind === "message") expect(n.message.replyToId).toBeUndefined();
  });

  it("ignores bots and service messages, and answers what it cannot read", () => {
    expect(read("group-from-bot")).toMatchObject({ kind: "ignore", reason: "sent by a bot" });
    expect(read("group-new-member")).toMatchObject({ kind: "ignore" });
    expect(read("private-sticker")).toMatchObject({ kind: "notice", text: NON_TEXT_NOTICE, target: { conversationId: "telegram:4242", replyToId: "telegram:4242:12" } });
    expect(read("private-voice")).toMatchObject({ kind: "notice", text: NON_TEXT_NOTICE });
    expect(read("private-edited")).toMatchObject({ kind: "notice", text: EDITED_NOTICE });
    expect(read("private-photo-caption")).toMatchObject({
      kind: "message",
      message: { text: "what is in this picture?", attachments: [{ kind: "photo", size: 68213 }] },
    });
    expect(normalizeUpdate({ update_id: 1 } as Update, me, "mention")).toMatchObject({ kind: "ignore" });
  });

  it("ignores forged updates whose message is not shaped like Telegram's", () => {
    const odd: unknown[] = [1, null, "x", [], {}, { message_id: 1 }, { message_id: 1, chat: 5 }, { message_id: 1, chat: { id: "7", type: "private" } }, { message_id: 1, chat: { id: 7, type: "private" }, from: 3 }];
    for (const message of odd) {
      expect(normalizeUpdate({ update_id: 1, message } as unknown as Update, me, "all")).toMatchObject({ kind: "ignore", reason: "malformed message" });
    }
    const junkFields = { message_id: 1, chat: { id: 7, type: "private" }, from: { id: 7, is_bot: false, first_name: 9 }, text: 42, entities: "no", photo: 3, reply_to_message: 1 };
    expect(normalizeUpdate({ update_id: 2, message: junkFields } as unknown as Update, me, "all")).toMatchObject({ kind: "ignore", reason: "service message" });
  });
});

describe("access and ids", () => {
  it("admits listed ids and @usernames, everyone when the list is empty, no one with deny_by_default", () => {
    const check = createAccessCheck([4242, "@Bob", "77"], false);
    expect(check({ id: 4242 })).toBe(true);
    expect(check({ id: 77 })).toBe(true);
    expect(check({ id: 5, username: "bob" })).toBe(true);
    expect(check({ id: 5, username: "carol" })).toBe(false);
    expect(check({ id: 6 })).toBe(false);
    expect(createAccessCheck([], false)({ id: 1 })).toBe(true);
    expect(createAccessCheck([], true)({ id: 1 })).toBe(false);
    expect(createAccessCheck(["4242"], true)({ id: 4242 })).toBe(true);
  });

  it("reads conversation and message ids back", () => {
    expect(parseConversationId("telegram:-100123:7")).toEqual({ chatId: -100123, threadId: 7 });
    expect(parseConversationId("telegram:42")).toEqual({ chatId: 42 });
    expect(parseConversationId("webchat:42")).toBeUndefined();
    expect(parseMessageId("telegram:-100123:99")).toBe(99);
    expect(parseMessageId(undefined)).toBeUndefined();
  });
});

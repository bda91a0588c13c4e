import type { Message, MessageEntity, Update } from "grammy/types";
import type { Attachment, InboundMessage } from "../../messages.js";
import type { TelegramSender } from "./access.js";
import { conversationIdOf, messageIdOf } from "./ids.js";

/** What the bot needs to know about itself to tell whether a group message is for it. */
export interface BotIdentity {
  id: number;
  username: string;
}

/** Where a direct answer (a notice, a refusal) goes. */
export interface NoticeTarget {
  conversationId: string;
  replyToId: string;
}

/** The outcome of reading one update. */
export type Normalized =
  | { kind: "ignore"; reason: string }
  | { kind: "message"; message: InboundMessage; from: TelegramSender }
  | { kind: "notice"; from: TelegramSender; target: NoticeTarget; text: string };

/** Said for a sticker, voice note or photo without a caption. */
export const NON_TEXT_NOTICE = "I can only read text here. Please send your question as a text message (a caption on a photo or file works too).";

/** Said when a message is edited: the answer to the original stands. */
export const EDITED_NOTICE = "I only answer new messages, not edits. Please send the corrected text as a new message.";

/** Said when a group message mentions the bot and nothing else. */
export const EMPTY_MENTION_NOTICE = "Yes? Write your question after the mention, e.g. \"@bot what is the weather like?\".";

/** The update kinds the bot asks Telegram for. */
export const ALLOWED_UPDATES = ["message", "edited_message"] as const;

/**
 * Reads one Telegram update: private chats always count; groups only when the bot is
 * mentioned, replied to or given a command (unless `groupMode` is "all"); forum topics are
 * their own conversations; captions count as text; bots and service messages are ignored.
 */
export function normalizeUpdate(update: Update, me: BotIdentity, groupMode: "mention" | "all"): Normalized {
  const edited = update.edited_message !== undefined;
  if (update.message === undefined && !edited) return { kind: "ignore", reason: "not a message update" };
  const msg = asMessage(update.message ?? update.edited_message);
  if (!msg) return { kind: "ignore", reason: "malformed message" };
  const from = msg.from;
  if (!from) return { kind: "ignore", reason: "no sender (channel post)" };
  if (from.is_bot) return { kind: "ignore", reason: "sent by a bot" };
  const chat = msg.chat;
  if ((chat.type as string) === "channel") return { kind: "ignore", reason: "channel post" };
  const isDirect = chat.type === "private";

  const rawText = typeof msg.text === "string" ? msg.text : typeof msg.caption === "string" ? msg.caption : "";
  const entities = (Array.isArray(msg.entities) ? msg.entities : Array.isArray(msg.caption_entities) ? msg.caption_entities : []).filter(isEntity);
  const command = commandOf(rawText, entities);
  if (command && command.bot !== undefined && command.bot.toLowerCase() !== me.username.toLowerCase()) {
    return { kind: "ignore", reason: "command for another bot" };
  }
  const mentioned = mentionsMe(rawText, entities, me);
  const repliedToMe = isObject(msg.reply_to_message) && isObject(msg.reply_to_message.from) && msg.reply_to_message.from.id === me.id;
  const addressed = isDirect || groupMode === "all" || mentioned || repliedToMe || command !== undefined;
  if (!addressed) return { kind: "ignore", reason: "group message not addressed to the bot" };

  const threadId = chat.type === "supergroup" && msg.is_topic_message && msg.message_thread_id !== undefined ? msg.message_thread_id : undefined;
  const conversationId = conversationIdOf(chat.id, threadId);
  const id = messageIdOf(chat.id, msg.message_id);
  const sender: TelegramSender = { id: from.id, ...(typeof from.username === "string" ? { username: from.username } : {}) };
  const target = { conversationId, replyToId: id };
  if (edited) return { kind: "notice", from: sender, target, text: EDITED_NOTICE };

  const attachments = attachmentsOf(msg);
  const text = stripMention(rawText, me).trim();
  if (text === "") {
    if (attachments.length > 0 || hasOtherContent(msg)) return { kind: "notice", from: sender, target, text: NON_TEXT_NOTICE };
    if (rawText !== "") return { kind: "notice", from: sender, target, text: EMPTY_MENTION_NOTICE };
    return { kind: "ignore", reason: "service message" };
  }
  // In a forum every message replies to the topic's first one: that is not a quote.
  const replyTo = isObject(msg.reply_to_message) && Number.isSafeInteger(msg.reply_to_message.message_id) ? msg.reply_to_message.message_id : undefined;
  const quoted = replyTo !== threadId ? replyTo : undefined;
  const name = [from.first_name, from.last_name].filter((x) => typeof x === "string" && x !== "").join(" ") || sender.username;
  const message: InboundMessage = {
    id,
    channel: "telegram",
    conversationId,
    userId: `telegram:${from.id}`,
    sender: { id: String(from.id), ...(name ? { name } : {}), isBot: false },
    text,
    isDirect,
    mentionsBot: mentioned || repliedToMe,
    ...(quoted !== undefined ? { replyToId: messageIdOf(chat.id, quoted) } : {}),
    attachments,
    receivedAt: Date.now(),
  };
  return { kind: "message", message, from: sender };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The message if it has the shape every later step relies on: Telegram always sends it, but
 * a forged webhook body may not, and it must be ignored rather than crash the handler.
 */
function asMessage(v: unknown): Message | undefined {
  if (!isObject(v) || !Number.isSafeInteger(v.message_id)) return undefined;
  const chat = v.chat;
  if (!isObject(chat) || !Number.isSafeInteger(chat.id) || typeof chat.type !== "string") return undefined;
  if (v.from !== undefined && (!isObject(v.from) || !Number.isSafeInteger(v.from.id))) return undefined;
  if (v.message_thread_id !== undefined && !Number.isSafeInteger(v.message_thread_id)) return undefined;
  return v as unknown as Message;
}

function isEntity(e: unknown): e is MessageEntity {
  return isObject(e) && typeof e.type === "string" && Number.isSafeInteger(e.offset) && Number.isSafeInteger(e.length);
}

function slice(text: string, e: MessageEntity): string {
  return text.slice(e.offset, e.offset + e.length);
}

function commandOf(text: string, entities: MessageEntity[]): { name: string; bot?: string } | undefined {
  const e = entities.find((x) => x.type === "bot_command" && x.offset === 0);
  if (!e) return undefined;
  const [name = "", bot] = slice(text, e).slice(1).split("@");
  return bot === undefined ? { name } : { name, bot };
}

function mentionsMe(text: string, entities: MessageEntity[], me: BotIdentity): boolean {
  return entities.some(
    (e) =>
      (e.type === "mention" && slice(text, e).toLowerCase() === `@${me.username.toLowerCase()}`) ||
      (e.type === "text_mention" && isObject(e.user) && e.user.id === me.id),
  );
}

function stripMention(text: string, me: BotIdentity): string {
  const escaped = me.username.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // Keep "/cmd@bot" whole: the command parser reads that form.
  return text.replace(new RegExp(`(^|[^\\w/])@${escaped}\\b`, "gi"), "$1").replace(/[ \t]{2,}/g, " ");
}

function attachmentsOf(msg: Message): Attachment[] {
  const out: Attachment[] = [];
  const largest = Array.isArray(msg.photo) ? msg.photo.at(-1) : undefined;
  if (largest) out.push({ kind: "photo", ...(largest.file_size !== undefined ? { size: largest.file_size } : {}) });
  const file = (kind: Attachment["kind"], f: { file_name?: string; mime_type?: string; file_size?: number } | undefined): void => {
    if (!f) return;
    out.push({
      kind,
      ...(f.file_name !== undefined ? { name: f.file_name } : {}),
      ...(f.mime_type !== undefined ? { mimeType: f.mime_type } : {}),
      ...(f.file_size !== undefined ? { size: f.file_size } : {}),
    });
  };
  file("voice", msg.voice);
  file("audio", msg.audio);
  file("video", msg.video ?? msg.video_note ?? msg.animation);
  if (!msg.animation) file("document", msg.document);
  if (msg.sticker) out.push({ kind: "sticker", ...(msg.sticker.file_size !== undefined ? { size: msg.sticker.file_size } : {}) });
  return out;
}

/** Content the bot cannot read that is not a file: a location, a contact, a poll, a dice. */
function hasOtherContent(msg: Message): boolean {
  return Boolean(msg.location ?? msg.contact ?? msg.poll ?? msg.dice ?? msg.venue ?? msg.story);
}

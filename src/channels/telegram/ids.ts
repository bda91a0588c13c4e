/** Where a Telegram reply goes: the chat, and the forum topic when there is one. */
export interface TelegramTarget {
  chatId: number;
  threadId?: number;
}

/** `telegram:<chatId>` or, for a forum topic, `telegram:<chatId>:<threadId>`. */
export function conversationIdOf(chatId: number, threadId?: number): string {
  return threadId === undefined ? `telegram:${chatId}` : `telegram:${chatId}:${threadId}`;
}

/** `telegram:<chatId>:<messageId>`: unique and stable, so a redelivered update keeps its id. */
export function messageIdOf(chatId: number, messageId: number): string {
  return `telegram:${chatId}:${messageId}`;
}

/** Reads a conversation id back; undefined when it is not one of ours. */
export function parseConversationId(id: string): TelegramTarget | undefined {
  const m = /^telegram:(-?\d+)(?::(\d+))?$/.exec(id);
  if (!m) return undefined;
  const chatId = Number(m[1]);
  if (!Number.isSafeInteger(chatId)) return undefined;
  return m[2] === undefined ? { chatId } : { chatId, threadId: Number(m[2]) };
}

/** The Telegram message id inside an inbound message id, for quoting it. */
export function parseMessageId(id: string | undefined): number | undefined {
  const m = id === undefined ? null : /^telegram:-?\d+:(\d+)$/.exec(id);
  return m ? Number(m[1]) : undefined;
}

/** Group and supergroup chat ids are negative; private chats carry the user's (positive) id. */
export function isGroupChat(chatId: number): boolean {
  return chatId < 0;
}

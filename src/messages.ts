/** Where a message came from; also the prefix of every id that channel makes. */
export type ChannelId = "telegram" | "discord" | "slack" | "webchat";

/** A file or media item that came with a message; only metadata travels on the bus. */
export interface Attachment {
  kind: "photo" | "voice" | "audio" | "video" | "document" | "sticker" | "other";
  name?: string;
  mimeType?: string;
  size?: number;
}

/** A platform message, normalized by its channel: what the bus carries to an agent. */
export interface InboundMessage {
  /** `"<channel>:<conversation>:<message>"`: unique and stable, so retries dedupe. */
  id: string;
  channel: ChannelId;
  /** Where replies go; thread-aware. */
  conversationId: string;
  /** `"<channel>:<platform user id>"`: the session owner. */
  userId: string;
  sender: { id: string; name?: string; isBot: boolean };
  text: string;
  isDirect: boolean;
  mentionsBot: boolean;
  replyToId?: string;
  attachments: Attachment[];
  /** Epoch milliseconds. */
  receivedAt: number;
}

/** A reply on its way to a channel; `text` is markdown and the channel converts and splits it. */
export interface OutboundMessage {
  conversationId: string;
  text: string;
  replyToId?: string;
  /** The inbound id plus the part number: lets a channel drop a send it already made. */
  idempotencyKey: string;
  /** True when the text tells the user that their message failed. */
  isError?: boolean;
}

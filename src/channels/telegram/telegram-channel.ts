import type { TelegramConfig } from "../../config/schema.js";
import type { Channel } from "../types.js";

/** Options the gateway passes besides `[channels.telegram]`. */
export interface TelegramChannelDeps {
  /** Webhook bodies above this get 413. */
  maxBodyBytes: number;
}

/** Creates the Telegram channel (grammy). */
export function createTelegramChannel(_cfg: TelegramConfig, _deps: TelegramChannelDeps): Channel {
  throw new Error("the Telegram channel is not built yet");
}

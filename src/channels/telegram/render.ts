import { chunkMarkdown } from "../format/chunk-markdown.js";
import { markdownToTelegramHtml, telegramTextLength } from "../format/telegram-html.js";

/** Telegram's limit for one message, counted after entity parsing. */
export const TELEGRAM_MAX_TEXT = 4096;

/** One message to send: the HTML form, and the plain text to fall back on. */
export interface RenderedPart {
  html: string | undefined;
  plain: string;
}

/**
 * Turns a markdown reply into the messages Telegram gets: split at 4096 characters on
 * paragraph or line boundaries (never inside a code block), each converted to HTML. A part
 * whose HTML would run over the limit goes as plain text instead.
 */
export function renderReply(markdown: string, limit = TELEGRAM_MAX_TEXT): RenderedPart[] {
  const chunks = chunkMarkdown(markdown, limit);
  if (chunks.length === 0) return [{ html: undefined, plain: "(empty reply)" }];
  return chunks.map((plain) => {
    const html = markdownToTelegramHtml(plain);
    const fits = html.trim() !== "" && telegramTextLength(html) <= limit;
    return { html: fits ? html : undefined, plain };
  });
}

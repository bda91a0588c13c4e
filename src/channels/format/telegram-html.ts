import { Lexer, type Token, type Tokens } from "marked";

/** Escapes text for Telegram's HTML parse mode (https://core.telegram.org/bots/api#html-style). */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/**
 * Converts markdown (as LLMs write it) to the HTML subset Telegram accepts: every piece of
 * text is escaped and only tags Telegram knows are produced, always balanced. Headings become
 * bold lines, lists get bullets, tables stay monospaced; raw HTML in the input is shown as text.
 */
export function markdownToTelegramHtml(markdown: string): string {
  const tokens = new Lexer({ gfm: true }).lex(markdown);
  return blocks(tokens).replace(/\n{3,}/g, "\n\n").trim();
}

/**
 * How many characters Telegram counts in an HTML message: tags removed, entities decoded.
 * The 4096 limit applies to this length, not to the markup.
 */
export function telegramTextLength(html: string): number {
  return html
    .replace(/<[^>]*>/g, "")
    .replace(/&(?:lt|gt|amp|quot|#\d+|#x[0-9a-f]+);/gi, "x").length;
}

function blocks(tokens: Token[]): string {
  return tokens.map(block).filter((s) => s !== "").join("\n\n");
}

function block(token: Token): string {
  const t = token as Tokens.Generic;
  switch (token.type) {
    case "space":
    case "def":
      return "";
    case "heading":
      return `<b>${inline((token as Tokens.Heading).tokens)}</b>`;
    case "paragraph":
      return inline((token as Tokens.Paragraph).tokens);
    case "code": {
      const code = token as Tokens.Code;
      const lang = /^[\w#+.-]{1,32}$/.test(code.lang ?? "") ? code.lang : undefined;
      const body = escapeHtml(code.text);
      return lang ? `<pre><code class="language-${lang}">${body}</code></pre>` : `<pre>${body}</pre>`;
    }
    case "blockquote":
      return `<blockquote>${blocks((token as Tokens.Blockquote).tokens)}</blockquote>`;
    case "list":
      return list(token as Tokens.List, 0);
    case "hr":
      return "———";
    case "table":
      // Telegram has no tables: keep the source, monospaced, so columns still line up.
      return `<pre>${escapeHtml(token.raw.replace(/\n+$/, ""))}</pre>`;
    case "html":
      return escapeHtml(token.raw.replace(/\n+$/, ""));
    case "text":
      return t.tokens ? inline(t.tokens as Token[]) : escapeHtml(t.text ?? t.raw);
    default:
      return escapeHtml(token.raw.replace(/\n+$/, ""));
  }
}

function list(token: Tokens.List, depth: number): string {
  const start = typeof token.start === "number" ? token.start : 1;
  const indent = "  ".repeat(depth);
  return token.items
    .map((item, i) => {
      const marker = token.ordered ? `${start + i}.` : item.task ? (item.checked ? "☑" : "☐") : "•";
      const parts: string[] = [];
      for (const child of item.tokens) {
        if (child.type === "checkbox") continue;
        if (child.type === "list") parts.push(`\n${list(child as Tokens.List, depth + 1)}`);
        else {
          const text = block(child);
          if (text !== "") parts.push(parts.length > 0 ? `\n${indent}  ${text}` : text);
        }
      }
      return `${indent}${marker} ${parts.join("")}`;
    })
    .join("\n");
}

function inline(tokens: Token[] | undefined): string {
  if (!tokens) return "";
  return tokens.map(inlineToken).join("");
}

function inlineToken(token: Token): string {
  const t = token as Tokens.Generic;
  switch (token.type) {
    case "strong":
      return `<b>${inline((token as Tokens.Strong).tokens)}</b>`;
    case "em":
      return `<i>${inline((token as Tokens.Em).tokens)}</i>`;
    case "del":
      return `<s>${inline((token as Tokens.Del).tokens)}</s>`;
    case "codespan":
      return `<code>${escapeHtml((token as Tokens.Codespan).text)}</code>`;
    case "br":
      return "\n";
    case "link": {
      const link = token as Tokens.Link;
      const text = inline(link.tokens);
      return safeHref(link.href) ? `<a href="${escapeHtml(link.href)}">${text}</a>` : text;
    }
    case "image": {
      const image = token as Tokens.Image;
      const text = escapeHtml(image.text || image.href);
      return safeHref(image.href) ? `<a href="${escapeHtml(image.href)}">${text}</a>` : text;
    }
    case "escape":
      return escapeHtml(t.text ?? "");
    case "text":
      return t.tokens ? inline(t.tokens as Token[]) : escapeHtml(t.text ?? "");
    default:
      // Raw inline HTML and anything unknown: shown as the text the model wrote.
      return escapeHtml(token.raw);
  }
}

/** Telegram rejects the whole message for a link it cannot parse: keep only schemes it takes. */
function safeHref(href: string): boolean {
  return /^(https?:\/\/|tg:\/\/|mailto:)[^\s<>"]+$/i.test(href);
}

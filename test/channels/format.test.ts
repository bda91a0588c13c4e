import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { chunkMarkdown } from "../../src/channels/format/chunk-markdown.js";
import { escapeHtml, markdownToTelegramHtml, telegramTextLength } from "../../src/channels/format/telegram-html.js";

/** True when every fence opened in `md` is closed again. */
function fencesBalanced(md: string): boolean {
  let open: string | undefined;
  for (const line of md.split("\n")) {
    const m = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (!m) continue;
    if (open === undefined) open = m[1];
    else if (/^ {0,3}(`{3,}|~{3,})\s*$/.test(line) && m[1]![0] === open[0] && m[1]!.length >= open.length) open = undefined;
  }
  return open === undefined;
}

/** True when the tags of `html` are balanced and only ones Telegram accepts. */
function tagsBalanced(html: string): boolean {
  const stack: string[] = [];
  for (const m of html.matchAll(/<(\/?)([a-z-]+)[^>]*>/g)) {
    const [, close, name] = m;
    if (!["b", "i", "s", "code", "pre", "a", "blockquote"].includes(name!)) return false;
    if (close) {
      if (stack.pop() !== name) return false;
    } else stack.push(name!);
  }
  return stack.length === 0 && !/<(?![a-z/])/.test(html);
}

describe("chunkMarkdown", () => {
  it("keeps a short text whole", () => {
    expect(chunkMarkdown("hello\n\nworld\n", 4096)).toEqual(["hello\n\nworld"]);
    expect(chunkMarkdown("   \n", 4096)).toEqual([]);
  });

  it("splits on paragraph boundaries and never inside a code block", () => {
    const code = "```ts\n" + Array.from({ length: 80 }, (_, i) => `const line${i} = ${i};`).join("\n") + "\n```";
    const text = ["a".repeat(3000), code, "b".repeat(1000)].join("\n\n");
    expect(text.length).toBeGreaterThan(4096);
    const parts = chunkMarkdown(text, 4096);
    expect(parts).toHaveLength(2);
    expect(parts[0]).toBe("a".repeat(3000));
    expect(parts[1]).toBe(`${code}\n\n${"b".repeat(1000)}`);
    expect(parts.every(fencesBalanced)).toBe(true);
  });

  it("cuts an over-long code block on lines and fences every part", () => {
    const body = Array.from({ length: 300 }, (_, i) => `print(${i})  # ${"x".repeat(20)}`);
    const text = "```python\n" + body.join("\n") + "\n```";
    const parts = chunkMarkdown(text, 1000);
    expect(parts.length).toBeGreaterThan(5);
    for (const p of parts) {
      expect(p.length).toBeLessThanOrEqual(1000);
      expect(p.startsWith("```python\n")).toBe(true);
      expect(p.endsWith("\n```")).toBe(true);
    }
    const rejoined = parts.map((p) => p.slice("```python\n".length, -"\n```".length)).join("\n");
    expect(rejoined).toBe(body.join("\n"));
  });

  it("cuts an over-long line at a space", () => {
    const words = Array.from({ length: 400 }, (_, i) => `word${i}`).join(" ");
    const parts = chunkMarkdown(words, 500);
    expect(parts.every((p) => p.length <= 500)).toBe(true);
    expect(parts.join(" ")).toBe(words);
  });

  it("closes an unclosed fence in every part", () => {
    const parts = chunkMarkdown("```\n" + "line\n".repeat(100), 100);
    expect(parts.every((p) => p.startsWith("```\n") && p.endsWith("\n```"))).toBe(true);
  });

  it("never exceeds the limit and never leaves a fence open (property)", () => {
    const line = fc.oneof(fc.string({ maxLength: 120 }), fc.constantFrom("```", "```js", "~~~", "", "- item", "# head"));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 80 }), fc.integer({ min: 40, max: 400 }), (lines, limit) => {
        const parts = chunkMarkdown(lines.join("\n"), limit);
        for (const p of parts) {
          expect(p.length).toBeLessThanOrEqual(limit);
          // A text short enough to stay whole is passed on untouched, open fence and all.
          if (parts.length > 1) expect(fencesBalanced(p)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("markdownToTelegramHtml", () => {
  it("converts common markdown to Telegram tags", () => {
    expect(markdownToTelegramHtml("**bold** *it* ~~gone~~ `a<b`")).toBe("<b>bold</b> <i>it</i> <s>gone</s> <code>a&lt;b</code>");
    expect(markdownToTelegramHtml("# Title\n\ntext")).toBe("<b>Title</b>\n\ntext");
    expect(markdownToTelegramHtml("```js\nif (a < b && c) {}\n```")).toBe('<pre><code class="language-js">if (a &lt; b &amp;&amp; c) {}</code></pre>');
    expect(markdownToTelegramHtml("- one\n- two\n  - deep")).toBe("• one\n• two\n  • deep");
    expect(markdownToTelegramHtml("3. c\n4. d")).toBe("3. c\n4. d");
    expect(markdownToTelegramHtml("[site](https://example.com/?a=1&b=2)")).toBe('<a href="https://example.com/?a=1&amp;b=2">site</a>');
    expect(markdownToTelegramHtml("> quoted")).toBe("<blockquote>quoted</blockquote>");
  });

  it("escapes raw HTML and refuses unsafe links", () => {
    expect(markdownToTelegramHtml("<script>alert(1)</script> & <b>")).toBe("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;");
    expect(markdownToTelegramHtml("[x](javascript:alert(1))")).toBe("x");
    expect(escapeHtml(`"<&>"`)).toBe("&quot;&lt;&amp;&gt;&quot;");
    expect(telegramTextLength("<b>a&lt;b</b> &amp;")).toBe(5);
  });

  it("always yields balanced tags that Telegram knows (property)", () => {
    const piece = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom("**", "*", "_", "`", "```", "~~", "<b>", "</i>", "&", "[a](http://x)", "[b](", "> ", "- ", "1. ", "# ", "\n", "\n\n", "|a|b|\n|-|-|\n|1|2|"),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), (pieces) => {
        const md = pieces.join("");
        const html = markdownToTelegramHtml(md);
        expect(tagsBalanced(html)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

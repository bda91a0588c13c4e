/**
 * Splits markdown into pieces of at most `limit` characters (UTF-16 code units, as Telegram,
 * Discord and Slack count them): on paragraph boundaries first, then on line boundaries, and
 * never inside a fenced code block. A code block longer than the limit is cut on its lines and
 * every part gets its own opening and closing fence, so each piece renders on its own.
 */
export function chunkMarkdown(text: string, limit: number): string[] {
  if (!Number.isInteger(limit) || limit < 16) throw new RangeError(`chunk limit must be an integer of at least 16, got ${limit}`);
  const trimmed = text.replace(/\s+$/u, "");
  if (trimmed.length <= limit) return trimmed.length > 0 ? [trimmed] : [];
  const units = splitBlocks(trimmed).flatMap((block) => fitBlock(block, limit));
  const chunks: string[] = [];
  let current = "";
  for (const unit of units) {
    const candidate = current === "" ? unit.text : `${current}${unit.sep}${unit.text}`;
    if (candidate.length <= limit) {
      current = candidate;
    } else {
      if (current !== "") chunks.push(current);
      current = unit.text;
    }
  }
  if (current !== "") chunks.push(current);
  return chunks;
}

interface Block {
  kind: "text" | "code";
  lines: string[];
  /** For code: the opening fence line and the fence that closes it. */
  open?: string;
  close?: string;
}

/** A piece that may not be cut further, and what joins it to the piece before. */
interface Unit {
  text: string;
  sep: string;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})(.*)$/;

function splitBlocks(text: string): Block[] {
  const blocks: Block[] = [];
  let para: string[] = [];
  const flush = (): void => {
    if (para.length > 0) blocks.push({ kind: "text", lines: para });
    para = [];
  };
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const fence = FENCE.exec(line);
    // A backtick fence's info string may not contain backticks (CommonMark 4.5).
    if (fence && !(fence[1]?.startsWith("`") && fence[2]?.includes("`"))) {
      flush();
      const marker = fence[1] as string;
      const body: string[] = [];
      let closed = false;
      for (i++; i < lines.length; i++) {
        const l = lines[i] as string;
        const end = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(l);
        if (end && end[1]?.[0] === marker[0] && (end[1]?.length ?? 0) >= marker.length) {
          closed = true;
          break;
        }
        body.push(l);
      }
      // An unclosed fence runs to the end of the text; each piece closes it anyway.
      blocks.push({ kind: "code", lines: body, open: line, close: closed ? (lines[i] as string) : marker });
      continue;
    }
    if (line.trim() === "") flush();
    else para.push(line);
  }
  flush();
  return blocks;
}

function fitBlock(block: Block, limit: number): Unit[] {
  if (block.kind === "code") {
    const open = block.open ?? "```";
    const close = block.close ?? "```";
    const whole = [open, ...block.lines, close].join("\n");
    if (whole.length <= limit) return [{ text: whole, sep: "\n\n" }];
    // Room left for the body once both fences and their newlines are in.
    const room = Math.max(8, limit - open.length - close.length - 2);
    const bodies = packLines(block.lines.flatMap((l) => cutLine(l, room, false)), room);
    return bodies.map((body, i) => ({ text: `${open}\n${body}\n${close}`, sep: i === 0 ? "\n\n" : "\n" }));
  }
  const whole = block.lines.join("\n");
  if (whole.length <= limit) return [{ text: whole, sep: "\n\n" }];
  return block.lines.flatMap((l) => cutLine(l, limit, true)).map((text, i) => ({ text, sep: i === 0 ? "\n\n" : "\n" }));
}

/** Packs lines into as few pieces of at most `room` characters as their order allows. */
function packLines(lines: string[], room: number): string[] {
  const out: string[] = [];
  let current: string | undefined;
  for (const line of lines) {
    if (current === undefined) current = line;
    else if (current.length + 1 + line.length <= room) current += `\n${line}`;
    else {
      out.push(current);
      current = line;
    }
  }
  if (current !== undefined) out.push(current);
  return out;
}

/** Cuts one over-long line: at the last space before the limit for prose, else at the limit. */
function cutLine(line: string, limit: number, atSpace: boolean): string[] {
  const out: string[] = [];
  let rest = line;
  while (rest.length > limit) {
    let at = atSpace ? rest.lastIndexOf(" ", limit) : -1;
    if (at < limit / 2) at = limit;
    // Never cut a surrogate pair in half: the piece would carry an invalid character.
    const code = rest.charCodeAt(at - 1);
    if (code >= 0xd800 && code <= 0xdbff) at--;
    out.push(rest.slice(0, at).replace(/\s+$/u, ""));
    rest = atSpace ? rest.slice(at).replace(/^\s+/u, "") : rest.slice(at);
  }
  if (rest.length > 0 || out.length === 0) out.push(rest);
  return out;
}

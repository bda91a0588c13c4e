import type { ProgressTick } from "./runner.js";

/** A progress display: a redrawn bar on a terminal, a plain line every few seconds otherwise. */
export function createProgress(mode: "auto" | "plain" | "off", out: NodeJS.WriteStream = process.stderr): { tick(t: ProgressTick): void; done(): void } {
  if (mode === "off") return { tick: () => undefined, done: () => undefined };
  const tty = mode === "auto" && out.isTTY === true;
  let lastLine = 0;
  let lastDraw = 0;
  let drawn = false;
  const text = (t: ProgressTick): string =>
    `${t.phase} ${t.elapsedS.toFixed(1)}s sent ${t.sent} answered ${t.answered} rss ${t.rssMb.toFixed(1)} MB`;
  return {
    tick(t) {
      const now = Date.now();
      if (tty) {
        if (now - lastDraw < 200) return;
        lastDraw = now;
        const width = 30;
        const frac = t.durationS > 0 ? Math.min(1, t.elapsedS / t.durationS) : 0;
        const filled = Math.round(frac * width);
        out.write(`\r\x1b[2K[${"#".repeat(filled)}${".".repeat(width - filled)}] ${text(t)}`);
        drawn = true;
      } else if (now - lastLine >= 5_000) {
        lastLine = now;
        out.write(`bench: ${text(t)}\n`);
      }
    },
    done() {
      if (tty && drawn) out.write("\r\x1b[2K");
    },
  };
}

import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { messageId } from "../src/channels/webchat/webchat-channel.js";
import type { InboundMessage } from "../src/messages.js";
import { MessageJournal } from "../src/storage/journal.js";
import { openSyncSqlite } from "../src/storage/sync-sqlite.js";
import { numberFlag } from "./script-args.js";

/**
 * What a journal commit costs with random message ids against the web chat's time-ordered
 * ones, on the real journal (better-sqlite3, WAL): `node dist/bench/journal-ids.js [--rows N]
 * [--messages M]`. The journal first holds N delivered rows (it keeps a day of them), then
 * takes M messages, five accepted and five answered in each commit, as under load.
 */
async function main(): Promise<void> {
  const rows = numberFlag("--rows", 200_000);
  const messages = numberFlag("--messages", 100_000);
  const schemes: [string, () => string][] = [
    ["random (webchat:<uuid>)", () => `webchat:${randomUUID()}`],
    ["time-ordered (messageId)", messageId],
  ];
  const dir = mkdtempSync(join(tmpdir(), "zeptoclaw-journal-ids-"));
  try {
    for (const round of [1, 2]) {
      for (const [name, id] of schemes) {
        const db = openSyncSqlite(join(dir, `${round}-${name.split(" ")[0]}.sqlite`));
        const journal = MessageJournal.open(db.db, pino({ level: "silent" }));
        const message = (): InboundMessage => {
          const conversationId = "webchat:bench-user";
          return { id: id(), channel: "webchat", conversationId, userId: conversationId, sender: { id: "bench-user", isBot: false }, text: "hello there, how are you today?", isDirect: true, mentionsBot: true, attachments: [], receivedAt: Date.now() };
        };
        const fill = db.db.prepare("INSERT INTO journal (id, user_id, conversation_id, state, reply, updated_at) VALUES (?, 'u', 'c', 2, 'an answer', ?)");
        db.db.transaction(() => {
          for (let i = 0; i < rows; i++) fill.run(id(), Date.now());
        })();
        db.db.pragma("wal_checkpoint(TRUNCATE)");
        let answering: InboundMessage[] = [];
        const started = process.hrtime.bigint();
        for (let i = 0; i < messages; i += 5) {
          const batch = [message(), message(), message(), message(), message()];
          await Promise.all([...batch.map((m) => journal.accept(m)), ...answering.map((m) => journal.finish(m.id, "an answer", false, true))]);
          answering = batch;
          if (i % 5_000 === 0) db.db.pragma("wal_checkpoint(PASSIVE)");
        }
        const us = Number(process.hrtime.bigint() - started) / 1e3 / messages;
        console.log(`round ${round}  ${name.padEnd(26)} ${rows} rows kept: ${us.toFixed(1)} µs a message`);
        db.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();

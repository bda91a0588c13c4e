import type { BenchReport } from "./runner.js";

const fmt = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

const perMsg = (ms: unknown): string => (typeof ms === "number" ? ` (${ms.toFixed(3)} ms a message)` : "");

/** The cpu line: the gateway's seconds, and beside them the load generator's over the same run. */
function cpuLine(r: BenchReport): string {
  const d = r.details;
  if (d.load_process === undefined) return `${fmt(r.cpu_s)} s${perMsg(d.cpu_ms_per_msg)}`;
  return `${fmt(r.cpu_s)} s gateway${perMsg(d.cpu_ms_per_msg)}, ${fmt(d.load_cpu_s as number)} s ${String(d.load_process)}${perMsg(d.load_cpu_ms_per_msg)}`;
}

/** The human-readable report of one run: every figure the JSON holds at the top level. */
export function formatReport(r: BenchReport): string {
  const d = r.details;
  const lines = [
    `zeptoclaw bench: path ${r.path}${r.bare_gateway ? " (BARE STAND-IN, not the gateway: only the HTTP legs, a floor)" : ""}, ${r.users} users, ${r.duration_s} s, rate ${r.rate === "max" ? "max (closed loop)" : `${r.rate} msg/s per user (open loop)`}, LLM latency ${r.llm_latency_ms} ms${r.gateway_node_args.length > 0 ? `; gateway run with node ${r.gateway_node_args.join(" ")}` : ""}`,
    `  machine       ${r.machine.cpus} cpus, ${r.machine.cpu_model}, node ${r.machine.node}`,
    `  sent          ${r.sent}`,
    `  answered      ${r.answered}${d.error_replies ? ` (${String(d.error_replies)} of them error replies)` : ""}`,
    `  lost          ${r.lost}${d.rejected ? ` (${String(d.rejected)} refused by the gateway)` : ""}`,
    `  duplicated    ${r.duplicated}`,
    `  throughput    ${fmt(r.throughput_msg_s)} msg/s answered (over ${String(d.measured_s)} s, first send to last reply)`,
    `  latency       p50 ${fmt(r.latency_ms.p50)} ms  p90 ${fmt(r.latency_ms.p90)} ms  p99 ${fmt(r.latency_ms.p99)} ms  max ${fmt(r.latency_ms.max)} ms  (accept to reply delivered)`,
    `  overhead      p50 ${fmt(r.overhead_ms.p50)} ms  p99 ${fmt(r.overhead_ms.p99)} ms  (latency minus LLM time)`,
    `  rss           start ${fmt(r.rss_mb.start)} MB  peak ${fmt(r.rss_mb.peak)} MB  end ${fmt(r.rss_mb.end)} MB  (${d.gateway_process === "child" ? "gateway child process" : "this process, load generator included"})`,
    `  per user      ${r.per_user_kb === null ? "n/a (add --memory-profile or --sweep)" : `${fmt(r.per_user_kb)} KB (slope of RSS over active users${d.memory_fit_r2 !== undefined ? `, r² ${String(d.memory_fit_r2)}` : ""})`}`,
    `  cpu           ${cpuLine(r)}`,
  ];
  const calls = d.bot_api_calls as Record<string, number> | undefined;
  if (calls) {
    const shown = Object.entries(calls).filter(([m]) => !["getMe", "setMyCommands", "deleteWebhook"].includes(m));
    lines.push(`  telegram      ${String(d.telegram_mode)}; Bot API calls ${shown.map(([m, n]) => `${m} ${n}`).join(", ")}; previews ${String(d.preview_messages)}; rate limits ${String(d.telegram_rate_limits)}; bot token in gateway logs ${String(d.bot_token_in_gateway_logs)}`);
    if (d.unconfirmed_updates) lines.push(`  not taken     ${String(d.unconfirmed_updates)} updates neither confirmed through getUpdates nor answered when the run ended`);
    const odd = d.unexpected_replies as string[] | undefined;
    if (odd) lines.push(`  odd replies   ${odd.map((t) => JSON.stringify(t)).join(", ")}`);
  }
  const warm = d.warmup as { seconds: number; sent: number; answered: number } | undefined;
  if (warm) lines.push(`  warm-up       ${warm.seconds} s before the measured run: ${warm.sent} sent, ${warm.answered} answered (in the totals above; not in throughput, latency or cpu)`);
  const lag = d.send_lag_ms as { p50: number; p99: number } | undefined;
  if (lag) lines.push(`  send lag      p50 ${fmt(lag.p50)} ms  p99 ${fmt(lag.p99)} ms  (open-loop schedule vs actual send)`);
  const ramp = d.memory_ramp as { users: number; rss_mb: number; heap_mb?: number }[] | undefined;
  if (ramp) {
    const counts = d.memory_ramp_counts as { sent: number; answered: number } | undefined;
    const answered = counts ? `; ${counts.sent} sent, ${counts.answered} answered (in the totals above)` : "";
    lines.push(`  memory ramp   ${ramp.map((p) => `${p.users}u:${fmt(p.rss_mb)}MB`).join("  ")}${answered}`);
  }
  return `${lines.join("\n")}\n`;
}

// Live charts for /dashboard: polls /dashboard/data once a second (cumulative counters read from
// the Prometheus registry) and plots rates and windowed percentiles from the differences.
"use strict";
(function () {
  const POLL_MS = 1000;
  const KEEP = 300; // five minutes of points
  const P99_WINDOW = 10; // samples

  const samples = [];
  const cols = { t: [], inRate: [], outRate: [], p99Reply: [], p99Llm: [], depth: [], users: [], llmErr: [], retries: [], rss: [] };

  const $ = (id) => document.getElementById(id);
  const status = $("status");

  // Estimates a quantile from two cumulative bucket readings, as Prometheus' histogram_quantile does.
  function quantile(q, now, before) {
    const le = now.le;
    const counts = now.counts.map((c, i) => c - ((before && before.counts[i]) || 0));
    const total = counts[counts.length - 1] || 0;
    if (total <= 0) return null;
    const rank = q * total;
    for (let i = 0; i < counts.length; i++) {
      if (counts[i] >= rank) {
        const upper = le[i];
        const lower = i === 0 ? 0 : le[i - 1];
        if (upper < 0) return lower * 1000; // the open +Inf bucket: the last bound is all we know
        const below = i === 0 ? 0 : counts[i - 1];
        const inBucket = counts[i] - below;
        const frac = inBucket > 0 ? (rank - below) / inBucket : 1;
        return (lower + (upper - lower) * frac) * 1000;
      }
    }
    return null;
  }

  function rate(key, now, prev) {
    if (!prev) return null;
    const dt = (now.at - prev.at) / 1000;
    return dt > 0 ? Math.max(0, now[key] - prev[key]) / dt : null;
  }

  function chart(id, series, yLabel) {
    const el = $(id);
    const opts = {
      width: Math.max(300, el.clientWidth - 10),
      height: 200,
      series: [{}].concat(series.map((s) => ({ label: s[0], stroke: s[1], width: 2, spanGaps: false }))),
      axes: [{}, { label: yLabel, size: 60 }],
      scales: { x: { time: true } },
      legend: { live: true },
    };
    const data = [cols.t].concat(series.map((s) => cols[s[2]]));
    const u = new uPlot(opts, data, el);
    return { u, data, el };
  }

  const charts = [
    chart("chart-throughput", [["in", "#3b6fd8", "inRate"], ["out", "#2a9d5c", "outRate"]], "msg/s"),
    chart("chart-latency", [["reply p99", "#d8873b", "p99Reply"], ["LLM p99", "#8a3bd8", "p99Llm"]], "ms"),
    chart("chart-depth", [["bus depth", "#3b6fd8", "depth"], ["active users", "#2a9d5c", "users"]], "count"),
    chart("chart-errors", [["LLM errors", "#d8453b", "llmErr"], ["retries", "#d8b13b", "retries"]], "per s"),
    chart("chart-memory", [["RSS", "#6b6b6b", "rss"]], "MB"),
  ];

  // Read-only handle for tests and the curious: what each chart is drawing.
  window.zeptoclawDashboard = { charts: charts.map((c) => c.u) };

  window.addEventListener("resize", () => {
    for (const c of charts) c.u.setSize({ width: Math.max(300, c.el.clientWidth - 10), height: 200 });
  });

  function fmtMs(ms) {
    if (ms === null) return "-";
    return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  }

  function push(s) {
    const prev = samples[samples.length - 1];
    const old = samples[Math.max(0, samples.length - P99_WINDOW)];
    samples.push(s);
    if (samples.length > KEEP + 1) samples.shift();
    const row = {
      t: s.at / 1000,
      inRate: rate("messagesIn", s, prev),
      outRate: rate("messagesOut", s, prev),
      p99Reply: quantile(0.99, s.replyLatency, old && old.replyLatency),
      p99Llm: quantile(0.99, s.llmLatency, old && old.llmLatency),
      depth: s.busDepth,
      users: s.activeUsers,
      llmErr: rate("llmErrors", s, prev),
      retries: rate("retries", s, prev),
      rss: s.rssBytes / 1048576,
    };
    for (const k of Object.keys(cols)) {
      cols[k].push(row[k]);
      if (cols[k].length > KEEP) cols[k].shift();
    }
    for (const c of charts) c.u.setData(c.data);

    $("fig-rate").textContent = row.outRate === null ? "-" : row.outRate.toFixed(1);
    $("fig-in").textContent = String(s.messagesIn);
    $("fig-out").textContent = String(s.messagesOut);
    $("fig-p99").textContent = fmtMs(row.p99Reply);
    $("fig-depth").textContent = String(s.busDepth);
    $("fig-users").textContent = String(s.activeUsers);
    $("fig-llm-errors").textContent = String(s.llmErrors);
    $("fig-rss").textContent = row.rss.toFixed(1) + " MB";
    document.body.dataset.samples = String(samples.length);
  }

  async function poll() {
    try {
      const res = await fetch("/dashboard/data", { cache: "no-store", credentials: "same-origin" });
      if (res.status === 401) {
        // The login cookie expired or the token changed: back to the login form.
        window.location.assign("/dashboard");
        return;
      }
      if (!res.ok) throw new Error("HTTP " + res.status);
      push(await res.json());
      status.textContent = "live, updated " + new Date().toLocaleTimeString();
      status.className = "";
    } catch (err) {
      status.textContent = "cannot reach the gateway: " + err.message;
      status.className = "down";
    }
    setTimeout(poll, POLL_MS);
  }
  void poll();
})();

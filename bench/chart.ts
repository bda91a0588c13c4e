import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

/** One point of a sweep, as the chart draws it. */
export interface SweepPoint {
  users: number;
  throughput_msg_s: number;
  p99_ms: number;
  rss_mb: number;
}

function panel(field: keyof SweepPoint, title: string, color: string): Record<string, unknown> {
  return {
    width: 240,
    height: 180,
    title,
    mark: { type: "line", point: true, color },
    encoding: {
      x: { field: "users", type: "quantitative", scale: { type: "log" }, title: "simulated users" },
      y: { field, type: "quantitative", title, scale: { zero: true } },
      tooltip: [{ field: "users" }, { field }],
    },
  };
}

/** Renders the sweep as an SVG: throughput, p99 latency and peak RSS against users (vega-lite, headless). */
export async function sweepChartSvg(points: SweepPoint[], subtitle: string): Promise<string> {
  const spec = {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: { text: "zeptoclaw bench sweep", subtitle },
    data: { values: points },
    hconcat: [
      panel("throughput_msg_s", "answered msg/s", "#1f77b4"),
      panel("p99_ms", "p99 latency (ms)", "#d62728"),
      panel("rss_mb", "peak RSS (MB)", "#2ca02c"),
    ],
  } as unknown as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

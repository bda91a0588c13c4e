import type { ToolSpec } from "./llm-types.js";

/** A tool the agent can run for the LLM. */
export interface Tool {
  spec: ToolSpec;
  run(args: Record<string, unknown>): Promise<string>;
}

/** The built-in tools: small, safe and free of network access. */
export function builtinTools(): Tool[] {
  return [
    {
      spec: {
        type: "function",
        function: {
          name: "current_time",
          description: "The current date and time, in ISO 8601 (UTC) and in the given IANA time zone.",
          parameters: {
            type: "object",
            properties: { time_zone: { type: "string", description: "IANA zone such as Europe/Berlin" } },
            additionalProperties: false,
          },
        },
      },
      async run(args) {
        const now = new Date();
        const zone = typeof args.time_zone === "string" ? args.time_zone : "UTC";
        try {
          return JSON.stringify({ utc: now.toISOString(), local: now.toLocaleString("en-GB", { timeZone: zone }), time_zone: zone });
        } catch {
          return JSON.stringify({ utc: now.toISOString(), error: `unknown time zone ${zone}` });
        }
      },
    },
  ];
}

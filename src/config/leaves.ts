import type * as z from "zod/mini";

/** The kind of value a config key holds, as far as parsing an environment variable needs. */
export type LeafKind = "string" | "number" | "boolean" | "array";

/** One settable key of the schema, e.g. `{ path: "llm.base_url", kind: "string" }`. */
export interface Leaf {
  path: string;
  kind: LeafKind;
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodMiniType>;
  innerType?: z.ZodMiniType;
  in?: z.ZodMiniType;
}

function defOf(schema: z.ZodMiniType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

function unwrap(schema: z.ZodMiniType): z.ZodMiniType {
  let s = schema;
  for (let i = 0; i < 10; i++) {
    const def = defOf(s);
    if ((def.type === "default" || def.type === "prefault" || def.type === "optional" || def.type === "nullable") && def.innerType) {
      s = def.innerType;
    } else if (def.type === "pipe" && def.in) {
      s = def.in;
    } else {
      break;
    }
  }
  return s;
}

/** Lists every leaf key of an object schema with the kind of value it takes. */
export function listLeaves(schema: z.ZodMiniType, prefix = ""): Leaf[] {
  const inner = unwrap(schema);
  const def = defOf(inner);
  if (def.type === "object" && def.shape) {
    const out: Leaf[] = [];
    for (const [key, child] of Object.entries(def.shape)) {
      out.push(...listLeaves(child, prefix ? `${prefix}.${key}` : key));
    }
    return out;
  }
  const kind: LeafKind =
    def.type === "number" || def.type === "int"
      ? "number"
      : def.type === "boolean"
        ? "boolean"
        : def.type === "array"
          ? "array"
          : "string";
  return [{ path: prefix, kind }];
}

/** `--name N` from the command line of a bench script, or `fallback` when absent. */
export function numberFlag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

/** `zeptoclaw bench`: not built yet. */
export async function benchCommand(_args: string[]): Promise<number> {
  process.stderr.write("zeptoclaw bench: not available in this build yet\n");
  return 2;
}

// When the sources benchmark's feeds produce their items: shared by the feed server process and
// the scenario, which counts the items produced in its measurement window from the same formula.

/** Where in the period feed `i` produces its items (golden-ratio spread: evenly, not in step). */
export const phaseOf = (i: number, periodMs: number) => ((i * 0.6180339887498949) % 1) * periodMs;

/** Items feeds 0…count−1 produce with a production time in [from, to). */
export function expectedItems(count: number, epoch0: number, periodMs: number, from: number, to: number): number {
  let total = 0;
  for (let i = 0; i < count; i++) {
    const base = epoch0 + phaseOf(i, periodMs);
    const first = Math.max(0, Math.ceil((from - base) / periodMs));
    const last = Math.ceil((to - base) / periodMs) - 1; // newest k with base + k·period < to
    if (last >= first) total += last - first + 1;
  }
  return total;
}

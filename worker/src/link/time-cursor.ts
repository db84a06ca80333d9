/** The smallest cursor minted at `ms` on any node: every cursor minted later sorts after it. */
export function timeCursor(ms: number): string {
  return `${Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0')}0000-0`;
}

/**
 * Whether a source as `/v1/status` lists it is pulled by the relay `nodeId`: the relay is its
 * owner (a paused source is `paused` on every relay, not `standby`, yet only its owner would pull
 * it); listed by a relay that names no owner, any state but `standby`. The status card and the
 * page count a relay's sources with it.
 */
export const ownsSource = (source: { owner?: unknown; state?: unknown }, nodeId: unknown): boolean =>
  source.owner !== undefined ? source.owner === nodeId : source.state !== 'standby';

// Summarise a V8 `.cpuprofile` (from `npm run bench -- <scenario> --cpu-prof`): the functions with
// the most self time, self time grouped by where the code lives (node internals, each npm package,
// each directory of ours, GC, idle), and the functions with the most inclusive time.
//
//   node test/bench/profile.ts <file.cpuprofile | directory (newest profile in it)> [--top N]
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Row {
  name: string;
  ms: number;
  /** Share of busy time (everything but idle). */
  share: number;
}

export interface ProfileSummary {
  wallMs: number;
  busyMs: number;
  idleMs: number;
  self: Row[];
  groups: Row[];
  inclusive: Row[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** Where a function lives: a node internal, an npm package, a directory of ours, or a V8 pseudo-frame. */
export function groupOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (SPECIAL.has(functionName)) return functionName;
  if (url === '') return '(native / V8 builtins)';
  if (url.startsWith('node:')) return 'node internals';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return `npm: ${pkg[1]}`;
  const ours = /\/(relay-node|shared|worker|test)\/(?:src\/)?([^/]+)\//.exec(url);
  if (ours) return `ours: ${ours[1]}/${ours[2]}`;
  const file = /\/(relay-node|shared|worker|test)\/(?:src\/)?([^/]+)$/.exec(url);
  if (file) return `ours: ${file[1]}/${file[2]}`;
  return url;
}

const label = (frame: CallFrame): string => {
  if (SPECIAL.has(frame.functionName)) return frame.functionName;
  const file = frame.url.replace(/^.*\/node_modules\//, '').replace(/^.*\/(relay-node|shared|worker|test)\//, '$1/');
  return `${frame.functionName || '(anonymous)'} ${file || '(native)'}:${frame.lineNumber + 1}`;
};

export function summarise(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const selfById = new Map<number, number>();
  // timeDeltas[i] is the time before sample i; attribute it to that sample's node.
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    selfById.set(id, (selfById.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
  const self = new Map<string, number>();
  const groups = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let idleMs = 0;
  let totalMs = 0;
  for (const [id, ms] of selfById) {
    const node = byId.get(id);
    if (!node) continue;
    totalMs += ms;
    if (node.callFrame.functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    const name = label(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + ms);
    const group = groupOf(node.callFrame);
    groups.set(group, (groups.get(group) ?? 0) + ms);
    // Inclusive: each distinct function on the stack once.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame || frame.functionName === '(root)') continue;
      const key = label(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + ms);
    }
  }
  const busyMs = totalMs - idleMs;
  const rows = (map: Map<string, number>, n: number): Row[] =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({ name, ms, share: busyMs > 0 ? ms / busyMs : 0 }));
  return {
    wallMs: (profile.endTime - profile.startTime) / 1000,
    busyMs,
    idleMs,
    self: rows(self, top),
    groups: rows(groups, Number.POSITIVE_INFINITY),
    inclusive: rows(inclusive, top),
  };
}

export function formatSummary(summary: ProfileSummary): string {
  const table = (title: string, rows: Row[]) => [
    '',
    `${title}`,
    ...rows.map((r) => `  ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`),
  ];
  return [
    `wall ${summary.wallMs.toFixed(0)} ms, busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms (shares below are of busy time)`,
    ...table('top self time by function:', summary.self),
    ...table('self time by where the code lives:', summary.groups),
    ...table('top inclusive time (function and everything it calls):', summary.inclusive),
  ].join('\n');
}

async function newestProfile(path: string): Promise<string> {
  if (!(await stat(path)).isDirectory()) return path;
  const files = (await readdir(path)).filter((f) => f.endsWith('.cpuprofile'));
  const dated = await Promise.all(files.map(async (f) => ({ f, t: (await stat(join(path, f))).mtimeMs })));
  const newest = dated.sort((a, b) => b.t - a.t)[0];
  if (!newest) throw new Error(`no .cpuprofile in ${path}`);
  return join(path, newest.f);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string' } }, allowPositionals: true });
  const [path] = positionals;
  if (!path) {
    process.stderr.write('usage: node test/bench/profile.ts <file.cpuprofile | directory> [--top N]\n');
    process.exit(2);
  }
  const file = await newestProfile(path);
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  process.stdout.write(`${file}\n${formatSummary(summarise(profile, Number(values.top ?? 25)))}\n`);
}

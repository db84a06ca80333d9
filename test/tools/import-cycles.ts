import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Fails (exit 1) when any TypeScript file in the workspaces imports itself through a chain of
 * imports. Type-only imports count: they tie modules together just as much for a reader, and a
 * config module importing a Durable Object class to type a binding is how the worker's eight-file
 * cycle began. Imports of `@anode/<package>` are resolved to the package's files, so cycles across
 * packages are found too. Run by `npm run check`.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SCAN = ['shared', 'client', 'relay-node', 'worker', 'test'];
const SKIP = new Set(['node_modules', 'dist', '.turbo']);
const PACKAGES: Record<string, string> = {
  '@anode/shared': 'shared/src/index.ts',
  '@anode/client': 'client/src/index.ts',
};
/**
 * Cycles that predate this check, in code other work owns; each is reported but tolerated until
 * fixed (then the check asks for its entry to be deleted). Anything not listed fails.
 */
const KNOWN: readonly string[][] = [
  // type-only: a source kind's `parse` returns a definition, a definition names its kind
  ['relay-node/src/sources/definition.ts', 'relay-node/src/sources/source-kind.ts'],
  // the mesh bench runs the saturation search, which reuses the mesh bench's helpers
  ['test/bench/mesh-saturation.ts', 'test/bench/mesh.ts'],
];
const IMPORT =
  /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return SKIP.has(entry.name) ? [] : sourceFiles(path);
      return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
    }),
  );
  return nested.flat();
}

function target(from: string, specifier: string, files: Set<string>): string | undefined {
  let path: string | undefined;
  if (specifier.startsWith('.')) path = resolve(dirname(from), specifier);
  else if (PACKAGES[specifier]) path = join(ROOT, PACKAGES[specifier]);
  else if (specifier.startsWith('@anode/relay-node/')) path = join(ROOT, 'relay-node', specifier.slice(18));
  if (path === undefined) return undefined;
  for (const candidate of [path, `${path}.ts`, join(path, 'index.ts')]) if (files.has(candidate)) return candidate;
  return undefined;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
export function findCycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (node: string) => {
    index.set(node, counter);
    low.set(node, counter++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) as number, low.get(next) as number));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node) as number, index.get(next) as number));
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop() as string;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || graph.get(node)?.includes(node)) cycles.push(component.sort());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return cycles;
}

async function main(): Promise<void> {
  const files = (await Promise.all(SCAN.map((dir) => sourceFiles(join(ROOT, dir))))).flat();
  const all = new Set(files);
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    const edges = new Set<string>();
    for (const match of text.matchAll(IMPORT)) {
      const to = target(file, match[1] ?? match[2] ?? '', all);
      if (to) edges.add(to);
    }
    graph.set(file, [...edges]);
  }
  const cycles = findCycles(graph).map((cycle) => cycle.map((f) => relative(ROOT, f)));
  const key = (cycle: readonly string[]) => [...cycle].sort().join('\n');
  const known = new Set(KNOWN.map(key));
  const found = new Set(cycles.map(key));
  const fresh = cycles.filter((cycle) => !known.has(key(cycle)));
  const fixed = KNOWN.filter((cycle) => !found.has(key(cycle)));
  for (const cycle of fresh) console.error(`import cycle of ${cycle.length} files:\n  ${cycle.join('\n  ')}`);
  for (const cycle of fixed) console.error(`no longer a cycle: delete its KNOWN entry\n  ${cycle.join('\n  ')}`);
  if (fresh.length > 0 || fixed.length > 0) process.exit(1);
  console.log(`import-cycles: no new cycles in ${files.length} files (${cycles.length} known, listed in KNOWN)`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();

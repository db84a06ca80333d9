// Resolves Apache Cassandra's server jars from Maven Central into a cache folder.
// There is no Cassandra package or download mirror we can rely on, but Maven Central
// holds `cassandra-all` with its whole dependency tree, and `java -cp lib/*` is all
// the real launcher does with them.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// Newest 5.0.x on Maven Central when this was written; 5.0 runs on Java 11 and 17.
export const DEFAULT_CASSANDRA_VERSION = '5.0.9';

const POM = join(dirname(fileURLToPath(import.meta.url)), 'pom.xml');

export type CassandraJars = { version: string; libDir: string; jammJar: string };

export type ResolveJarsOptions = {
  version?: string;
  cacheDir?: string;
  log?: (line: string) => void;
};

export function defaultCacheDir(version: string): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'anode', `cassandra-${version}`);
}

export async function resolveCassandraJars(options: ResolveJarsOptions = {}): Promise<CassandraJars> {
  const version = options.version ?? process.env.ANODE_CASSANDRA_VERSION ?? DEFAULT_CASSANDRA_VERSION;
  const cacheDir = options.cacheDir ?? process.env.ANODE_CASSANDRA_CACHE ?? defaultCacheDir(version);
  const log = options.log ?? (() => {});
  const libDir = join(cacheDir, 'lib');
  // lib/ only ever appears through an atomic rename of a complete download, so its
  // existence (with the main jar in it) means "ready" even when tests race each other.
  if (!existsSync(join(libDir, `cassandra-all-${version}.jar`))) {
    await downloadJars(version, cacheDir, libDir, log);
  }
  const jamm = readdirSync(libDir).find((name) => /^jamm-.*\.jar$/.test(name));
  if (!jamm) throw new Error(`no jamm-*.jar in ${libDir}; delete that folder to re-resolve`);
  return { version, libDir, jammJar: join(libDir, jamm) };
}

async function downloadJars(version: string, cacheDir: string, libDir: string, log: (line: string) => void) {
  mkdirSync(cacheDir, { recursive: true });
  const partial = join(cacheDir, `lib.partial-${process.pid}-${Date.now()}`);
  const started = Date.now();
  log(`resolving Cassandra ${version} jars from Maven Central (first run only, ~tens of MB)…`);
  const ticker = setInterval(() => log(`  still resolving… ${Math.round((Date.now() - started) / 1000)} s`), 10_000);
  try {
    await runMaven([
      '-B',
      '-q',
      '-f',
      POM,
      `-Dcassandra.version=${version}`,
      'dependency:copy-dependencies',
      `-DoutputDirectory=${partial}`,
      // runtime scope leaves out cassandra-parent's system-scoped ${jmc5.path} entries.
      '-DincludeScope=runtime',
    ]);
    if (!existsSync(join(partial, `cassandra-all-${version}.jar`))) {
      throw new Error(`Maven finished but cassandra-all-${version}.jar is missing from ${partial}`);
    }
    try {
      renameSync(partial, libDir);
    } catch (error) {
      // Another process finished first: its copy is as good as ours.
      if (!existsSync(libDir)) throw error;
    }
  } finally {
    clearInterval(ticker);
    rmSync(partial, { recursive: true, force: true });
  }
  const count = readdirSync(libDir).length;
  log(`resolved ${count} jars into ${libDir} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

function runMaven(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.env.MVN ?? 'mvn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (error) =>
      reject(new Error(`cannot run Maven (mvn): ${error.message}. Install Maven, or set MVN=/path/to/mvn`)),
    );
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`mvn exited with code ${code} while resolving Cassandra jars:\n${output.trim()}`));
    });
  });
}

import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { xsalsa20 } from '@anode/relay-node/src/mesh/pnet/xsalsa20.ts';

/**
 * Micro-benchmark of the private-network cipher: our XSalsa20 against the WASM one @libp2p/pnet
 * used (the `xsalsa20` package, still installed as @libp2p/pnet's dependency for the interop
 * test). Rounds alternate between the two so machine noise hits both; prints medians in MB/s.
 * `node test/bench/pnet-cipher.ts [MB per run]`
 */
type Xor = { update(input: Uint8Array): Uint8Array };
const require = createRequire(import.meta.resolve('@libp2p/pnet'));
const wasm = require('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => Xor;

const key = randomBytes(32);
const total = Number(process.argv[2] ?? 32) * 2 ** 20;
const ROUNDS = 7;
const median = (values: number[]) => values.sort((x, y) => x - y)[values.length >> 1]!;

function throughput(cipher: Xor, chunk: Uint8Array): number {
  const started = process.hrtime.bigint();
  for (let done = 0; done < total; done += chunk.length) cipher.update(chunk);
  return total / 2 ** 20 / (Number(process.hrtime.bigint() - started) / 1e9);
}

const rows: string[] = [];
for (const size of [64, 1024, 16 * 1024, 64 * 1024]) {
  const chunk = randomBytes(size);
  const [ours, theirs] = [xsalsa20(key, randomBytes(24)), wasm(randomBytes(24), key)];
  throughput(ours, chunk); // warm up both
  throughput(theirs, chunk);
  const results = { ours: [] as number[], wasm: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    results.ours.push(throughput(ours, chunk));
    results.wasm.push(throughput(theirs, chunk));
  }
  const [a, b] = [median(results.ours), median(results.wasm)];
  rows.push(
    `${String(size).padStart(6)} B chunks: ours ${a.toFixed(0)} MB/s, wasm ${b.toFixed(0)} MB/s (x${(a / b).toFixed(2)})`,
  );
}
process.stdout.write(`xsalsa20, median of ${ROUNDS} alternating runs of ${total / 2 ** 20} MB\n${rows.join('\n')}\n`);

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { messageStoreCompliance } from '../message-store.compliance.ts';
import { createSqliteStore } from './sqlite-store.ts';

messageStoreCompliance(
  'embedded (SQLite)',
  async () => {
    let dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
    return {
      async open(retention, options) {
        if (!options?.reopen) {
          await rm(dir, { recursive: true, force: true });
          dir = await mkdtemp(join(tmpdir(), 'anode-sqlite-'));
        }
        return createSqliteStore({ dataDir: dir, retention });
      },
      async cleanup() {
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  { countRetention: true, ageRetention: true },
);

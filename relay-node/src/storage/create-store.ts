import type { MessageStore } from '@anode/shared';
import type { RelayConfig } from '../config.ts';
import { createSqliteStore } from './embedded/sqlite-store.ts';

/** The configured MessageStore adapter. */
export function createStore(config: RelayConfig): MessageStore {
  const retention = { maxAgeMs: config.retention_max_age_ms, maxMessages: config.retention_max_messages };
  switch (config.store) {
    case 'embedded':
      return createSqliteStore({ dataDir: config.data_dir, retention, fsync: config.store_fsync });
  }
}

// Every benchmark scenario, in the order `npm run bench` runs them.
import { connectionsScenario } from './connections.ts';
import { edgeScenario } from './edge.ts';
import { fanoutScenario } from './fanout.ts';
import { meshScenario } from './mesh.ts';
import { publishScenario } from './publish.ts';
import { retentionScenario } from './retention.ts';
import type { Scenario } from './scenario.ts';
import { saturationScenario } from './saturation.ts';
import { sourcesScenario } from './sources.ts';
import { storageScenario } from './storage.ts';

export const SCENARIOS: readonly Scenario[] = [
  fanoutScenario,
  saturationScenario,
  meshScenario,
  edgeScenario,
  storageScenario,
  sourcesScenario,
  connectionsScenario,
  publishScenario,
  retentionScenario,
];

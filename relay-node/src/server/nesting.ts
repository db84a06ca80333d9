/** The pre-parse depth scan lives in shared (the edge runs it too); re-exported for the relay's imports. */
export { nestsDeeperThan } from '@anode/shared';

import { after, before, describe, it } from 'node:test';
import { DECLARED } from './differences.ts';
import { errorCases } from './errors.case.ts';
import { frameCases } from './frames.case.ts';
import { httpCases } from './http.case.ts';
import { socketCases } from './sockets.case.ts';
import { startTarget, type Target, TARGETS } from './targets.ts';

/**
 * One protocol compliance suite (PROTOCOL.md) run against every kind of node that serves clients:
 * a relay, the edge Worker standing alone, and the edge linked to a relay. A case is written once;
 * a target may differ only where differences.ts declares it, with the reason.
 */
const CASES = [...frameCases, ...errorCases, ...httpCases, ...socketCases];

for (const name of TARGETS) {
  describe(`protocol compliance: ${name}`, () => {
    let target: Target | undefined;
    before(async () => {
      target = await startTarget(name);
    });
    after(() => target?.stop());

    for (const testCase of CASES) {
      const declared = DECLARED[name][testCase.name];
      if (declared?.kind === 'platform') {
        it(`${testCase.name} [declared difference: ${declared.reason}]`, async () => {
          if (!target) throw new Error(`${name} did not start`);
          await declared.instead(target);
        });
        continue;
      }
      const options = declared?.kind === 'gap' ? { todo: `known gap: ${declared.reason}` } : {};
      it(testCase.name, options, async () => {
        if (!target) throw new Error(`${name} did not start`);
        await testCase.run(target);
      });
    }
  });
}

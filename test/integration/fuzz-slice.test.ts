/**
 * The CI slice of `npm run fuzz`: a fixed seed, 500 cases per target (parser, then a running gateway), zero
 * findings expected. A finding fails the test with the case and the command that replays it.
 */
import { formatReport } from '../fuzz/report';
import { runFuzz } from '../fuzz/run';

const SEED = 20261129;
const CASES = 500;

jest.setTimeout(240_000);

describe('fuzz slice (seed 20261129)', () => {
  it.each(['parser', 'gateway'] as const)(`%s: ${CASES} cases end without a finding`, async (target) => {
    const [report] = await runFuzz({ seed: SEED, targets: [target], cases: CASES, seconds: 200, jobs: 1 });
    // eslint-disable-next-line no-console
    console.log(formatReport(report));
    expect(report.findings.map((f) => `${f.kind} at case ${f.index}: ${f.detail} [${f.what ?? ''}]`)).toEqual([]);
    expect(report.cases).toBe(CASES);
  });
});

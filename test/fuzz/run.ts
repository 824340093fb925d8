import { runGatewayTarget } from './gateway-target';
import { runParserTarget } from './parser-target';
import type { TargetName, TargetReport } from './report';

/**
 * One fuzz run: each target in turn, `cases` cases each (or until `seconds` per target). The CLI (./cli.ts, `npm run
 * fuzz`) and the CI slice (test/integration/fuzz-slice.test.ts) both call this.
 */
export interface FuzzOptions {
  seed: number;
  targets: TargetName[];
  /** Cases per target. */
  cases: number;
  /** Time budget per target, seconds. */
  seconds: number;
  /** Replay these case indices only. */
  replay?: number[];
  /** Parser worker processes. */
  jobs?: number;
  caseTimeoutMs?: number;
  scanner?: 'model' | 'fake';
  onProgress?: (target: TargetName, done: number) => void;
}

export async function runFuzz(opts: FuzzOptions): Promise<TargetReport[]> {
  const reports: TargetReport[] = [];
  for (const target of opts.targets) {
    if (target === 'parser') {
      reports.push(await runParserTarget({
        seed: opts.seed, cases: opts.cases, seconds: opts.seconds, jobs: opts.jobs, caseTimeoutMs: opts.caseTimeoutMs, only: opts.replay,
        onProgress: (n) => opts.onProgress?.('parser', n),
      }));
    } else {
      reports.push(await runGatewayTarget({
        seed: opts.seed, cases: opts.cases, seconds: opts.seconds, only: opts.replay, scanner: opts.scanner,
        onProgress: (n) => opts.onProgress?.('gateway', n),
      }));
    }
  }
  return reports;
}

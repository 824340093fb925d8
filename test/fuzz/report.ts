/** What a fuzz run reports, per target: cases run, how they ended, findings (each replayable), time. */

export type TargetName = 'parser' | 'gateway';

export interface Finding {
  target: TargetName;
  seed: number;
  index: number;
  /** crash, hang, untyped-throw, internal, masked-bug, invariant, leak, malformed-answer, … */
  kind: string;
  detail: string;
  /** What the case was (seed file, mutations, request shape). */
  what?: string;
}

export interface TargetReport {
  target: TargetName;
  seed: number;
  cases: number;
  elapsedMs: number;
  /** How the cases ended (e.g. decode, skip, error:DICOM_TRUNCATED; 200, 409, 400:MULTIPART_MALFORMED, aborted). */
  outcomes: Record<string, number>;
  findings: Finding[];
  /** The slowest cases (index, milliseconds). */
  slowest: { index: number; ms: number; what?: string }[];
  /** Why the run stopped: the case count, the time budget, or too many findings. */
  stoppedBy: 'cases' | 'seconds' | 'findings';
}

export const replayCommand = (f: Pick<Finding, 'target' | 'seed' | 'index'>): string =>
  `npm run fuzz -- --target ${f.target} --seed ${f.seed} --replay ${f.index}`;

export function keepSlowest(list: { index: number; ms: number; what?: string }[], entry: { index: number; ms: number; what?: string }, n = 5): void {
  if (list.length < n || entry.ms > list[list.length - 1].ms) {
    list.push(entry);
    list.sort((a, b) => b.ms - a.ms);
    list.length = Math.min(list.length, n);
  }
}

export function formatReport(r: TargetReport): string {
  const lines: string[] = [];
  const secs = (r.elapsedMs / 1000).toFixed(1);
  lines.push(`[${r.target}] seed ${r.seed}: ${r.cases} cases in ${secs} s (${(r.cases / Math.max(0.001, r.elapsedMs / 1000)).toFixed(1)}/s), ${r.findings.length} finding(s), stopped by ${r.stoppedBy}`);
  const outcomes = Object.entries(r.outcomes).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  lines.push(`  outcomes: ${outcomes}`);
  if (r.slowest.length) lines.push(`  slowest: ${r.slowest.map((s) => `#${s.index} ${Math.round(s.ms)} ms`).join(', ')}`);
  for (const f of r.findings) {
    lines.push(`  FINDING ${f.kind} at case ${f.index}: ${f.detail}`);
    if (f.what) lines.push(`    case: ${f.what}`);
    lines.push(`    replay: ${replayCommand(f)}`);
  }
  return lines.join('\n');
}

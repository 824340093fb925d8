import { forkTs, nextMessage, type FuzzChild } from './child-process';
import { keepSlowest, type Finding, type TargetReport } from './report';

/**
 * The parser target: cases run in worker processes (./parser-child.ts), one case at a time each, under a per-case
 * time limit. A worker that dies (native crash, out of memory, process.exit) is a `crash` finding for the case it
 * was running; one that exceeds the limit is killed by PID and is a `hang` finding; either way a fresh worker takes
 * the next case.
 */
export interface ParserRunOptions {
  seed: number;
  cases: number;
  /** Time budget: no new case starts after it. */
  seconds: number;
  /** Per-case limit (decode of the largest seed file takes ~1 s on a loaded 2-core machine). */
  caseTimeoutMs?: number;
  /** Worker processes. */
  jobs?: number;
  /** Run only these case indices (replay). */
  only?: number[];
  /** Stop after this many findings. */
  maxFindings?: number;
  onProgress?: (done: number) => void;
}

type Start = { type: 'start'; index: number; file: string; ops: string[]; bytes: number };
type Done = { type: 'done'; index: number; ms: number; outcome: string; finding?: { kind: string; detail: string } };
const isReady = (m: unknown): m is { type: 'ready' } => (m as { type?: string })?.type === 'ready';

export async function runParserTarget(opts: ParserRunOptions): Promise<TargetReport> {
  const t0 = Date.now();
  const deadline = t0 + opts.seconds * 1000;
  const caseTimeoutMs = opts.caseTimeoutMs ?? 20000;
  const maxFindings = opts.maxFindings ?? 50;
  const report: TargetReport = { target: 'parser', seed: opts.seed, cases: 0, elapsedMs: 0, outcomes: {}, findings: [], slowest: [], stoppedBy: 'cases' };
  const queue = opts.only ? [...opts.only] : null;
  let nextIndex = 0;
  const take = (): number | null => {
    if (report.findings.length >= maxFindings) { report.stoppedBy = 'findings'; return null; }
    if (Date.now() >= deadline) { report.stoppedBy = 'seconds'; return null; }
    if (queue) return queue.length ? queue.shift()! : null;
    return nextIndex < opts.cases ? nextIndex++ : null;
  };
  const finding = (index: number, kind: string, detail: string, start?: Start): void => {
    const f: Finding = { target: 'parser', seed: opts.seed, index, kind, detail, ...(start ? { what: `${start.file} (${start.bytes} bytes) ${start.ops.join(' ') || '(unmutated)'}` } : {}) };
    report.findings.push(f);
  };

  const lane = async (): Promise<void> => {
    let child: FuzzChild | null = null;
    try {
      for (let index = take(); index !== null; index = take()) {
        if (!child) {
          child = forkTs('parser-child.ts');
          if (!(await nextMessage(child, isReady))) throw new Error(`the parser worker did not start: ${child.stderrTail()}`);
        }
        const worker: FuzzChild = child;
        let start: Start | undefined;
        const onStart = (m: unknown): void => { if ((m as Start)?.type === 'start') start = m as Start; };
        worker.proc.on('message', onStart);
        const done = nextMessage(worker, (m): m is Done => (m as Done)?.type === 'done' && (m as Done).index === index);
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), caseTimeoutMs); });
        worker.proc.send({ type: 'run', seed: opts.seed, index });
        const result = await Promise.race([done, timedOut]);
        clearTimeout(timer);
        worker.proc.off('message', onStart);
        report.cases++;
        if (result === 'timeout') {
          worker.kill();
          await worker.exited;
          child = null;
          report.outcomes.hang = (report.outcomes.hang ?? 0) + 1;
          finding(index, 'hang', `no ending within ${caseTimeoutMs} ms; the worker was killed`, start);
        } else if (result === null) {
          const { code, signal } = await worker.exited;
          child = null;
          report.outcomes.crash = (report.outcomes.crash ?? 0) + 1;
          finding(index, 'crash', `the worker process died (exit ${code}, signal ${signal}): ${worker.stderrTail().slice(-600).trim()}`, start);
        } else {
          report.outcomes[result.outcome] = (report.outcomes[result.outcome] ?? 0) + 1;
          if (result.finding) finding(index, result.finding.kind, result.finding.detail, start);
          keepSlowest(report.slowest, { index, ms: result.ms, ...(start ? { what: `${start.file} ${start.ops.join(' ')}` } : {}) });
        }
        opts.onProgress?.(report.cases);
      }
    } finally {
      if (child) {
        child.proc.disconnect();
        const exit = await Promise.race([child.exited, new Promise((r) => setTimeout(r, 2000))]);
        if (!exit) child.kill();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.jobs ?? 1) }, () => lane()));
  report.findings.sort((a, b) => a.index - b.index);
  report.elapsedMs = Date.now() - t0;
  return report;
}

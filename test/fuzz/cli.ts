/**
 * `npm run fuzz [-- options]`: the structure-aware fuzzer of the DICOM parser and of a running gateway.
 *
 *   --target parser|gateway|all   which target (default all)
 *   --seed N                      run seed (default: a random one, printed)
 *   --cases N                     cases per target (default 10000)
 *   --seconds N                   time budget per target (default 1800)
 *   --replay I[,J…]               run only these case indices of --seed (with --target), printing each case
 *   --dump DIR                    with --replay and --target parser: write each case's bytes to DIR
 *   --jobs N                      parser worker processes (default 1)
 *   --case-timeout-ms N           parser per-case limit (default 20000)
 *   --scanner model|fake          the gateway's scanner (default model: the real pipeline on the tiny test model)
 *   --json FILE                   write the reports as JSON
 *
 * Prints cases, outcomes, time and every finding with the command that replays it; exits 1 on any finding.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { parserCase } from './parser-cases';
import { formatReport, type TargetName } from './report';
import { randomSeed } from './rng';
import { runFuzz } from './run';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
};

async function main(): Promise<number> {
  const program = new Command('fuzz')
    .option('--target <target>', 'parser, gateway or all', 'all')
    .option('--seed <n>', 'run seed', int)
    .option('--cases <n>', 'cases per target', int, 10000)
    .option('--seconds <n>', 'time budget per target', int, 1800)
    .option('--replay <indices>', 'case indices to replay, comma-separated')
    .option('--dump <dir>', 'write replayed parser cases here')
    .option('--jobs <n>', 'parser worker processes', int, 1)
    .option('--case-timeout-ms <n>', 'parser per-case limit', int, 20000)
    .option('--scanner <kind>', 'model or fake', 'model')
    .option('--json <file>', 'write the reports as JSON')
    .parse(process.argv);
  const o = program.opts<{ target: string; seed?: number; cases: number; seconds: number; replay?: string; dump?: string; jobs: number; caseTimeoutMs: number; scanner: string; json?: string }>();
  if (!['parser', 'gateway', 'all'].includes(o.target)) throw new InvalidArgumentError('--target must be parser, gateway or all');
  if (!['model', 'fake'].includes(o.scanner)) throw new InvalidArgumentError('--scanner must be model or fake');
  const targets: TargetName[] = o.target === 'all' ? ['parser', 'gateway'] : [o.target as TargetName];
  const replay = o.replay?.split(',').map((s) => int(s.trim()));
  if (replay && (o.seed === undefined || o.target === 'all')) throw new InvalidArgumentError('--replay needs --seed and --target');
  const seed = o.seed ?? randomSeed();
  console.log(`fuzz: seed ${seed}, targets ${targets.join(', ')}, ${replay ? `replaying case(s) ${replay.join(', ')}` : `${o.cases} cases per target, at most ${o.seconds} s each`}`);
  if (replay && o.target === 'parser') {
    for (const i of replay) {
      const c = parserCase(seed, i);
      console.log(`case ${i}: ${c.file} (${c.bytes.length} bytes) ${c.ops.join(' ') || '(unmutated)'}`);
      if (o.dump) {
        fs.mkdirSync(o.dump, { recursive: true });
        fs.writeFileSync(path.join(o.dump, `parser-${seed}-${i}.dcm`), c.bytes);
      }
    }
  }
  let last = Date.now();
  const reports = await runFuzz({
    seed, targets, cases: o.cases, seconds: o.seconds, replay, jobs: o.jobs, caseTimeoutMs: o.caseTimeoutMs, scanner: o.scanner as 'model' | 'fake',
    onProgress: (target, n) => {
      if (Date.now() - last > 15000) { last = Date.now(); console.log(`  [${target}] ${n} cases…`); }
    },
  });
  for (const r of reports) console.log(formatReport(r));
  if (o.json) fs.writeFileSync(o.json, JSON.stringify(reports, null, 1));
  const findings = reports.reduce((n, r) => n + r.findings.length, 0);
  console.log(findings ? `fuzz: ${findings} finding(s)` : 'fuzz: no findings');
  return findings ? 1 : 0;
}

main().then((code) => process.exit(code), (err: Error) => {
  console.error(`fuzz: ${err.message}`);
  process.exit(2);
});

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { WardenError } from '../core/errors';
import { decide } from '../policy';
import type { ScanPipeline, ScanRecord } from '../pipeline';
import { cliRuntime, type ModelFlags } from './runtime';

/**
 * `warden scan <files|folders…>`: files → verdict records, through the same ScanPipeline the proxy uses.
 * --json prints one VerdictRecord per line on stdout (the summary goes to stderr). Exit 1 when any instance
 * ended in status 'error', 0 otherwise; 2 when the pipeline cannot start (model, bundle, usage).
 */

interface ScanCliOptions extends ModelFlags {
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('scan')
    .description('Scan DICOM files or folders (recursively) and print one verdict record per instance')
    .argument('<paths...>', 'DICOM files or folders')
    .option('-c, --config <file>', 'the gateway configuration whose model and policy sections apply (default: $WARDEN_CONFIG, else the defaults)')
    .option('--model <file>', 'ONNX model (default: the embedded reference model)')
    .option('--bundle <file>', 'detector bundle (default: the embedded bundle, with the embedded model)')
    .option('--no-detectors', 'predictions only: no detectors, no verdict for scanned instances')
    .option('--json', 'one JSON record per line on stdout; summary on stderr')
    .option('--providers <list>', 'execution providers in order, comma-separated (cuda,tensorrt,cpu); default model.provider')
    .option('--workers <n>', 'inference worker threads (default model.workers, 1)')
    .option('--threads <n>', 'ONNX Runtime threads per worker (default: cpus / workers)')
    .option('--frame <which>', "frame of multi-frame instances to scan: 'first' or 'middle' (default model.frame, first)")
    .option('--timeout <ms>', 'inference deadline per instance, ms (default limits.scanTimeoutMs)')
    .action(async (paths: string[], opts: ScanCliOptions) => {
      process.exitCode = await runScan(paths, opts);
    });
}

/** Files under the given paths, folders recursed, in a stable (sorted) order. */
/**
 * Files found while walking a folder that are certainly not DICOM (manifests, notes, sidecars). They are left
 * out of folder walks so a study folder with a manifest.csv scans cleanly; a file named explicitly is always scanned.
 */
const NOT_DICOM_EXTENSIONS = new Set(['.csv', '.json', '.md', '.txt', '.yaml', '.yml', '.xml', '.html', '.png', '.jpg', '.jpeg', '.svg', '.log']);

export async function collectFiles(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string, explicit: boolean): Promise<void> => {
    let st;
    try {
      st = await fsp.stat(p);
    } catch {
      throw new WardenError('USAGE', `No such file or folder: ${p}`);
    }
    if (st.isDirectory()) {
      const entries = (await fsp.readdir(p)).sort();
      for (const e of entries) {
        if (e.startsWith('.')) continue;
        await walk(path.join(p, e), false);
      }
    } else if (st.isFile() && (explicit || !NOT_DICOM_EXTENSIONS.has(path.extname(p).toLowerCase()))) out.push(p);
  };
  for (const p of paths) await walk(p, true);
  return out;
}

export async function runScan(paths: string[], opts: ScanCliOptions): Promise<number> {
  const files = await collectFiles(paths);
  const runtime = await cliRuntime(opts);
  const { pipeline } = runtime;
  const workers = runtime.pipeline.pool.size;
  const json = !!opts.json;
  const counts = { scanned: 0, skipped: 0, error: 0 } as Record<ScanRecord['status'], number>;
  const verdicts: Record<string, number> = {};
  if (!json) {
    process.stdout.write(`model ${pipeline.manifest.name} ${pipeline.manifest.version} sha256:${pipeline.modelSha256.slice(0, 12)} provider ${pipeline.provider}`
      + `${pipeline.bundle ? ` detectors ${pipeline.bundle.names.join(',')}` : ' (no detectors)'}\n`);
    process.stdout.write(tableRow(['file', 'status', 'modality', 'transfer syntax', 'prediction', 'prob', 'verdict', 'ms']) + '\n');
  }
  const emit = (rec: ScanRecord): void => {
    counts[rec.status] += 1;
    if (rec.verdict) verdicts[rec.verdict] = (verdicts[rec.verdict] ?? 0) + 1;
    process.stdout.write((json ? JSON.stringify(rec) : formatRow(rec)) + '\n');
  };

  // Keep decode of the next instances overlapping with inference of the current ones; print in input order.
  const window = workers + 1;
  const started = Date.now();
  try {
    const inflight: Promise<ScanRecord>[] = [];
    let next = 0;
    const startOne = (i: number): Promise<ScanRecord> => scanFile(pipeline, files[i]);
    while (next < files.length && inflight.length < window) inflight.push(startOne(next++));
    while (inflight.length) {
      const rec = await inflight.shift()!;
      emit(rec);
      if (next < files.length) inflight.push(startOne(next++));
    }
  } finally {
    await runtime.close();
  }
  const total = files.length;
  const summary = `${total} instance${total === 1 ? '' : 's'} in ${((Date.now() - started) / 1000).toFixed(2)} s: `
    + `scanned ${counts.scanned}, skipped ${counts.skipped}, error ${counts.error}; verdicts: `
    + (['forward', 'flag', 'block'].map((v) => `${v} ${verdicts[v] ?? 0}`).join(', '));
  (json ? process.stderr : process.stdout).write(summary + '\n');
  return counts.error > 0 ? 1 : 0;
}

async function scanFile(pipeline: ScanPipeline, file: string): Promise<ScanRecord> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (err) {
    const decision = decide({ kind: 'error', code: 'FILE_UNREADABLE' }, pipeline.policy);
    return {
      file, status: 'error', error: { code: 'FILE_UNREADABLE', message: `Cannot read ${file}: ${(err as Error).message}` },
      verdict: decision.verdict, reasons: decision.reasons, timings: { total: 0 },
    };
  }
  return (await pipeline.scan(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), { file })).record;
}

const WIDTHS = [44, 8, 8, 22, 26, 6, 8, 8];

function tableRow(cells: string[]): string {
  return cells.map((c, i) => {
    const w = WIDTHS[i];
    if (i === 0 && c.length > w) c = '…' + c.slice(c.length - w + 1);
    return i === cells.length - 1 ? c.padStart(w) : c.length > w ? c.slice(0, w) : c.padEnd(w);
  }).join(' ');
}

function formatRow(r: ScanRecord): string {
  const status = r.status === 'error' ? `error` : r.status === 'skipped' ? 'skipped' : 'scanned';
  const prediction = r.prediction ? r.prediction.label : r.status === 'error' ? r.error!.code : r.skipReason ?? '';
  return tableRow([
    r.file ?? String(r.partIndex ?? ''),
    status,
    r.modality ?? '-',
    r.transferSyntaxUid ?? '-',
    prediction,
    r.prediction ? r.prediction.probability.toFixed(3) : '-',
    r.verdict ?? '-',
    (r.timings.total ?? 0).toFixed(1),
  ]);
}

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { WardenError } from '../core/errors';
import type { ScanPipeline, ScanRecord } from '../pipeline';
import type { FeatureTable, LayerMatrix } from '../detectors';
import { listFiles, parseSourceSpec, readFeatureDump, readManifest, selectRows, writeFeatureDump, type FeatureDump, type SourceSpec } from '../eval';
import { EXTRACT_ONLY, cliRuntime, type ModelFlags } from './runtime';

/**
 * `warden features --manifest <csv[:splits]> --out <dir>`: runs every selected instance through
 * ScanPipeline.extract (decode → preprocess → model, no detectors) and writes all feature layers as .npy plus
 * meta.csv (see src/eval/features-io.ts). The dump feeds `warden fit/eval` and the lab's Python.
 */

export interface ExtractOptions {
  model?: string;
  workers?: number;
  threads?: number;
  concurrency?: number;
  label?: string;
  quiet?: boolean;
  /** Called with every instance's record (scanned, skipped or error), e.g. for a summary. */
  onRecord?: (record: ScanRecord, item: InputItem) => void;
}

export interface InputItem {
  absPath: string;
  meta: Record<string, string>;
}

/** Items of a manifest (optionally filtered by split values and kind) or a folder. */
export function itemsOf(spec: SourceSpec, splitColumn: string, kind?: string): InputItem[] {
  if (spec.kind === 'folder') return listFiles(spec.path).map((p) => ({ absPath: p, meta: { file: path.relative(process.cwd(), p), kind: 'clean' } }));
  if (spec.kind !== 'manifest') throw new WardenError('USAGE', `Expected a manifest or a folder, got a ${spec.kind} (${spec.path}).`);
  return selectRows(readManifest(spec.path), spec.values, splitColumn, kind).map(({ absPath, ...meta }) => ({ absPath, meta }));
}

/** One instance's features as extracted: every name of `featureNames` (logits included), and its predicted class. */
export interface FeatureRow {
  meta: Record<string, string>;
  logits: Float32Array;
  features: Record<string, Float32Array>;
  pred: number;
}

/** Every feature the pipeline hands detectors, in dump order: `logits`, the feature outputs, each view's `<view>/<name>`. */
export function featureNames(pipeline: ScanPipeline): string[] {
  const base = ['logits', ...pipeline.manifest.outputs.features];
  return [...base, ...pipeline.views.flatMap((v) => base.map((n) => `${v}/${n}`))];
}

/** Runs items through ScanPipeline.extract with a progress bar on stderr; failed instances are reported and left out. */
export async function extractFeatures(pipeline: ScanPipeline, items: InputItem[], opts: ExtractOptions = {}): Promise<FeatureDump> {
  const rows: FeatureRow[] = new Array(items.length);
  const bar = opts.quiet ? undefined : new SingleBar({ format: `${opts.label ?? 'extract'} [{bar}] {value}/{total} | {duration_formatted} | eta {eta_formatted}`, stream: process.stderr, etaBuffer: 200, noTTYOutput: true, notTTYSchedule: 10000 }, Presets.shades_classic);
  bar?.start(items.length, 0);
  let errors = 0;
  let next = 0;
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      const it = items[i];
      const bytes = await fs.promises.readFile(it.absPath);
      const row = await extractRow(pipeline, bytes, it.meta, it.meta.file ?? it.absPath, (record) => opts.onRecord?.(record, it));
      if (row) rows[i] = row;
      else errors++;
      bar?.increment();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  bar?.stop();
  const dump = dumpOfRows(pipeline, rows.filter(Boolean), opts.model);
  dump.header.errors = errors;
  return dump;
}

/**
 * One instance through ScanPipeline.extract: its features, or undefined (reported on stderr) when it was skipped or
 * failed. `onRecord` sees the record either way.
 */
export async function extractRow(pipeline: ScanPipeline, bytes: Uint8Array, meta: Record<string, string>, file: string | undefined, onRecord?: (record: ScanRecord) => void): Promise<FeatureRow | undefined> {
  const { record, output } = await pipeline.extract(bytes, file !== undefined ? { file } : {});
  onRecord?.(record);
  if (record.status !== 'scanned' || !output || !record.prediction) {
    process.stderr.write(`\n${file ?? `instance ${record.sopInstanceUidHash ?? '(unreadable)'}`}: ${record.status}${record.error ? ` ${record.error.code}: ${record.error.message}` : record.skipReason ? ` (${record.skipReason})` : ''}\n`);
    return undefined;
  }
  return { meta, logits: output.logits, features: output.features, pred: record.prediction.index };
}

/** Rows (in this order) as a feature dump: one matrix per feature name, the logits, the predicted classes, the meta. */
export function dumpOfRows(pipeline: ScanPipeline, ok: FeatureRow[], model?: string): FeatureDump {
  const classes = pipeline.manifest.classes;
  const names = featureNames(pipeline);
  const n = ok.length;
  const layers: Record<string, LayerMatrix> = {};
  for (const name of names) {
    const dim = ok.length ? ok[0].features[name].length : 0;
    const data = new Float32Array(n * dim);
    ok.forEach((r, i) => data.set(r.features[name], i * dim));
    layers[name] = { dim, data };
  }
  const logits = new Float32Array(n * classes.length);
  ok.forEach((r, i) => logits.set(r.logits, i * classes.length));
  const table: FeatureTable = { n, layers, predicted: Int32Array.from(ok, (r) => r.pred), numClasses: classes.length };
  return {
    header: {
      format: 'warden-features', version: 1, createdAt: new Date().toISOString(), modelSha256: pipeline.modelSha256,
      model, classes, n, layers: Object.fromEntries(names.map((l) => [l, layers[l].dim])), errors: 0,
    },
    table,
    logits,
    meta: ok.map((r) => r.meta),
  };
}

/**
 * Features for a source: read from a dump (filtered by split values / kind), or extracted through the pipeline.
 * `pipeline` is created lazily by the caller-provided factory only when extraction is needed.
 */
export async function featuresFor(spec: SourceSpec, splitColumn: string, kind: string | undefined, getPipeline: () => Promise<ScanPipeline>, opts: ExtractOptions): Promise<FeatureDump> {
  if (spec.kind === 'features') return filterDump(readFeatureDump(spec.path), spec.values, splitColumn, kind);
  const items = itemsOf(spec, splitColumn, kind);
  if (items.length === 0) throw new WardenError('USAGE', `No instances selected from ${spec.path}${spec.values.length ? ` (${splitColumn} in ${spec.values.join(',')})` : ''}${kind ? ` with kind=${kind}` : ''}.`);
  return extractFeatures(await getPipeline(), items, opts);
}

export function filterDump(d: FeatureDump, values: string[], splitColumn: string, kind?: string): FeatureDump {
  const idx: number[] = [];
  d.meta.forEach((m, i) => {
    if ((values.length === 0 || values.includes(m[splitColumn] ?? '')) && (kind === undefined || (m.kind ?? 'clean') === kind)) idx.push(i);
  });
  return selectDump(d, idx);
}

/** Rows `idx` of a dump (copies; the same dump when idx is everything). */
export function selectDump(d: FeatureDump, idx: number[]): FeatureDump {
  if (idx.length === d.table.n) return d;
  const layers: Record<string, LayerMatrix> = {};
  for (const [name, m] of Object.entries(d.table.layers)) {
    const data = new Float32Array(idx.length * m.dim);
    idx.forEach((r, i) => data.set(m.data.subarray(r * m.dim, (r + 1) * m.dim), i * m.dim));
    layers[name] = { dim: m.dim, data };
  }
  const C = d.header.classes.length;
  const logits = new Float32Array(idx.length * C);
  idx.forEach((r, i) => logits.set(d.logits.subarray(r * C, (r + 1) * C), i * C));
  return {
    header: { ...d.header, n: idx.length },
    table: { n: idx.length, layers, predicted: Int32Array.from(idx, (r) => d.table.predicted[r]), numClasses: d.table.numClasses },
    logits,
    meta: idx.map((r) => d.meta[r]),
  };
}

interface FeaturesCliOptions extends ModelFlags {
  manifest: string;
  out: string;
  splitColumn: string;
  kind?: string;
  views?: string;
}

/** `--views a,b` → view names (validated by compose). */
export function parseViews(list: string | undefined): string[] {
  return (list ?? '').split(',').map((v) => v.trim()).filter(Boolean);
}

export function register(program: Command): void {
  program
    .command('features')
    .description('Dump every feature layer of a manifest (or folder) through the scan pipeline, for the lab and for fit/eval')
    .requiredOption('--manifest <csv|folder>', "lab manifest.csv (optionally ':split1,split2') or a folder of DICOM files")
    .requiredOption('--out <dir>', 'output folder: features.json, <layer>.npy, logits.npy, meta.csv')
    .option('--model <file>', 'ONNX model (default: the embedded reference model)')
    .option('--split-column <name>', 'manifest column the :values select on', 'split')
    .option('--kind <kind>', 'only rows of this kind (clean | adversarial | benign)')
    .option('--workers <n>', 'inference worker threads', '1')
    .option('--threads <n>', 'ONNX Runtime threads per worker', '1')
    .option('--views <list>', 'also run each image as these views (e.g. median2,bits5; see src/models/views.ts) and dump `<view>/<layer>`')
    .action(async (opts: FeaturesCliOptions) => {
      const spec = parseSourceSpec(opts.manifest);
      const runtime = await cliRuntime(opts, { ...EXTRACT_ONLY, views: parseViews(opts.views) });
      const { pipeline } = runtime;
      try {
        const dump = await featuresFor(spec, opts.splitColumn, opts.kind, async () => pipeline, { model: opts.model, label: 'features' });
        dump.header.source = opts.manifest;
        writeFeatureDump(opts.out, dump);
        process.stderr.write(`wrote ${dump.table.n} instances (${Object.keys(dump.table.layers).length} layers, ${dump.header.errors ?? 0} failed) to ${opts.out}\n`);
        if (dump.header.errors) process.exitCode = 1;
      } finally {
        await runtime.close();
      }
    });
}

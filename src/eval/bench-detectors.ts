/**
 * `npm run bench:detectors [-- --features <dump> --bundle <bundle> --n 300]`
 *
 * Times scoring one instance at a time with every detector of a bundle (TS, one thread), then runs the Python
 * reference (lab/detectors/parity_real.py) on the same rows and prints per-detector time, speed ratio and the
 * worst relative score difference. Without a feature dump it times TS alone on synthetic features of the
 * reference model's layer sizes.
 */

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_BUNDLE_PATH, PROJECT_ROOT } from '../core/defaults';
import { bundleFromContents, fitBundle, mulberry32, type FittedBundle } from '../detectors';
import { instanceOf, type FeatureTable } from '../detectors';
import { readBundleFile } from '../detectors';
import { readFeatureDump } from './features-io';
import { toCsv } from './dataset';

function arg(name: string, def?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

function synthetic(n: number, dims: Record<string, number>, seed: number): FeatureTable {
  const rnd = mulberry32(seed);
  const layers: FeatureTable['layers'] = {};
  for (const [l, d] of Object.entries(dims)) {
    const data = new Float32Array(n * d);
    for (let i = 0; i < data.length; i++) data[i] = Math.abs(rnd() + rnd() + rnd() - 1.5) * 2;
    layers[l] = { dim: d, data };
  }
  return { n, layers, predicted: Int32Array.from({ length: n }, (_, i) => i % 2), numClasses: 2 };
}

function timeTs(bundle: FittedBundle, t: FeatureTable, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  const m = Math.min(n, t.n);
  for (const [id, d] of Object.entries(bundle.detectors)) {
    for (let i = 0; i < Math.min(20, m); i++) d.score(instanceOf(t, i), t.predicted[i]); // warm-up
    const t0 = performance.now();
    for (let i = 0; i < m; i++) d.score(instanceOf(t, i), t.predicted[i]);
    out[id] = (performance.now() - t0) / m;
  }
  return out;
}

function main(): void {
  const dumpDir = arg('features', path.join(PROJECT_ROOT, 'data', 'features'))!;
  const bundlePath = arg('bundle', DEFAULT_BUNDLE_PATH)!;
  const n = Number(arg('n', '300'));
  if (!fs.existsSync(path.join(dumpDir, 'features.json')) || !fs.existsSync(bundlePath)) {
    console.log(`no feature dump at ${dumpDir} or no bundle at ${bundlePath}: timing TS alone on synthetic features`);
    const dims = { penultimate: 128, residual_stats: 24, stage1_mean: 16, stage1_std: 16, stage2_mean: 32, stage2_std: 32, stage3_mean: 64, stage3_std: 64, stage4_mean: 128, stage4_std: 128 };
    const { bundle } = fitBundle(synthetic(5000, dims, 1), synthetic(800, dims, 2), { modelSha256: '0'.repeat(64) });
    const ts = timeTs(bundle, synthetic(n, dims, 3), n);
    for (const [id, ms] of Object.entries(ts)) console.log(`${id.padEnd(10)} TS ${ms.toFixed(3)} ms/instance`);
    console.log(`all        TS ${Object.values(ts).reduce((a, b) => a + b, 0).toFixed(3)} ms/instance`);
    return;
  }
  const dump = readFeatureDump(dumpDir);
  const bundle = bundleFromContents(readBundleFile(bundlePath), dump.header.modelSha256, bundlePath);
  // rows to score: adversarial and clean test rows, spread over the dump
  const idx = dump.meta.flatMap((m, i) => (m.split === 'test' || m.kind !== 'clean' ? [i] : []));
  const step = Math.max(1, Math.floor(idx.length / n));
  const rows = idx.filter((_, i) => i % step === 0).slice(0, n);
  const layers: FeatureTable['layers'] = {};
  for (const [l, m] of Object.entries(dump.table.layers)) {
    const data = new Float32Array(rows.length * m.dim);
    rows.forEach((r, i) => data.set(m.data.subarray(r * m.dim, (r + 1) * m.dim), i * m.dim));
    layers[l] = { dim: m.dim, data };
  }
  const t: FeatureTable = { n: rows.length, layers, predicted: Int32Array.from(rows, (r) => dump.table.predicted[r]), numClasses: dump.table.numClasses };
  const ts = timeTs(bundle, t, rows.length);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bench-'));
  const scoresCsv = path.join(tmp, 'scores.csv');
  fs.writeFileSync(scoresCsv, toCsv(rows.map((r, i) => {
    const s = bundle.score(instanceOf(t, i), t.predicted[i]);
    return { file: dump.meta[r].file, ...Object.fromEntries(Object.entries(s).map(([id, v]) => [`${id}_score`, v.score])) };
  })));
  const py = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const res = spawnSync(py, [path.join(PROJECT_ROOT, 'lab', 'detectors', 'parity_real.py'), '--features', dumpDir, '--bundle', bundlePath, '--scores', scoresCsv, '--n', String(rows.length), '--json', path.join(tmp, 'ref.json')], { encoding: 'utf8' });
  let ref: { detectors: Record<string, { max_rel_err: number; ref_ms_per_instance_single: number; ref_ms_per_instance_batched: number }> } | undefined;
  if (res.status === 0) ref = JSON.parse(fs.readFileSync(path.join(tmp, 'ref.json'), 'utf8'));
  else console.log(`Python reference unavailable (${res.stderr?.split('\n').filter(Boolean).pop() ?? res.error?.message}); TS timings only`);
  console.log(`${rows.length} instances, one at a time, one thread (bundle ${path.basename(bundlePath)})`);
  console.log('detector   TS ms/inst   ref ms/inst (single)   ref ms/inst (batched)   speed-up single / batched   max rel err');
  let tsAll = 0;
  let refAll = 0;
  let refAllB = 0;
  for (const [id, ms] of Object.entries(ts)) {
    const r = ref?.detectors[id];
    tsAll += ms;
    refAll += r?.ref_ms_per_instance_single ?? NaN;
    refAllB += r?.ref_ms_per_instance_batched ?? NaN;
    console.log(`${id.padEnd(10)} ${ms.toFixed(3).padStart(10)}   ${(r?.ref_ms_per_instance_single ?? NaN).toFixed(3).padStart(20)}   ${(r?.ref_ms_per_instance_batched ?? NaN).toFixed(3).padStart(21)}   ${((r?.ref_ms_per_instance_single ?? NaN) / ms).toFixed(1).padStart(12)}× / ${((r?.ref_ms_per_instance_batched ?? NaN) / ms).toFixed(1)}×   ${(r?.max_rel_err ?? NaN).toExponential(2)}`);
  }
  console.log(`${'all'.padEnd(10)} ${tsAll.toFixed(3).padStart(10)}   ${refAll.toFixed(3).padStart(20)}   ${refAllB.toFixed(3).padStart(21)}   ${(refAll / tsAll).toFixed(1).padStart(12)}× / ${(refAllB / tsAll).toFixed(1)}×`);
  fs.rmSync(tmp, { recursive: true, force: true });
}

main();

#!/usr/bin/env node
'use strict';
/**
 * npm run bench:scan [-- [model.onnx] [--n 50] [--workers 1] [--threads N] [--files DIR | --size N] [--heavy] [--views LIST|none] [--json]]
 *
 * Whole-scan latency split by stage (decode, preprocess, inference, detect) and the ratio
 *   whole scan ÷ bare inference
 * where bare inference = session.run on the same tensor in the same worker setup, measured in the same run.
 * A benchmark, not a test: it prints numbers, it asserts nothing. Runs the compiled code (dist/); build first.
 *
 * Model: the given path, else the embedded default model, else a generated test model. `--heavy` generates a
 * synthetic extractor with about ResNet-50's cost (≈4 GFLOP at 224×224) from test/fixtures/onnx.
 * Inputs: *.dcm under --files, else test/fixtures/lab when present, else a synthetic 8-bit 224×224 CR DICOM;
 * --size N: three synthetic 16-bit N×N CRs without a VOI window (radiograph-sized decode and preprocess).
 * Views: a model without a bundle (--heavy, a given model) still runs each image as the views the shipped policy's
 * adversarial detectors read in the embedded bundle (they dominate the cost: one extra image per view in the batch),
 * so the ratio is that of a scan with the default detectors; --views a,b or --views none overrides.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const ROOT = path.resolve(__dirname, '..');
const dist = (p) => path.join(ROOT, 'dist', p);
if (!fs.existsSync(dist('pipeline/index.js'))) {
  console.error('bench:scan: not built; run `npx tsc -p tsconfig.json` first');
  process.exit(2);
}
const { compose } = require(dist('pipeline/index.js'));
const { DEFAULT_MODEL_PATH } = require(dist('core/defaults.js'));
const { decodeInstance } = require(dist('dicom/index.js'));
const { preprocess } = require(dist('models/preprocess.js'));
const { writeTestModel } = require(path.join(ROOT, 'test', 'fixtures', 'onnx', 'build-test-model.js'));

function parseArgs(argv) {
  const o = { n: 50, workers: 1, threads: undefined, files: undefined, model: undefined, heavy: false, json: false, size: 0, views: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--n') o.n = Number(argv[++i]);
    else if (a === '--workers') o.workers = Number(argv[++i]);
    else if (a === '--threads') o.threads = Number(argv[++i]);
    else if (a === '--files') o.files = argv[++i];
    else if (a === '--heavy') o.heavy = true;
    else if (a === '--size') o.size = Number(argv[++i]);
    else if (a === '--json') o.json = true;
    else if (a === '--views') o.views = argv[++i] === 'none' ? [] : argv[i].split(',').map((v) => v.trim()).filter(Boolean);
    else if (!a.startsWith('--')) o.model = a;
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/** A minimal Explicit VR Little Endian Part-10 file: 8-bit MONOCHROME2 CR, rows × columns. */
function syntheticDicom(rows, columns, seed) {
  const parts = [];
  const el = (group, element, vr, value) => {
    const long = ['OB', 'OW', 'SQ', 'UN', 'UT', 'UC', 'UR'].includes(vr);
    let v = value;
    if (typeof v === 'string') {
      let s = v;
      if (s.length % 2) s += vr === 'UI' ? '\0' : ' ';
      v = Buffer.from(s, 'latin1');
    }
    const h = Buffer.alloc(long ? 12 : 8);
    h.writeUInt16LE(group, 0);
    h.writeUInt16LE(element, 2);
    h.write(vr, 4, 'latin1');
    if (long) h.writeUInt32LE(v.length, 8);
    else h.writeUInt16LE(v.length, 6);
    return Buffer.concat([h, v]);
  };
  const us = (n) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
  const sopClass = '1.2.840.10008.5.1.4.1.1.1';
  const sopInstance = `2.25.${1000 + seed}`;
  const ts = '1.2.840.10008.1.2.1';
  const metaBody = Buffer.concat([
    el(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    el(0x0002, 0x0002, 'UI', sopClass), el(0x0002, 0x0003, 'UI', sopInstance), el(0x0002, 0x0010, 'UI', ts),
  ]);
  const gl = Buffer.alloc(4);
  gl.writeUInt32LE(metaBody.length);
  parts.push(Buffer.alloc(128), Buffer.from('DICM'), el(0x0002, 0x0000, 'UL', gl), metaBody);
  const px = Buffer.alloc(rows * columns);
  let s = seed * 2654435761 >>> 0;
  for (let i = 0; i < px.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    const y = Math.floor(i / columns);
    const x = i % columns;
    px[i] = Math.max(0, Math.min(255, Math.round(128 + 80 * Math.sin(x / 17) * Math.cos(y / 23) + ((s >>> 24) % 16) - 8)));
  }
  parts.push(
    el(0x0008, 0x0016, 'UI', sopClass), el(0x0008, 0x0018, 'UI', sopInstance), el(0x0008, 0x0060, 'CS', 'CR'),
    el(0x0018, 0x0015, 'CS', 'CHEST'),
    el(0x0028, 0x0002, 'US', us(1)), el(0x0028, 0x0004, 'CS', 'MONOCHROME2'),
    el(0x0028, 0x0010, 'US', us(rows)), el(0x0028, 0x0011, 'US', us(columns)),
    el(0x0028, 0x0100, 'US', us(8)), el(0x0028, 0x0101, 'US', us(8)), el(0x0028, 0x0102, 'US', us(7)), el(0x0028, 0x0103, 'US', us(0)),
    el(0x7fe0, 0x0010, 'OB', px),
  );
  return new Uint8Array(Buffer.concat(parts));
}

function listDicoms(dir) {
  const out = [];
  const walk = (p) => {
    for (const e of fs.readdirSync(p, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const q = path.join(p, e.name);
      if (e.isDirectory()) walk(q);
      else if (/\.dcm$/i.test(e.name)) out.push(q);
    }
  };
  walk(dir);
  return out;
}

/** The views the shipped policy's adversarial detectors read in the embedded bundle. */
function shippedViews() {
  const { readBundleFile } = require(dist('detectors/bundle.js'));
  const { DEFAULT_POLICY } = require(dist('policy/index.js'));
  const { DEFAULT_BUNDLE_PATH } = require(dist('core/defaults.js'));
  if (!fs.existsSync(DEFAULT_BUNDLE_PATH)) return [];
  const views = new Set();
  for (const d of readBundleFile(DEFAULT_BUNDLE_PATH).detectors) {
    if (!DEFAULT_POLICY.adversarial.decideBy.includes(d.id)) continue;
    for (const v of d.state.params.views ?? []) views.add(String(v));
  }
  return [...views].sort();
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bench-'));
  let modelPath = o.model;
  let modelNote = '';
  if (!modelPath && o.heavy) {
    modelPath = writeTestModel(tmp, 'heavy.onnx', { slowLayers: 4, slowWidth: 32 });
    modelNote = 'synthetic heavy extractor (~4 GFLOP at 224×224, ResNet-50-like cost)';
  } else if (!modelPath && fs.existsSync(DEFAULT_MODEL_PATH)) {
    modelPath = DEFAULT_MODEL_PATH;
    modelNote = 'embedded default model';
  } else if (!modelPath) {
    modelPath = writeTestModel(tmp, 'test.onnx');
    modelNote = 'generated test model (embedded default model not present)';
  }

  // inputs
  let inputs;
  let inputNote;
  const labDir = path.join(ROOT, 'test', 'fixtures', 'lab');
  const dir = o.files ?? (fs.existsSync(labDir) ? labDir : undefined);
  const files = dir && !o.size ? listDicoms(dir) : [];
  if (o.size) {
    // radiograph-sized inputs: 16-bit (12 stored) N×N CRs without a VOI window, so preprocess takes its
    // percentile window (the costliest rule) over every pixel
    const { synthDicom, uid } = require('./bench-proxy.lib');
    inputs = [1, 2, 3].map((k) => new Uint8Array(synthDicom({ study: uid('bench-scan', o.size), series: uid('bench-scan-s', o.size), sop: uid('bench-scan-i', o.size, k), rows: o.size, cols: o.size, n: k })));
    inputNote = `3 synthetic 16-bit (12 stored) ${o.size}×${o.size} CR DICOMs without a VOI window (percentile windowing)`;
  } else if (files.length) {
    inputs = files.slice(0, Math.max(1, o.n)).map((f) => new Uint8Array(fs.readFileSync(f)));
    inputNote = `${inputs.length} DICOM files from ${path.relative(ROOT, dir) || dir}`;
  } else {
    inputs = Array.from({ length: Math.min(8, o.n) }, (_, i) => syntheticDicom(224, 224, i + 1));
    inputNote = `${inputs.length} synthetic 8-bit MONOCHROME2 224×224 CR DICOMs (Explicit VR LE)`;
  }

  const logger = require('pino')({ level: 'warn' }, require('pino').destination(2));
  const views = o.views ?? (modelPath === DEFAULT_MODEL_PATH ? [] : shippedViews());
  const { pipeline } = await compose({
    modelPath, bundlePath: modelPath === DEFAULT_MODEL_PATH ? undefined : null, views,
    workers: o.workers, threadsPerWorker: o.threads, timeoutMs: 0, logger,
  });
  const ex = (await pipeline.scan(inputs[0])).record;
  if (ex.status !== 'scanned') throw new Error(`bench input did not scan: ${JSON.stringify(ex)}`);

  // warm-up (JIT, ORT arenas)
  for (let i = 0; i < 5; i++) await pipeline.scan(inputs[i % inputs.length]);

  // Whole scans and bare inferences, interleaved so that load drift on a shared machine hits both alike.
  // Sequential: latency, not throughput. Bare = session.run on the same tensor in the same worker setup.
  const decoded = await decodeInstance(inputs[0]);
  const input = preprocess(decoded, pipeline.manifest);
  const stages = { decode: [], preprocess: [], inference: [], detect: [], total: [] };
  const bareRun = [];
  const roundTrip = [];
  for (let i = 0; i < o.n; i++) {
    const rec = (await pipeline.scan(inputs[i % inputs.length])).record;
    for (const k of Object.keys(stages)) if (typeof rec.timings[k] === 'number') stages[k].push(rec.timings[k]);
    const res = await pipeline.infer({ tensor: new Float32Array(input.tensor), shape: input.shape });
    bareRun.push(res.runMs);
    roundTrip.push(res.totalMs);
  }
  // bare session.run on the main thread, for reference (blocks the loop; only here)
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(modelPath, {
    graphOptimizationLevel: 'all', intraOpNumThreads: pipeline.pool.threadsPerWorker, interOpNumThreads: 1, executionProviders: ['cpu'],
  });
  const feeds = { [pipeline.manifest.input.name]: new ort.Tensor('float32', input.tensor, input.shape) };
  for (let i = 0; i < 3; i++) await session.run(feeds);
  const mainRun = [];
  for (let i = 0; i < o.n; i++) {
    const t = performance.now();
    await session.run(feeds);
    mainRun.push(performance.now() - t);
  }
  await pipeline.close();
  fs.rmSync(tmp, { recursive: true, force: true });

  const result = {
    machine: `${os.cpus()[0].model.trim()} × ${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, load ${os.loadavg()[0].toFixed(2)}`,
    model: `${path.relative(ROOT, modelPath).startsWith('..') ? path.basename(modelPath) : path.relative(ROOT, modelPath)} — ${modelNote} (${pipeline.manifest.name} ${pipeline.manifest.version}, input ${pipeline.manifest.input.shape.join('×')})`,
    inputs: inputNote,
    n: o.n, workers: pipeline.pool.size, threadsPerWorker: pipeline.pool.threadsPerWorker, provider: pipeline.provider,
    detectors: pipeline.bundle ? pipeline.bundle.names : [],
    views: pipeline.views,
    medianMs: Object.fromEntries(Object.entries(stages).filter(([, v]) => v.length).map(([k, v]) => [k, +pct(v, 0.5).toFixed(3)])),
    meanMs: Object.fromEntries(Object.entries(stages).filter(([, v]) => v.length).map(([k, v]) => [k, +mean(v).toFixed(3)])),
    p95Ms: Object.fromEntries(Object.entries(stages).filter(([, v]) => v.length).map(([k, v]) => [k, +pct(v, 0.95).toFixed(3)])),
    bare: {
      sessionRunInWorkerMs: +mean(bareRun).toFixed(3), sessionRunInWorkerMedianMs: +pct(bareRun, 0.5).toFixed(3),
      roundTripMs: +mean(roundTrip).toFixed(3), sessionRunMainThreadMs: +mean(mainRun).toFixed(3),
    },
  };
  result.ratio = +(result.meanMs.total / result.bare.sessionRunInWorkerMs).toFixed(3);
  result.ratioMedian = +(result.medianMs.total / result.bare.sessionRunInWorkerMedianMs).toFixed(3);
  if (o.json) {
    console.log(JSON.stringify(result));
    return;
  }
  console.log(`machine   ${result.machine}`);
  console.log(`model     ${result.model}`);
  console.log(`inputs    ${result.inputs}; n=${o.n} sequential scans; ${result.workers} worker × ${result.threadsPerWorker} thread(s); provider ${result.provider}; detectors ${result.detectors.join(',') || 'none'}; views ${result.views.join(',') || 'none'}`);
  console.log('');
  console.log('stage        mean ms  median ms    p95 ms   share of mean');
  for (const k of Object.keys(result.meanMs)) {
    console.log(`${k.padEnd(10)} ${result.meanMs[k].toFixed(3).padStart(9)} ${result.medianMs[k].toFixed(3).padStart(10)} ${result.p95Ms[k].toFixed(3).padStart(9)}   ${k === 'total' ? '' : `${((100 * result.meanMs[k]) / result.meanMs.total).toFixed(1)} %`}`);
  }
  console.log('');
  console.log(`bare inference (session.run in the worker)      ${result.bare.sessionRunInWorkerMs.toFixed(3)} ms (median ${result.bare.sessionRunInWorkerMedianMs.toFixed(3)})`);
  console.log(`  pool round trip (queue + transfer + run)      ${result.bare.roundTripMs.toFixed(3)} ms`);
  console.log(`  session.run on the main thread (reference)    ${result.bare.sessionRunMainThreadMs.toFixed(3)} ms`);
  console.log(`whole scan ÷ bare inference                     ${result.ratio.toFixed(3)} (means), ${result.ratioMedian.toFixed(3)} (medians)`);
}

main().catch((err) => {
  console.error(`bench:scan: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});

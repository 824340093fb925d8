#!/usr/bin/env node
'use strict';
// npm run bench:proxy — two ratios in one run (a benchmark, not a test):
//  1. pass-through WADO-RS throughput via Warden ÷ direct Orthanc (goal ≥ 0.95): a whole study retrieved
//     with transfer-syntax=*, rounds rotating direct / via Warden / via a bare Node TCP relay (the relay is the
//     floor for any Node proxy on the same cores: it copies the bytes and parses nothing);
//  2. per-instance scan latency through the gateway ÷ bare inference (goal ≤ 1.15): one instance per STOW-RS
//     request through `warden serve` (upstream: a loopback sink); the gateway's own `scan` time from its
//     Server-Timing header (last byte received → verdict) and the client's whole round trip, each ÷ bare
//     session.run of the same instance's tensor in a worker with the same model and threads, interleaved,
//     medians. Two models: the embedded one with its bundle, and a ResNet-50-size extractor
//     (BENCH_HEAVY_MODEL, else data/resnet50.onnx from `lab/run.sh resnet50`, else a generated ~4 GFLOP one).
// Appends the numbers to docs/performance.md. Bounded: fixed round counts, every wait has a deadline.
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { request } = require('undici');
const L = require('./bench-proxy.lib');

const STUDY_INSTANCES = Number(process.env.BENCH_STUDY_INSTANCES || 16);
const SIZE = Number(process.env.BENCH_SIZE || 1024);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 8);
const LAT_N = Number(process.env.BENCH_LATENCY_N || 20);
const HEAVY_MODEL = process.env.BENCH_HEAVY_MODEL || null;
let step = 'start';

async function stowDirect(url, instances) {
  const boundary = 'benchboundary';
  const chunks = [];
  for (const b of instances) chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), b, Buffer.from('\r\n'));
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  const res = await request(`${url}/studies`, { method: 'POST', body: Buffer.concat(chunks), headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: 'application/dicom+json' } });
  await res.body.text();
  return res.statusCode;
}

async function retrieve(url) {
  const t = process.hrtime.bigint();
  const res = await request(url, { headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  let bytes = 0;
  for await (const c of res.body) bytes += c.length;
  if (res.statusCode !== 200) throw new Error(`${url}: HTTP ${res.statusCode}`);
  return { bytes, s: Number(process.hrtime.bigint() - t) / 1e9 };
}

/** Server-Timing's `name;dur=…` value, in ms. */
function timing(header, name) {
  const m = new RegExp(`(?:^|,)\\s*${name};dur=([0-9.]+)`).exec(String(header ?? ''));
  if (!m) throw new Error(`no ${name} in Server-Timing "${header}"`);
  return Number(m[1]);
}

/**
 * One model: `warden serve` with it (upstream: the loopback sink) and, in this process, a ScanPipeline with the
 * same model and thread settings for bare session.run of the same instance's tensor. Interleaved one to one, so
 * that load drift hits both alike; the two never run at the same time.
 */
async function latency(m, instance, sink) {
  const { compose } = require(path.join(L.ROOT, 'dist', 'pipeline'));
  const { decodeInstance } = require(path.join(L.ROOT, 'dist', 'dicom'));
  const { preprocess } = require(path.join(L.ROOT, 'dist', 'models', 'preprocess.js'));
  step = `latency: ${m.label}`;
  const env = m.modelPath ? { WARDEN_MODEL_PATH: m.modelPath, WARDEN_BUNDLE_PATH: '' } : {};
  const warden = await L.startWarden(sink.url, env);
  const { pipeline } = await compose(m.modelPath ? { modelPath: m.modelPath, bundlePath: null } : {});
  try {
    const input = preprocess(await decodeInstance(new Uint8Array(instance)), pipeline.manifest);
    const boundary = 'latboundary';
    const body = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), instance, Buffer.from(`\r\n--${boundary}--\r\n`)]);
    const bare = []; const scan = []; const roundTrip = [];
    for (let i = 0; i < LAT_N + 3; i++) {
      const t = process.hrtime.bigint();
      const res = await request(`${warden.dicomWeb}/studies`, { method: 'POST', body, headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}` } });
      await res.body.text();
      const rt = Number(process.hrtime.bigint() - t) / 1e6;
      if (res.statusCode >= 300 && res.statusCode !== 409) throw new Error(`gateway STOW-RS HTTP ${res.statusCode}`);
      const r = await pipeline.infer({ tensor: new Float32Array(input.tensor), shape: input.shape });
      if (i < 3) continue;
      roundTrip.push(rt);
      scan.push(timing(res.headers['server-timing'], 'scan'));
      bare.push(r.runMs);
    }
    return { label: m.label, bare: L.median(bare), scan: L.median(scan), roundTrip: L.median(roundTrip) };
  } finally {
    await pipeline.close();
    await warden.stop();
  }
}

async function main() {
  const started = new Date().toISOString();
  const orthanc = await L.startOrthanc();
  const sink = await L.startSink();
  let wardenO = null;
  let relay = null;
  try {
    // --- 1. WADO-RS pass-through
    const study = L.uid('bench-proxy-study');
    const instances = Array.from({ length: STUDY_INSTANCES }, (_, i) => L.synthDicom({ study, series: L.uid('bench-proxy-series'), sop: L.uid('bench-proxy', i), rows: SIZE, cols: SIZE, n: i + 1 }));
    step = 'loading the study into Orthanc';
    const st = await stowDirect(orthanc.dicomWeb, instances);
    if (st !== 200) throw new Error(`Orthanc refused the bench study (HTTP ${st})`);
    wardenO = await L.startWarden(orthanc.dicomWeb);
    relay = await L.startTcpRelay(new URL(orthanc.url).port);
    const paths = { direct: `${orthanc.dicomWeb}/studies/${study}`, warden: `${wardenO.dicomWeb}/studies/${study}`, relay: `${relay.url}/dicom-web/studies/${study}` };
    step = 'WADO-RS rounds';
    for (const k of ['direct', 'warden', 'relay']) await retrieve(paths[k]); // warm-up
    const tot = { direct: { bytes: 0, s: 0 }, warden: { bytes: 0, s: 0 }, relay: { bytes: 0, s: 0 } };
    const cpuPid = { warden: wardenO.child.pid, relay: relay.pid };
    const cpuMs = { warden: 0, relay: 0 };
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of r % 2 ? ['warden', 'relay', 'direct'] : ['direct', 'relay', 'warden']) {
        const c0 = cpuPid[k] ? L.cpuMsOf(cpuPid[k]) : 0;
        const x = await retrieve(paths[k]);
        if (cpuPid[k]) cpuMs[k] += L.cpuMsOf(cpuPid[k]) - c0;
        tot[k].bytes += x.bytes; tot[k].s += x.s;
      }
    }
    const mbps = (k) => tot[k].bytes / tot[k].s / 1e6;
    // CPU per MB relayed: less sensitive than MB/s to what else runs on the cores
    const cpuPerMb = (k) => cpuMs[k] / (tot[k].bytes / 1e6);
    const wadoRatio = mbps('warden') / mbps('direct');
    console.log(`WADO-RS study retrieve (${STUDY_INSTANCES} × ${SIZE}² 16-bit, ${(tot.direct.bytes / ROUNDS / 1e6).toFixed(1)} MB, ${ROUNDS} rounds each):`);
    console.log(`  direct Orthanc ${mbps('direct').toFixed(1)} MB/s, via Warden ${mbps('warden').toFixed(1)} MB/s → ratio ${wadoRatio.toFixed(3)} (goal ≥ 0.95)`);
    console.log(`  via a bare Node TCP relay (no HTTP parsing, the floor for a Node proxy on this machine) ${mbps('relay').toFixed(1)} MB/s → ${(mbps('relay') / mbps('direct')).toFixed(3)}`);
    console.log(`  CPU per MB passed through: Warden ${cpuPerMb('warden').toFixed(2)} ms/MB, TCP relay ${cpuPerMb('relay').toFixed(2)} ms/MB`);
    await wardenO.stop(); wardenO = null;

    // --- 2. scan latency: gateway vs bare inference, per model
    const manifest = path.join(L.ROOT, 'test', 'fixtures', 'lab', 'manifest.csv');
    let instance; let source;
    if (fs.existsSync(manifest)) {
      const [h, ...ls] = fs.readFileSync(manifest, 'utf8').trim().split(/\r?\n/);
      const cols = h.split(',');
      const row = ls.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i], v]))).find((r) => r.kind === 'clean');
      instance = fs.readFileSync(path.resolve(path.dirname(manifest), row.file)); source = `lab fixture ${row.file}`;
    } else {
      instance = L.synthDicom({ study: L.uid('lat'), series: L.uid('lat-s'), sop: L.uid('lat-i'), rows: SIZE, cols: SIZE }); source = `synthetic ${SIZE}² CR`;
    }
    const models = [{ label: 'embedded warden-cxr-ref + its detector bundle', modelPath: null }];
    const heavyPath = HEAVY_MODEL || (fs.existsSync(path.join(L.ROOT, 'data', 'resnet50.onnx')) ? path.join(L.ROOT, 'data', 'resnet50.onnx') : null);
    if (heavyPath) models.push({ label: `${path.basename(heavyPath)} (ResNet-50 size), no detector bundle`, modelPath: heavyPath });
    else {
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bench-heavy-'));
      const { writeTestModel } = require(path.join(L.ROOT, 'test', 'fixtures', 'onnx', 'build-test-model.js'));
      models.push({ label: 'synthetic heavy extractor (~4 GFLOP, ResNet-50-like cost), no detector bundle', modelPath: writeTestModel(tmp, 'heavy.onnx', { slowLayers: 4, slowWidth: 32 }), tmp });
    }
    const latRows = [];
    for (const m of models) latRows.push(await latency(m, instance, sink));
    for (const m of models) if (m.tmp) fs.rmSync(m.tmp, { recursive: true, force: true });
    console.log(`Scan latency per instance (${source}; ${LAT_N} interleaved runs after 3 warm-ups; medians):`);
    for (const r of latRows) {
      console.log(`  ${r.label}: bare session.run ${r.bare.toFixed(1)} ms; in the gateway (Server-Timing scan) ${r.scan.toFixed(1)} ms → ratio ${(r.scan / r.bare).toFixed(3)} (goal ≤ 1.15);`
        + ` whole STOW-RS round trip ${r.roundTrip.toFixed(1)} ms → ${(r.roundTrip / r.bare).toFixed(3)}`);
    }

    L.appendPerformance(`
## Gateway: bench:proxy (${started.slice(0, 16)}Z, ${os.cpus().length} cores, ${os.cpus()[0].model.trim()}, load ${os.loadavg()[0].toFixed(1)})

Written by \`npm run bench:proxy\` (scripts/bench-proxy.js); shared machine, so expect noise between runs.

| measure | direct / bare | via Warden | ratio | goal |
|---|---:|---:|---:|---|
| WADO-RS study retrieve, transfer-syntax=* (${STUDY_INSTANCES} × ${SIZE}² 16-bit, ${ROUNDS} rounds); Warden CPU ${cpuPerMb('warden').toFixed(2)} ms/MB | ${mbps('direct').toFixed(1)} MB/s | ${mbps('warden').toFixed(1)} MB/s | ${wadoRatio.toFixed(3)} | ≥ 0.95 |
| same, through a bare Node TCP relay (no HTTP; the floor for any Node proxy here); relay CPU ${cpuPerMb('relay').toFixed(2)} ms/MB | ${mbps('direct').toFixed(1)} MB/s | ${mbps('relay').toFixed(1)} MB/s | ${(mbps('relay') / mbps('direct')).toFixed(3)} | — |
${latRows.map((r) => `| scan latency in the gateway (Server-Timing \`scan\`) ÷ bare session.run, median of ${LAT_N}; ${r.label} | ${r.bare.toFixed(1)} ms | ${r.scan.toFixed(1)} ms | ${(r.scan / r.bare).toFixed(3)} | ≤ 1.15 |
| whole STOW-RS round trip (client → Warden → loopback sink → client) ÷ bare session.run; ${r.label} | ${r.bare.toFixed(1)} ms | ${r.roundTrip.toFixed(1)} ms | ${(r.roundTrip / r.bare).toFixed(3)} | — |`).join('\n')}
`);
  } finally {
    if (wardenO) await wardenO.stop();
    if (relay) await relay.stop();
    await sink.close();
    await orthanc.stop();
  }
}

main().catch((err) => { console.error(`bench:proxy failed at ${step}: ${err.stack || err}`); process.exitCode = 1; });

#!/usr/bin/env node
'use strict';
// npm run bench:proxy — two ratios in one run (a benchmark, not a test):
//  1. pass-through WADO-RS throughput via Warden ÷ direct Orthanc (goal ≥ 0.95): a whole study retrieved
//     with transfer-syntax=*, rounds alternating direct / via Warden;
//  2. per-instance scan latency through the gateway ÷ bare inference (goal ≤ 1.15): the client-observed
//     STOW-RS round trip of one instance through `warden serve` (upstream: a loopback sink) versus
//     ScanPipeline.scan() of the same bytes in-process (decode → preprocess → inference → detect), medians.
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

async function main() {
  const started = new Date().toISOString();
  const orthanc = await L.startOrthanc();
  const sink = await L.startSink();
  let wardenO = null;
  let wardenS = null;
  try {
    // --- 1. WADO-RS pass-through
    const study = L.uid('bench-proxy-study');
    const instances = Array.from({ length: STUDY_INSTANCES }, (_, i) => L.synthDicom({ study, series: L.uid('bench-proxy-series'), sop: L.uid('bench-proxy', i), rows: SIZE, cols: SIZE, n: i + 1 }));
    step = 'loading the study into Orthanc';
    const st = await stowDirect(orthanc.dicomWeb, instances);
    if (st !== 200) throw new Error(`Orthanc refused the bench study (HTTP ${st})`);
    wardenO = await L.startWarden(orthanc.dicomWeb);
    const paths = { direct: `${orthanc.dicomWeb}/studies/${study}`, warden: `${wardenO.dicomWeb}/studies/${study}` };
    step = 'WADO-RS rounds';
    for (const k of ['direct', 'warden']) await retrieve(paths[k]); // warm-up
    const tot = { direct: { bytes: 0, s: 0 }, warden: { bytes: 0, s: 0 } };
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of r % 2 ? ['warden', 'direct'] : ['direct', 'warden']) {
        const x = await retrieve(paths[k]);
        tot[k].bytes += x.bytes; tot[k].s += x.s;
      }
    }
    const mbps = (k) => tot[k].bytes / tot[k].s / 1e6;
    const wadoRatio = mbps('warden') / mbps('direct');
    console.log(`WADO-RS study retrieve (${STUDY_INSTANCES} × ${SIZE}² 16-bit, ${(tot.direct.bytes / ROUNDS / 1e6).toFixed(1)} MB, ${ROUNDS} rounds each):`);
    console.log(`  direct Orthanc ${mbps('direct').toFixed(1)} MB/s, via Warden ${mbps('warden').toFixed(1)} MB/s → ratio ${wadoRatio.toFixed(3)} (goal ≥ 0.95)`);
    await wardenO.stop(); wardenO = null;

    // --- 2. scan latency: gateway vs bare pipeline
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
    const { ScanPipeline } = require(path.join(L.ROOT, 'dist', 'pipeline'));
    step = 'bare scans';
    const pipeline = await ScanPipeline.create({});
    const bare = [];
    for (let i = 0; i < LAT_N + 3; i++) {
      const t = process.hrtime.bigint();
      const rec = await pipeline.scan(new Uint8Array(instance), { partIndex: 0 });
      if (i >= 3) bare.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (rec.status === 'error') throw new Error(`bare scan failed: ${rec.error.code}`);
    }
    const detectors = pipeline.bundle ? pipeline.bundle.names.join(',') : 'none (no bundle)';
    await pipeline.close();
    step = 'gateway scans';
    wardenS = await L.startWarden(sink.url);
    const boundary = 'latboundary';
    const body = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), instance, Buffer.from(`\r\n--${boundary}--\r\n`)]);
    const gw = [];
    for (let i = 0; i < LAT_N + 3; i++) {
      const t = process.hrtime.bigint();
      const res = await request(`${wardenS.dicomWeb}/studies`, { method: 'POST', body, headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}` } });
      await res.body.text();
      if (res.statusCode >= 300 && res.statusCode !== 409) throw new Error(`gateway STOW-RS HTTP ${res.statusCode}`);
      if (i >= 3) gw.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    const latRatio = L.median(gw) / L.median(bare);
    console.log(`Scan latency per instance (${source}, detectors: ${detectors}, ${LAT_N} runs after 3 warm-ups):`);
    console.log(`  bare ScanPipeline.scan median ${L.median(bare).toFixed(1)} ms; STOW-RS through warden serve median ${L.median(gw).toFixed(1)} ms → ratio ${latRatio.toFixed(3)} (goal ≤ 1.15)`);

    L.appendPerformance(`
## Gateway: bench:proxy (${started.slice(0, 16)}Z, ${os.cpus().length} cores, ${os.cpus()[0].model.trim()})

Written by \`npm run bench:proxy\` (scripts/bench-proxy.js); shared machine, so expect noise between runs.

| measure | direct / bare | via Warden | ratio | goal |
|---|---:|---:|---:|---|
| WADO-RS study retrieve, transfer-syntax=* (${STUDY_INSTANCES} × ${SIZE}² 16-bit, ${ROUNDS} rounds) | ${mbps('direct').toFixed(1)} MB/s | ${mbps('warden').toFixed(1)} MB/s | ${wadoRatio.toFixed(3)} | ≥ 0.95 |
| scan latency per instance, median of ${LAT_N} (${source}; detectors ${detectors}) | ${L.median(bare).toFixed(1)} ms | ${L.median(gw).toFixed(1)} ms | ${latRatio.toFixed(3)} | ≤ 1.15 |
`);
  } finally {
    if (wardenO) await wardenO.stop();
    if (wardenS) await wardenS.stop();
    await sink.close();
    await orthanc.stop();
  }
}

main().catch((err) => { console.error(`bench:proxy failed at ${step}: ${err.stack || err}`); process.exitCode = 1; });

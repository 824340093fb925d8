#!/usr/bin/env node
'use strict';
// npm run bench:memory — streams multi-instance STOW-RS studies of growing size (default 256 MB and 1 GB)
// through `warden serve` (embedded model; upstream: an in-process loopback sink that discards the body) and
// reports Warden's peak RSS (VmHWM, a fresh process per size) — goal ≤ 300 MB and flat in study size.
// The client generates each synthetic instance on the fly, so the client holds one instance at a time.
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { request } = require('undici');
const L = require('./bench-proxy.lib');

// As deployed (deploy/helm values mallocMmapThreshold, scripts/demo.sh): glibc serves big buffers from mmap and
// returns them when freed. MALLOC_MMAP_THRESHOLD_= (empty) in the environment measures glibc's default instead.
const MMAP_THRESHOLD = process.env.MALLOC_MMAP_THRESHOLD_ ?? '131072';
const ARENA_MAX = process.env.MALLOC_ARENA_MAX ?? '2';
const SIZES_MB = (process.env.BENCH_SIZES_MB || '256,1024').split(',').map(Number);
const EDGE = Number(process.env.BENCH_EDGE || 2048); // 2048² × 16-bit = 8 MiB per instance

async function runOne(targetMb, sink) {
  const perInstance = EDGE * EDGE * 2 + 1024;
  const count = Math.ceil((targetMb * 1024 * 1024) / perInstance);
  // Empty values are passed as empty (glibc's defaults): unset ones would make `warden serve` re-exec itself
  // with its own malloc tuning, and this script would then measure the wrapper process.
  // adversarial.blockFpr below the bundle's smallest reachable p-value: the synthetic instances are flagged and forwarded,
  // so the forward path (upstream request built from the spooled original bytes) is measured too.
  const configFile = path.join(os.tmpdir(), `warden-bench-memory-${process.pid}.yaml`);
  fs.writeFileSync(configFile, 'policy:\n  adversarial:\n    flagFpr: 0.05\n    blockFpr: 0.0001\n');
  const env = { WARDEN_LOG_LEVEL: 'error', WARDEN_CONFIG: configFile, MALLOC_MMAP_THRESHOLD_: MMAP_THRESHOLD, MALLOC_ARENA_MAX: ARENA_MAX };
  const warden = await L.startWarden(sink.url, env);
  try {
    const base = L.rssOf(warden.child.pid);
    const before = sink.bytes;
    const study = L.uid('bench-mem', targetMb);
    const boundary = 'memboundary';
    let peakSampled = 0;
    // RSS sampled every 100 ms: the peak per quarter of the request's duration tells a creep from a spike
    const samples = [];
    const timer = setInterval(() => {
      try {
        const rss = L.rssOf(warden.child.pid).rss;
        peakSampled = Math.max(peakSampled, rss);
        samples.push([Date.now(), rss]);
      } catch { /* exited */ }
    }, 100);
    const t = Date.now();
    const res = await request(`${warden.dicomWeb}/studies/${study}`, {
      method: 'POST',
      body: L.stowBody(count, (i) => L.synthDicom({ study, series: L.uid('bench-mem-s', targetMb), sop: L.uid('bench-mem-i', targetMb, i), rows: EDGE, cols: EDGE, n: i + 1 }), boundary),
      headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}` },
      headersTimeout: 900000, bodyTimeout: 900000,
    });
    const text = await res.body.text();
    clearInterval(timer);
    const secs = (Date.now() - t) / 1000;
    const quarters = [0, 0, 0, 0];
    for (const [at, rss] of samples) { const q = Math.min(3, Math.floor((4 * (at - t)) / (secs * 1000))); quarters[q] = Math.max(quarters[q], rss); }
    const { hwm } = L.rssOf(warden.child.pid);
    let stored = 0;
    try { stored = (JSON.parse(text)['00081199'] || { Value: [] }).Value.length; } catch { /* not JSON */ }
    return { targetMb, count, status: res.statusCode, stored, secs, forwardedMb: (sink.bytes - before) / 1048576, baseMb: base.rss / 1048576, peakMb: hwm / 1048576, quartersMb: quarters.map((q) => Math.round(q / 1048576)) };
  } finally {
    await warden.stop();
    fs.rmSync(configFile, { force: true });
  }
}

async function main() {
  const started = new Date().toISOString();
  const sink = await L.startSink();
  const rows = [];
  try {
    for (const mb of SIZES_MB) {
      const r = await runOne(mb, sink);
      rows.push(r);
      console.log(`${r.targetMb} MB study: ${r.count} instances of ${EDGE}² 16-bit, HTTP ${r.status}, ${r.stored} stored, ${r.forwardedMb.toFixed(0)} MB forwarded in ${r.secs.toFixed(1)} s; Warden RSS at start ${r.baseMb.toFixed(0)} MB, peak ${r.peakMb.toFixed(0)} MB (goal ≤ 300); sampled peak per quarter of the request ${r.quartersMb.join('/')} MB`);
    }
  } finally {
    await sink.close();
  }
  L.appendPerformance(`
## Gateway: bench:memory (${started.slice(0, 16)}Z, ${os.cpus().length} cores)

Written by \`npm run bench:memory\` (scripts/bench-memory.js): one STOW-RS request per size through \`warden serve\`
(embedded model, default limits: parts ≤ 2 MiB in memory within a 32 MiB budget, larger ones spooled to a temp
file; scans bounded by limits.scanMemoryBytes${process.env.WARDEN_CONFIG ? `; config ${process.env.WARDEN_CONFIG}` : ''}) to a loopback sink, with
MALLOC_MMAP_THRESHOLD_=${MMAP_THRESHOLD || '(glibc default)'} and MALLOC_ARENA_MAX=${ARENA_MAX || '(glibc default)'} (as the Helm chart deploys); peak RSS is the Warden process's VmHWM (a fresh process per size),
the quarter columns the sampled peak over each quarter of the request. Goal ≤ 300 MB, flat.

| study | instances | HTTP | forwarded | time | RSS at start | peak RSS | sampled peak by quarter |
|---:|---:|---:|---:|---:|---:|---:|---:|
${rows.map((r) => `| ${r.targetMb} MB | ${r.count} × ${EDGE}² | ${r.status} | ${r.forwardedMb.toFixed(0)} MB | ${r.secs.toFixed(1)} s | ${r.baseMb.toFixed(0)} MB | ${r.peakMb.toFixed(0)} MB | ${r.quartersMb.join(' / ')} MB |`).join('\n')}
`);
}

main().catch((err) => { console.error(`bench:memory failed: ${err.stack || err}`); process.exitCode = 1; });

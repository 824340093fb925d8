#!/usr/bin/env node
'use strict';
// npm run bench:memory — streams multi-instance STOW-RS studies of growing size (default 256 MB and 1 GB)
// through `warden serve` (embedded model; upstream: an in-process loopback sink that discards the body) and
// reports Warden's peak RSS (VmHWM, a fresh process per size) — goal ≤ 300 MB and flat in study size.
// The client generates each synthetic instance on the fly, so the client holds one instance at a time.
const os = require('node:os');
const { request } = require('undici');
const L = require('./bench-proxy.lib');

const SIZES_MB = (process.env.BENCH_SIZES_MB || '256,1024').split(',').map(Number);
const EDGE = Number(process.env.BENCH_EDGE || 2048); // 2048² × 16-bit = 8 MiB per instance

async function runOne(targetMb, sink) {
  const perInstance = EDGE * EDGE * 2 + 1024;
  const count = Math.ceil((targetMb * 1024 * 1024) / perInstance);
  const warden = await L.startWarden(sink.url, { WARDEN_LOG_LEVEL: 'error' });
  try {
    const base = L.rssOf(warden.child.pid);
    const before = sink.bytes;
    const study = L.uid('bench-mem', targetMb);
    const boundary = 'memboundary';
    let peakSampled = 0;
    const timer = setInterval(() => { try { peakSampled = Math.max(peakSampled, L.rssOf(warden.child.pid).rss); } catch { /* exited */ } }, 100);
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
    const { hwm } = L.rssOf(warden.child.pid);
    let stored = 0;
    try { stored = (JSON.parse(text)['00081199'] || { Value: [] }).Value.length; } catch { /* not JSON */ }
    return { targetMb, count, status: res.statusCode, stored, secs, forwardedMb: (sink.bytes - before) / 1048576, baseMb: base.rss / 1048576, peakMb: hwm / 1048576 };
  } finally {
    await warden.stop();
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
      console.log(`${r.targetMb} MB study: ${r.count} instances of ${EDGE}² 16-bit, HTTP ${r.status}, ${r.stored} stored, ${r.forwardedMb.toFixed(0)} MB forwarded in ${r.secs.toFixed(1)} s; Warden RSS at start ${r.baseMb.toFixed(0)} MB, peak ${r.peakMb.toFixed(0)} MB (goal ≤ 300)`);
    }
  } finally {
    await sink.close();
  }
  L.appendPerformance(`
## Gateway: bench:memory (${started.slice(0, 16)}Z, ${os.cpus().length} cores)

Written by \`npm run bench:memory\` (scripts/bench-memory.js): one STOW-RS request per size through \`warden serve\`
(embedded model, default limits: parts ≤ 8 MiB in memory within a 32 MiB budget, larger ones spooled to a temp
file) to a loopback sink; peak RSS is the Warden process's VmHWM (a fresh process per size). Goal ≤ 300 MB, flat.

| study | instances | HTTP | forwarded | time | RSS at start | peak RSS |
|---:|---:|---:|---:|---:|---:|---:|
${rows.map((r) => `| ${r.targetMb} MB | ${r.count} × ${EDGE}² | ${r.status} | ${r.forwardedMb.toFixed(0)} MB | ${r.secs.toFixed(1)} s | ${r.baseMb.toFixed(0)} MB | ${r.peakMb.toFixed(0)} MB |`).join('\n')}
`);
}

main().catch((err) => { console.error(`bench:memory failed: ${err.stack || err}`); process.exitCode = 1; });

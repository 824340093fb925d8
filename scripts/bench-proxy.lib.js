'use strict';
// Shared helpers for scripts/bench-proxy.js and scripts/bench-memory.js (named bench-proxy.lib.js to stay in the bench-proxy.* files) (plain JS: runs on the built dist/).
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function waitHttp(url, seconds, child) {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`${url}: process exited during start-up`);
    try { const r = await fetch(url, { signal: AbortSignal.timeout(1000) }); await r.arrayBuffer(); if (r.ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready after ${seconds}s`);
}

function stopChild(child, ms = 15000) {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null) return resolve();
    const t = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }, ms);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    try { process.kill(child.pid, 'SIGTERM'); } catch { resolve(); }
  });
}

async function startOrthanc() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bench-orthanc-'));
  const port = await freePort();
  const cfg = { Name: 'bench', StorageDirectory: dir, IndexDirectory: dir, Plugins: ['/usr/share/orthanc/plugins/libOrthancDicomWeb.so'],
    HttpPort: port, RemoteAccessAllowed: false, AuthenticationEnabled: false, DicomServerEnabled: false, StableAge: 3600,
    DicomWeb: { Enable: true, Root: '/dicom-web/', EnableWado: true } };
  fs.writeFileSync(path.join(dir, 'orthanc.json'), JSON.stringify(cfg));
  const child = spawn(process.env.ORTHANC_BIN || '/usr/sbin/Orthanc', [path.join(dir, 'orthanc.json')], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/dicom-web/studies`, 30, child);
  return { url, dicomWeb: `${url}/dicom-web`, child, async stop() { await stopChild(child); fs.rmSync(dir, { recursive: true, force: true }); } };
}

/** Starts `warden serve` as its own process (so its RSS is its own); returns url, pid, child. */
async function startWarden(upstream, extraEnv = {}) {
  const port = await freePort();
  const logFile = path.join(os.tmpdir(), `warden-bench-${process.pid}-${port}.log`);
  const out = fs.openSync(logFile, 'w');
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), 'serve'], {
    cwd: ROOT, stdio: ['ignore', out, out],
    env: { ...process.env, WARDEN_UPSTREAM_URL: upstream, WARDEN_PORT: String(port), WARDEN_HOST: '127.0.0.1', WARDEN_LOG_LEVEL: 'warn', ...extraEnv },
  });
  fs.closeSync(out);
  const url = `http://127.0.0.1:${port}`;
  await waitHttp(`${url}/healthz`, 120, child);
  return { url, dicomWeb: `${url}/dicom-web`, child, logFile, async stop() { await stopChild(child); } };
}

/**
 * A bare TCP relay in its own process (no HTTP parsing): what any Node proxy between the same two sockets
 * costs on this machine, as a floor for the WADO-RS pass-through ratio.
 */
async function startTcpRelay(upstreamPort) {
  const port = await freePort();
  const code = `require('node:net').createServer((c) => { const u = require('node:net').connect(${Number(upstreamPort)}, '127.0.0.1');`
    + ` c.pipe(u); u.pipe(c); c.on('error', () => u.destroy()); u.on('error', () => c.destroy()); }).listen(${port}, '127.0.0.1', () => console.log('ready'));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('TCP relay did not start in 10 s')), 10000);
    child.stdout.once('data', () => { clearTimeout(t); resolve(); });
    child.once('exit', () => { clearTimeout(t); reject(new Error('TCP relay exited during start-up')); });
  });
  return { url: `http://127.0.0.1:${port}`, pid: child.pid, async stop() { await stopChild(child); } };
}

/** CPU time (user + system, ms) used so far by a process and its direct children (warden serve re-executes itself once). */
function cpuMsOf(pid) {
  const one = (p) => {
    try { const f = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 1000 / CLOCK_TICKS; } catch { return 0; }
  };
  let children = [];
  try { children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number); } catch { /* none */ }
  return one(pid) + children.reduce((s, c) => s + one(c), 0);
}
const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Peak and current RSS of a process, from /proc (bytes). */
function rssOf(pid) {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s) || [0, 0])[1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

const uid = (...parts) => '2.25.' + BigInt('0x' + crypto.createHash('sha256').update(parts.join('|')).digest('hex').slice(0, 30)).toString();

/**
 * A synthetic Part-10 CR instance (Explicit VR Little Endian, MONOCHROME2, 16-bit, 12 stored), deterministic
 * pixel content (gradient + seeded noise). No patient data: the name is BENCH^SYNTH.
 */
function synthDicom({ study, series, sop, rows = 512, cols = 512, n = 1 }) {
  const el = (group, element, vr, value) => {
    const long = ['OB', 'OW', 'SQ', 'UN', 'UT', 'UC', 'UR'].includes(vr);
    let v = Buffer.isBuffer(value) ? value : Buffer.from(String(value), 'latin1');
    if (v.length % 2) v = Buffer.concat([v, Buffer.from([vr === 'UI' || vr === 'OB' ? 0 : 0x20])]);
    const h = Buffer.alloc(long ? 12 : 8);
    h.writeUInt16LE(group, 0); h.writeUInt16LE(element, 2); h.write(vr, 4, 'latin1');
    if (long) h.writeUInt32LE(v.length, 8); else h.writeUInt16LE(v.length, 6);
    return Buffer.concat([h, v]);
  };
  const us = (x) => { const b = Buffer.alloc(2); b.writeUInt16LE(x); return b; };
  const CR = '1.2.840.10008.5.1.4.1.1.1';
  const metaBody = Buffer.concat([
    el(2, 1, 'OB', Buffer.from([0, 1])), el(2, 2, 'UI', CR), el(2, 3, 'UI', sop), el(2, 0x10, 'UI', '1.2.840.10008.1.2.1'),
    el(2, 0x12, 'UI', '2.25.1234567890'),
  ]);
  const gl = Buffer.alloc(4); gl.writeUInt32LE(metaBody.length);
  const pixels = Buffer.alloc(rows * cols * 2);
  let seed = n * 2654435761 >>> 0;
  for (let i = 0; i < rows * cols; i++) {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    const r = Math.floor(i / cols), c = i % cols;
    pixels.writeUInt16LE(Math.min(4095, ((r * 7 + c * 3) % 3000) + (seed >>> 24)), i * 2);
  }
  const ds = Buffer.concat([
    el(8, 0x16, 'UI', CR), el(8, 0x18, 'UI', sop), el(8, 0x60, 'CS', 'CR'), el(0x10, 0x10, 'PN', 'BENCH^SYNTH'), el(0x10, 0x20, 'LO', 'BENCH'),
    el(0x18, 0x15, 'CS', 'CHEST'), el(0x20, 0x0d, 'UI', study), el(0x20, 0x0e, 'UI', series), el(0x20, 0x13, 'IS', String(n)),
    el(0x28, 2, 'US', us(1)), el(0x28, 4, 'CS', 'MONOCHROME2'), el(0x28, 0x10, 'US', us(rows)), el(0x28, 0x11, 'US', us(cols)),
    el(0x28, 0x100, 'US', us(16)), el(0x28, 0x101, 'US', us(12)), el(0x28, 0x102, 'US', us(11)), el(0x28, 0x103, 'US', us(0)),
    el(0x7fe0, 0x10, 'OW', pixels),
  ]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), el(2, 0, 'UL', gl), metaBody, ds]);
}

/** A STOW-RS body as an async generator: instances are generated on the fly (the client holds one at a time). */
function stowBody(count, make, boundary) {
  return (async function* () {
    for (let i = 0; i < count; i++) {
      const inst = make(i);
      yield Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`);
      yield inst;
      yield Buffer.from('\r\n');
    }
    yield Buffer.from(`--${boundary}--\r\n`);
  })();
}

/** An in-process STOW-RS sink: streams bodies away, counts bytes, answers 200 {}. */
async function startSink() {
  let bytes = 0;
  const server = http.createServer((req, res) => {
    req.on('data', (c) => { bytes += c.length; });
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(req.method === 'POST' ? '{}' : '[]'));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/dicom-web`, get bytes() { return bytes; }, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };

function appendPerformance(section) {
  const file = path.join(ROOT, 'docs', 'performance.md');
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Performance\n';
  fs.writeFileSync(file, text.replace(/\s*$/, '\n') + '\n' + section.trim() + '\n');
}

module.exports = { ROOT, freePort, waitHttp, stopChild, startOrthanc, startWarden, startTcpRelay, cpuMsOf, rssOf, uid, synthDicom, stowBody, startSink, median, appendPerformance };

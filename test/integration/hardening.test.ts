/**
 * The nine findings of the hardening issue, each pinned by a test that failed before its fix: a security gateway is
 * judged by its weakest path. Upstream: the in-process sink (and a fake WADO upstream that normalises paths the way
 * Orthanc does); the real pipeline where the finding is about scanning.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { startSink } from '../helpers/sink-upstream';
import { FakeScanner } from '../helpers/fake-scanner';
import { stow, failedItems, referencedUids, multipartBody } from '../helpers/stow';
import { readLabManifest } from '../helpers/lab-fixtures';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { loadConfig, validateConfig, type WardenConfigInput } from '../../src/config';
import { createLogger } from '../../src/core/logger';
import { hashUid, readHeader, setUidHashKey } from '../../src/dicom';
import { FAILURE_REASONS } from '../../src/proxy/failure-reasons';

jest.setTimeout(120000);

const CORPUS = path.join(__dirname, '..', '..', '..', 'shared', 'corpus', 'dicom', 'pydicom', 'dicomdirtests', '98892003');
const files = ['MR2/4981', 'MR2/5011', 'MR2/4950'].map((p) => fs.readFileSync(path.join(CORPUS, p)));
const uid = (b: Buffer): string => readHeader(b)!.sopInstanceUid!;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-hardening-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (cond()) return true; await sleep(25); }
  return cond();
}

type Sink = Awaited<ReturnType<typeof startSink>>;
async function withGateway(cfg: Partial<WardenConfigInput>, scanner: FakeScanner | null, fn: (w: RunningServer, sink: Sink) => Promise<void>): Promise<void> {
  const sink = await startSink();
  const config = validateConfig({
    ...cfg,
    upstream: { url: sink.url, ...(cfg.upstream ?? {}) },
    server: { port: 0, host: '127.0.0.1', stateDir: path.join(tmp, 'state'), ...(cfg.server ?? {}) },
    stow: { spoolDir: path.join(tmp, 'spool'), ...(cfg.stow ?? {}) },
  });
  const w = await startServer(config, { ...(scanner ? { scanner } : {}), logger: createLogger('silent'), eventStream: null });
  try { await fn(w, sink); } finally { await w.close(); await sink.close(); }
}

/** Sends raw bytes on a fresh connection; resolves with everything the server wrote before it closed (or `waitMs`). */
function raw(port: number, chunks: (string | Buffer)[], opts: { waitMs?: number; gapMs?: number } = {}): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let out = '';
    const done = (): void => { sock.destroy(); resolve(out); };
    const timer = setTimeout(done, opts.waitMs ?? 5000);
    sock.on('data', (d) => { out += d.toString('latin1'); });
    sock.on('close', () => { clearTimeout(timer); resolve(out); });
    sock.on('error', () => { /* a reset after the answer is expected */ });
    void (async () => {
      for (const c of chunks) {
        if (sock.destroyed) return;
        sock.write(c);
        if (opts.gapMs) await sleep(opts.gapMs);
      }
    })();
  });
}

const stowHead = (extra: string) => `POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/related; type="application/dicom"; boundary=bnd\r\n${extra}\r\n`;
const partHead = '--bnd\r\nContent-Type: application/dicom\r\n\r\n';

describe('1. no stuck admission slots', () => {
  it('releases the slot, memory and spool files of clients that disconnect mid-part (more of them than there are slots)', async () => {
    await withGateway({ limits: { maxConcurrentStowRequests: 2, memoryPartBytes: 0 } }, new FakeScanner(), async (w) => {
      for (let i = 0; i < 5; i++) {
        const sock = net.connect(w.port, '127.0.0.1');
        await new Promise((r) => sock.once('connect', r));
        sock.write(stowHead('Content-Length: 100000\r\n') + partHead);
        sock.write(files[0].subarray(0, 2000));
        await sleep(80);
        sock.destroy();
      }
      expect(await waitFor(() => w.wardenApp.ctx.activeStow === 0)).toBe(true);
      expect(await waitFor(() => fs.readdirSync(w.deps.spoolDir).length === 0)).toBe(true);
      expect(w.wardenApp.ctx.budget.used).toBe(0);
      expect((await stow(`${w.url}/dicom-web/studies`, files)).status).toBe(200);
    });
  });

  it('answers 413 to a chunked body over limits.maxBodyBytes and frees its slot', async () => {
    await withGateway({ limits: { maxBodyBytes: 50_000, maxConcurrentStowRequests: 1 } }, new FakeScanner(), async (w) => {
      const chunk = Buffer.alloc(10_000, 0x41);
      const chunked = (b: Buffer) => Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
      const answer = await raw(w.port, [stowHead('Transfer-Encoding: chunked\r\n'), chunked(Buffer.from(partHead)), ...Array.from({ length: 30 }, () => chunked(chunk))], { gapMs: 5 });
      expect(answer).toMatch(/^HTTP\/1\.1 413 /);
      expect(answer).toMatch(/"code":"BODY_TOO_LARGE"/);
      expect(await waitFor(() => w.wardenApp.ctx.activeStow === 0)).toBe(true);
      expect((await stow(`${w.url}/dicom-web/studies`, [files[0]])).status).toBe(200);
    });
  });
});

describe('2 and 3. one canonical path for routing, scanning and forwarding', () => {
  /** A WADO-RS upstream that, like Orthanc, normalises the path before it serves the study (any shape of it). */
  async function startWadoUpstream(instance: Buffer): Promise<{ url: string; paths: string[]; close(): Promise<void> }> {
    const paths: string[] = [];
    const server = http.createServer((req, res) => {
      paths.push(req.url!);
      const normalised = path.posix.normalize(decodeURIComponent(req.url!.split('?')[0]));
      if (!/\/studies\/[^/]+$/.test(normalised)) { res.writeHead(404).end(); return; }
      const { body, contentType } = multipartBody([instance], 'wadobnd');
      res.writeHead(200, { 'content-type': contentType, 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`, paths, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
  }

  it('scans a retrieve whatever the shape of its path, or refuses the path: the blocked instance never comes back', async () => {
    const blocked = files[0];
    const study = readHeader(blocked)!.studyInstanceUid!;
    const up = await startWadoUpstream(blocked);
    const config = validateConfig({ upstream: { url: up.url }, server: { port: 0, host: '127.0.0.1', stateDir: path.join(tmp, 'state') }, wado: { scan: true } });
    const w = await startServer(config, { scanner: new FakeScanner({ [uid(blocked)]: 'block' }), logger: createLogger('silent'), eventStream: null });
    try {
      for (const p of [`/dicom-web/studies/${study}`, `/dicom-web//studies/${study}`, `//dicom-web/studies//${study}/`, `/dicom-web/./studies/${study}`,
        `/dicom-web/studies/${study}/.`, `/dicom-web/studies/x/../${study}`, `/dicom-web/studies/%2e/${study}`, `/dicom-web/studies%2f${study}`]) {
        const res = await fetch(`${w.url}${p}`, { headers: { accept: 'multipart/related; type="application/dicom"' } });
        const body = Buffer.from(await res.arrayBuffer());
        expect({ p, withheldOrRefused: [409, 400].includes(res.status) }).toEqual({ p, withheldOrRefused: true });
        expect(body.includes(blocked.subarray(200, 400))).toBe(false);
      }
    } finally {
      await w.close();
      await up.close();
    }
  });

  it('never reaches the upstream outside its DICOMweb resources, nor carries upstream.headers there', async () => {
    await withGateway({ upstream: { headers: { authorization: 'Basic upstream-secret' } } as never }, new FakeScanner(), async (w, sink) => {
      for (const p of ['/dicom-web/../system', '/dicom-web/%2e%2e/system', '/dicom-web/patients', '/dicom-web/tools/find', '/dicom-web/app/explorer.html', '/dicom-web/..%2fsystem']) {
        const res = await fetch(`${w.url}${p}`);
        expect({ p, refused: [400, 404].includes(res.status) }).toEqual({ p, refused: true });
        const json = await res.json() as { error: { code: string } };
        expect(['PATH_REFUSED', 'NOT_FOUND']).toContain(json.error.code);
      }
      expect(sink.requests).toEqual([]);
    });
  });
});

describe('4. scope the sender cannot talk its way out of', () => {
  it('scans an instance whose pixels fit the model although its Modality tag says MR, and blocks it when it is adversarial', async () => {
    const candidates = readLabManifest().filter((r) => r.kind === 'adversarial' && r.success === '1' && r.eps === '8');
    await withGateway({ model: { workers: 1, threadsPerWorker: 1 } }, null, async (w, sink) => {
      let checked = 0;
      for (const row of candidates) {
        const original = fs.readFileSync(row.path);
        const unpatched = await stow(`${w.url}/dicom-web/studies`, [original]);
        if (unpatched.status !== 409) continue; // only instances the policy blocks as DX can show the bypass
        const asMr = withModality(original, 'MR');
        expect(readHeader(asMr)!.modality).toBe('MR');
        const res = await stow(`${w.url}/dicom-web/studies`, [asMr]);
        expect(res.status).toBe(409);
        expect(failedItems(res.json)[0]).toMatchObject({ reason: FAILURE_REASONS.blocked_by_detector.code, text: expect.stringContaining('tags_out_of_scope') });
        checked++;
        if (checked === 2) break;
      }
      expect(checked).toBe(2);
      expect(sink.requests.every((r) => r.parts.length === 0)).toBe(true);
      expect(await (await fetch(`${w.url}/metrics`)).text()).toMatch(/^warden_instances_scanned_by_pixels_total [1-9]/m);
    });
  });

  it('applies the out-of-scope action of the first matching rule to instances it does not scan', async () => {
    const mrSmall = fs.readFileSync(path.join(CORPUS, '..', '..', 'MR_small.dcm')); // 64 × 64: too small for the model
    await withGateway({ model: { workers: 1, threadsPerWorker: 1 }, policy: { outOfScope: { action: 'forward', rules: [{ modalities: ['MR'], action: 'block' }] } } }, null, async (w) => {
      const res = await stow(`${w.url}/dicom-web/studies`, [mrSmall]);
      expect(res.status).toBe(409);
      expect(failedItems(res.json)[0].text).toMatch(/out_of_scope/);
    });
  });
});

describe('5. request and body timeouts', () => {
  it('answers 408 to a body that stalls and frees its slot', async () => {
    await withGateway({ limits: { bodyIdleTimeoutMs: 300 } }, new FakeScanner(), async (w) => {
      const t0 = Date.now();
      const answer = await raw(w.port, [stowHead('Content-Length: 100000\r\n') + partHead, files[0].subarray(0, 1000)], { waitMs: 5000 });
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(answer).toMatch(/"code":"REQUEST_TIMEOUT"/);
      expect(Date.now() - t0).toBeLessThan(4500);
      expect(await waitFor(() => w.wardenApp.ctx.activeStow === 0)).toBe(true);
    });
  });
});

describe('6. no patient data left in the spool', () => {
  it('removes the spool directories of processes that are gone at start-up, and its own on close, with 0600 files meanwhile', async () => {
    const base = path.join(tmp, 'spool6');
    fs.mkdirSync(path.join(base, '999999999-0123456789abcdef'), { recursive: true });
    fs.writeFileSync(path.join(base, '999999999-0123456789abcdef', 'warden-part-1.dcm'), files[0]);
    const scanner = new FakeScanner();
    scanner.delayMs = 400;
    await withGateway({ stow: { spoolDir: base }, limits: { memoryPartBytes: 0 } }, scanner, async (w) => {
      expect(fs.readdirSync(base)).toEqual([path.basename(w.deps.spoolDir)]);
      expect(fs.statSync(w.deps.spoolDir).mode & 0o777).toBe(0o700);
      const pending = stow(`${w.url}/dicom-web/studies`, [files[0]]);
      expect(await waitFor(() => fs.readdirSync(w.deps.spoolDir).length > 0, 2000)).toBe(true);
      for (const f of fs.readdirSync(w.deps.spoolDir)) expect(fs.statSync(path.join(w.deps.spoolDir, f)).mode & 0o777).toBe(0o600);
      expect((await pending).status).toBe(200);
      expect(await waitFor(() => fs.readdirSync(w.deps.spoolDir).length === 0, 2000)).toBe(true);
    });
    expect(fs.readdirSync(base)).toEqual([]);
  });
});

describe('7. authentication never fails open silently', () => {
  it('refuses an empty token variable instead of turning authentication off', () => {
    expect(() => loadConfig(undefined, { WARDEN_UPSTREAM_URL: 'http://127.0.0.1:1/dicom-web', WARDEN_DICOMWEB_TOKEN: '' })).toThrow(/WARDEN_DICOMWEB_TOKEN .*set but empty/);
    expect(() => loadConfig(undefined, { WARDEN_UPSTREAM_URL: 'http://127.0.0.1:1/dicom-web', WARDEN_METRICS_TOKEN: '  ' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('says so in the log, a metric and /readyz when it listens beyond loopback without a token', async () => {
    const lines: string[] = [];
    const sink = await startSink();
    const config = validateConfig({ upstream: { url: sink.url }, server: { port: 0, host: '0.0.0.0', stateDir: path.join(tmp, 'state') } });
    const w = await startServer(config, { scanner: new FakeScanner(), logger: createLogger('warn', { write: (l: string) => { lines.push(l); } }), eventStream: null });
    try {
      const ready = await (await fetch(`${w.url}/readyz`)).json() as { warnings?: string[] };
      expect(ready.warnings?.join(' ')).toMatch(/beyond loopback\) without auth\.dicomwebToken/);
      expect(lines.some((l) => /"event":"security_warning"/.test(l) && /dicomwebToken/.test(l))).toBe(true);
      expect(await (await fetch(`${w.url}/metrics`)).text()).toMatch(/^warden_security_warning\{warning="no_dicomweb_auth_beyond_loopback"\} 1$/m);
    } finally {
      await w.close();
      await sink.close();
    }
  });
});

describe('8. what is claimed stored is what the upstream says it stored', () => {
  it('claims only the instances the upstream lists, even when it answers 200', async () => {
    await withGateway({}, new FakeScanner(), async (w, sink) => {
      sink.behaviour = 'partial';
      const res = await stow(`${w.url}/dicom-web/studies`, files);
      expect(res.status).toBe(202);
      expect(referencedUids(res.json)).toEqual([uid(files[0])]);
      expect(failedItems(res.json).map((f) => f.reason)).toEqual([FAILURE_REASONS.upstream_failed.code, FAILURE_REASONS.upstream_failed.code]);
    });
  });

  it('answers 504 with Retry-After when the upstream was reached but did not answer, 502 when it could not be reached', async () => {
    await withGateway({ upstream: { timeoutMs: 500 } as never, limits: { retryAfterSeconds: 4 } }, new FakeScanner(), async (w, sink) => {
      sink.behaviour = 'stall';
      const res = await stow(`${w.url}/dicom-web/studies`, [files[0]]);
      expect(res.status).toBe(504);
      expect(res.headers.get('retry-after')).toBe('4');
      expect(failedItems(res.json)[0].text).toMatch(/did not answer within upstream\.timeoutMs/);
      expect(referencedUids(res.json)).toEqual([]);
    });
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await withGateway({ upstream: { url: `http://127.0.0.1:${deadPort}/dicom-web` } }, new FakeScanner(), async (w) => {
      const res = await stow(`${w.url}/dicom-web/studies`, [files[0]]);
      expect(res.status).toBe(502);
      expect(res.headers.get('retry-after')).toBeTruthy();
      expect(failedItems(res.json)[0].text).toMatch(/could not be reached \(ECONNREFUSED\)/);
    });
  });
});

describe('9. malformed requests get a typed answer, and UID hashes are keyed', () => {
  it('answers a Content-Length that lies, and conflicting framing headers, with a JSON 400', async () => {
    await withGateway({}, new FakeScanner(), async (w) => {
      const lies = await raw(w.port, [`GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nabcdefgh not http\r\n\r\n`], { waitMs: 3000 });
      expect(lies).toMatch(/HTTP\/1\.1 400 Bad Request[\s\S]*"code":"HTTP_MALFORMED"/);
      const smuggle = await raw(w.port, [stowHead('Content-Length: 10\r\nTransfer-Encoding: chunked\r\n') + '0\r\n\r\n'], { waitMs: 3000 });
      expect(smuggle).toMatch(/^HTTP\/1\.1 400 Bad Request[\s\S]*"code":"HTTP_MALFORMED"/);
    });
  });

  it('refuses an over-long boundary in its own words, not the parser\'s', async () => {
    await withGateway({}, new FakeScanner(), async (w) => {
      const boundary = 'x'.repeat(8000);
      const { body } = multipartBody([files[0]], boundary);
      const res = await fetch(`${w.url}/dicom-web/studies`, { method: 'POST', body, headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}` } });
      expect(res.status).toBe(400);
      const text = await res.text();
      expect(text).toMatch(/MULTIPART_MALFORMED/);
      expect(text).not.toMatch(/needle|StreamSearch|Dicer/i);
    });
  });

  it('hashes UIDs with the install key: not a plain sha256, stable for one key, different for another', () => {
    const u = uid(files[0]);
    const plain = createHash('sha256').update(u).digest('hex').slice(0, 16);
    setUidHashKey('k'.repeat(40));
    const a = hashUid(u);
    expect(a).not.toBe(plain);
    expect(hashUid(u)).toBe(a);
    setUidHashKey('j'.repeat(40));
    expect(hashUid(u)).not.toBe(a);
  });

  it('creates one install key in the state directory and keeps it', async () => {
    const state = path.join(tmp, 'state9');
    await withGateway({ server: { stateDir: state } as never }, new FakeScanner(), async () => { /* start-up creates it */ });
    const key = fs.readFileSync(path.join(state, 'uid-hash.key'), 'utf8');
    expect(fs.statSync(path.join(state, 'uid-hash.key')).mode & 0o777).toBe(0o600);
    await withGateway({ server: { stateDir: state } as never }, new FakeScanner(), async () => { /* reads it */ });
    expect(fs.readFileSync(path.join(state, 'uid-hash.key'), 'utf8')).toBe(key);
  });
});

/** The same Part-10 bytes with Modality (0008,0060) rewritten (same length), as a sender could. */
function withModality(bytes: Buffer, modality: string): Buffer {
  const out = Buffer.from(bytes);
  const tag = Buffer.from([0x08, 0x00, 0x60, 0x00, 0x43, 0x53]); // (0008,0060) CS, explicit VR LE
  const at = out.indexOf(tag, 132);
  if (at < 0) throw new Error('no Modality element');
  const len = out.readUInt16LE(at + 6);
  out.write(modality.padEnd(len, ' ').slice(0, len), at + 8, 'latin1');
  return out;
}

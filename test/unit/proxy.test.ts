import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { startSink } from '../helpers/sink-upstream';
import { FakeScanner } from '../helpers/fake-scanner';
import { stow, sha256, referencedUids, failedItems, multipartBody } from '../helpers/stow';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { validateConfig, type WardenConfigInput } from '../../src/config';
import { createLogger } from '../../src/core/logger';
import { readHeader } from '../../src/dicom';
import { parseMediaType, ingestMultipart } from '../../src/proxy/multipart';
import { MemoryBudget } from '../../src/proxy/spool';
import { FAILURE_REASONS } from '../../src/proxy/failure-reasons';
import { DEFAULT_POLICY } from '../../src/policy';

const CORPUS = path.join(__dirname, '..', '..', '..', 'shared', 'corpus', 'dicom', 'pydicom', 'dicomdirtests', '98892003');
const files = ['MR2/4981', 'MR2/5011', 'MR2/4950', 'MR2/6605'].map((p) => fs.readFileSync(path.join(CORPUS, p)));
const uid = (b: Buffer): string => readHeader(b)!.sopInstanceUid!;

async function withGateway(cfg: Partial<WardenConfigInput>, scanner: FakeScanner, fn: (w: RunningServer, sink: Awaited<ReturnType<typeof startSink>>) => Promise<void>): Promise<void> {
  const sink = await startSink();
  const config = validateConfig({ ...cfg, upstream: { url: sink.url, ...(cfg.upstream ?? {}) }, server: { port: 0, host: '127.0.0.1', ...(cfg.server ?? {}) } });
  const w = await startServer(config, { scanner, logger: createLogger('silent'), eventStream: null });
  try { await fn(w, sink); } finally { await w.close(); await sink.close(); }
}

describe('parseMediaType', () => {
  it('reads quoted parameters and lower-cases names', () => {
    expect(parseMediaType('Multipart/Related; Type="application/dicom"; boundary="a b;c"')).toEqual({ mediaType: 'multipart/related', params: { type: 'application/dicom', boundary: 'a b;c' } });
    expect(parseMediaType('multipart/related;boundary=xyz')!.params.boundary).toBe('xyz');
    expect(parseMediaType('')).toBeNull();
  });
});

describe('ingestMultipart', () => {
  it('keeps each part byte-exact whether in memory or spooled, with a preamble and 1-byte chunks', async () => {
    const { body } = multipartBody(files, 'bnd');
    const withPreamble = Buffer.concat([Buffer.from('preamble\r\n'), body]);
    const chunks = Array.from({ length: Math.ceil(withPreamble.length / 997) }, (_, i) => withPreamble.subarray(i * 997, (i + 1) * 997));
    const got: Buffer[] = [];
    const parts: Promise<void>[] = [];
    const res = await ingestMultipart(Readable.from(chunks), {
      boundary: 'bnd', maxBodyBytes: 1e9, budget: new MemoryBudget(1e6),
      spool: { memoryPartBytes: 100_000, memoryBudgetBytes: 1e6, maxInstanceBytes: 1e9, dir: '/tmp' },
      onPart: (p) => parts.push(p.stored.read().then((b) => { got[p.index] = b; return p.stored.dispose(); })),
    });
    await Promise.all(parts);
    expect(res.parts.length).toBe(4);
    expect(got.map(sha256)).toEqual(files.map(sha256));
  });
  it('rejects a body that exceeds maxBodyBytes', async () => {
    const { body } = multipartBody(files, 'bnd');
    await expect(ingestMultipart(Readable.from([body]), {
      boundary: 'bnd', maxBodyBytes: 1000, budget: new MemoryBudget(1e6),
      spool: { memoryPartBytes: 0, memoryBudgetBytes: 0, maxInstanceBytes: 1e9, dir: '/tmp' }, onPart: () => {},
    })).rejects.toMatchObject({ code: 'BODY_TOO_LARGE' });
  });
});

describe('gateway (in-process upstream)', () => {
  it('forwards original bytes, spooled or not, and marks flagged parts on the upstream request', async () => {
    const scanner = new FakeScanner({ [uid(files[1])]: 'flag' });
    await withGateway({ limits: { memoryPartBytes: 1024 } }, scanner, async (w, sink) => {
      const res = await stow(`${w.url}/dicom-web/studies`, files);
      expect(res.status).toBe(200);
      expect(referencedUids(res.json).sort()).toEqual(files.map(uid).sort());
      const [req] = sink.requests;
      expect(req.parts.map(sha256)).toEqual(files.map(sha256));
      expect(req.headers['x-warden-flagged']).toBe('count=1');
      expect(req.headers['content-type']).toMatch(/^multipart\/related; type="application\/dicom"; boundary=/);
    });
  });

  it('forwards in-memory parts byte-exact too, and says where the time went in Server-Timing', async () => {
    await withGateway({}, new FakeScanner({}), async (w, sink) => {
      const res = await stow(`${w.url}/dicom-web/studies`, files);
      expect(res.status).toBe(200);
      expect(sink.requests[0].parts.map(sha256)).toEqual(files.map(sha256));
      const timing = res.headers.get('server-timing') ?? '';
      const durations = Object.fromEntries([...timing.matchAll(/(\w+);dur=([0-9.]+)/g)].map((m) => [m[1], Number(m[2])]));
      expect(Object.keys(durations)).toEqual(['ingest', 'scan', 'forward', 'total']);
      expect(durations.total).toBeGreaterThanOrEqual(durations.ingest + durations.scan + durations.forward - 0.05);
    });
  });

  it('applies studyRule "study": one blocked instance withholds its study, not the others', async () => {
    const scanner = new FakeScanner({ [uid(files[0])]: 'block' }, { ...DEFAULT_POLICY, studyRule: 'study' });
    await withGateway({}, scanner, async (w, sink) => {
      const res = await stow(`${w.url}/dicom-web/studies`, files);
      // files[0..2] share a study; files[3] is another study
      expect(res.status).toBe(202);
      const failed = failedItems(res.json);
      expect(failed.map((f) => f.reason).sort()).toEqual([0xc0a1, 0xc0a3, 0xc0a3]);
      expect(referencedUids(res.json)).toEqual([uid(files[3])]);
      expect(sink.requests[0].parts.map(sha256)).toEqual([sha256(files[3])]);
    });
  });

  it('requires the bearer tokens when configured (401; 403 for a token of another role), separately for /metrics', async () => {
    const auth = { dicomwebToken: 'd'.repeat(20), metricsToken: 'm'.repeat(20) };
    await withGateway({ auth }, new FakeScanner(), async (w) => {
      expect((await stow(`${w.url}/dicom-web/studies`, files)).status).toBe(401);
      expect((await fetch(`${w.url}/dicom-web/studies`)).status).toBe(401);
      expect((await fetch(`${w.url}/dicom-web/studies`, { headers: { authorization: `Bearer ${auth.metricsToken}` } })).status).toBe(403);
      expect((await fetch(`${w.url}/dicom-web/studies`, { headers: { authorization: `Bearer ${auth.dicomwebToken}` } })).status).toBe(200);
      expect((await fetch(`${w.url}/metrics`, { headers: { authorization: `Bearer ${auth.dicomwebToken}` } })).status).toBe(403);
      expect((await fetch(`${w.url}/metrics`, { headers: { authorization: `Bearer ${auth.metricsToken}` } })).status).toBe(200);
      expect((await fetch(`${w.url}/healthz`)).status).toBe(200);
    });
  });

  it('answers 503 + Retry-After when saturated', async () => {
    const scanner = new FakeScanner();
    scanner.delayMs = 300;
    await withGateway({ limits: { maxConcurrentStowRequests: 1, retryAfterSeconds: 3 } }, scanner, async (w) => {
      const first = stow(`${w.url}/dicom-web/studies`, [files[0]]);
      await new Promise((r) => setTimeout(r, 100));
      const second = await stow(`${w.url}/dicom-web/studies`, [files[1]]);
      expect(second.status).toBe(503);
      expect(second.headers.get('retry-after')).toBe('3');
      expect((await first).status).toBe(200);
    });
  });

  it('fails an oversized instance with 0xA700 and still stores the rest; 413 for an oversized body', async () => {
    const big = files.reduce((a, b) => (b.length > a.length ? b : a));
    const small = files.filter((f) => f.length < big.length);
    await withGateway({ limits: { maxInstanceBytes: big.length - 1, maxBodyBytes: 10_000_000 } }, new FakeScanner(), async (w, sink) => {
      const res = await stow(`${w.url}/dicom-web/studies`, [big, ...small]);
      expect(res.status).toBe(202);
      expect(failedItems(res.json)[0].reason).toBe(FAILURE_REASONS.too_large.code);
      expect(sink.requests[0].parts.length).toBe(small.length);
    });
    await withGateway({ limits: { maxBodyBytes: 1000 } }, new FakeScanner(), async (w) => {
      expect((await stow(`${w.url}/dicom-web/studies`, files)).status).toBe(413);
    });
  });

  it('relays an upstream 503 as 503 with nothing claimed stored', async () => {
    await withGateway({}, new FakeScanner(), async (w, sink) => {
      sink.status = 503;
      const res = await stow(`${w.url}/dicom-web/studies`, files);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('7');
      expect(referencedUids(res.json)).toEqual([]);
    });
  });

  it('finishes an in-flight STOW-RS request on shutdown and refuses new connections', async () => {
    const scanner = new FakeScanner();
    scanner.delayMs = 400;
    await withGateway({}, scanner, async (w) => {
      const inflight = stow(`${w.url}/dicom-web/studies`, [files[0]]);
      await new Promise((r) => setTimeout(r, 150));
      const closing = w.close();
      expect((await inflight).status).toBe(200);
      await closing;
      await expect(fetch(`${w.url}/healthz`)).rejects.toThrow();
    });
  });
});

describe('Semaphore with a weight budget (limits.scanMemoryBytes)', () => {
  // imported here so the block stays self-contained
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Semaphore } = require('../../src/proxy/semaphore') as typeof import('../../src/proxy/semaphore');

  it('admits by count and weight, FIFO, and always lets one oversized holder run alone', async () => {
    const s = new Semaphore(2, 10);
    const order: string[] = [];
    const a = await s.acquire(undefined, 6);
    const pb = s.acquire(undefined, 6).then((r) => { order.push('b'); return r; }); // 6 + 6 > 10: waits
    const pc = s.acquire(undefined, 1).then((r) => { order.push('c'); return r; }); // fits, but FIFO behind b
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]);
    expect(s.waiting).toBe(2);
    a();
    const b = await pb;
    const c = await pc;
    expect(order).toEqual(['b', 'c']);
    expect(s.weight).toBe(7);
    b(); c();
    const big = await s.acquire(undefined, 50); // larger than the budget: runs when nothing else does
    expect(s.active).toBe(1);
    await expect(s.acquire(20, 1)).rejects.toThrow('timeout');
    big();
    expect(s.weight).toBe(0);
  });

  it('lets lighter waiters through when a heavy head times out', async () => {
    const s = new Semaphore(4, 10);
    const a = await s.acquire(undefined, 8);
    const heavy = s.acquire(20, 8);
    const light = s.acquire(undefined, 1);
    await expect(heavy).rejects.toThrow('timeout');
    const l = await light;
    l(); a();
  });
});

describe('Retrieve URL rewriting and route matching', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { rewriteRetrieveUrls, isQidoPath } = require('../../src/proxy/urls') as typeof import('../../src/proxy/urls');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { matchRetrieve } = require('../../src/proxy/wado') as typeof import('../../src/proxy/wado');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { decodedBytesEstimate } = require('../../src/dicom') as typeof import('../../src/dicom');

  it('rewrites 0008,1190 under the upstream base path only, nested sequences included', () => {
    const json = [
      { '00081190': { vr: 'UR', Value: ['http://10.0.0.5:8042/dicom-web/studies/1.2?x=1'] }, '0020000D': { vr: 'UI', Value: ['1.2'] } },
      { '00081190': { vr: 'UR', Value: ['http://elsewhere/other/studies/1.3'] } },
      { '00081199': { vr: 'SQ', Value: [{ '00081190': { vr: 'UR', Value: ['http://orthanc/dicom-web/studies/1/series/2/instances/3'] } }] } },
    ];
    expect(rewriteRetrieveUrls(json, '/dicom-web', 'https://w.example/dw')).toBe(2);
    expect(json[0]['00081190']!.Value[0]).toBe('https://w.example/dw/studies/1.2?x=1');
    expect(json[1]['00081190']!.Value[0]).toBe('http://elsewhere/other/studies/1.3');
    expect((json[2] as any)['00081199'].Value[0]['00081190'].Value[0]).toBe('https://w.example/dw/studies/1/series/2/instances/3');
    expect(json[0]['0020000D']!.Value[0]).toBe('1.2');
  });

  it('tells QIDO searches from retrieves', () => {
    for (const p of ['/studies', '/studies?limit=1', '/series', '/instances?Modality=CR', '/studies/1.2/series', '/studies/1.2/series/3/instances', '/studies/1.2/instances']) expect([p, isQidoPath(p)]).toEqual([p, true]);
    for (const p of ['/studies/1.2', '/studies/1.2/metadata', '/studies/1.2/series/3', '/studies/1/series/2/instances/3/frames/1']) expect([p, isQidoPath(p)]).toEqual([p, false]);
    expect(matchRetrieve('/studies/1.2')).toEqual({ study: '1.2', series: undefined, instance: undefined });
    expect(matchRetrieve('/studies/1.2/series/3/instances/4?x=y')).toEqual({ study: '1.2', series: '3', instance: '4' });
    for (const p of ['/studies/1.2/metadata', '/studies/1.2/rendered', '/studies/1/series/2/instances/3/frames/1', '/studies/1/series/2/thumbnail', '/studies', '/studies/1/bulkdata/x']) expect([p, matchRetrieve(p)]).toEqual([p, null]);
  });

  it('estimates a scan\'s decoded pixels from the header, else the part size', () => {
    expect(decodedBytesEstimate({ rows: 2048, columns: 2048, samplesPerPixel: 1 }, 8 << 20)).toBe(16 << 20);
    expect(decodedBytesEstimate({ rows: 512, columns: 512, frames: 10, samplesPerPixel: 3 }, 1)).toBe(512 * 512 * 30 * 4);
    expect(decodedBytesEstimate(null, 1234)).toBe(1234);
    const id = readHeader(files[0])!;
    expect(id.rows).toBeGreaterThan(0);
    expect(id.seriesInstanceUid).toMatch(/^[0-9.]+$/);
  });
});

describe('WADO-RS retrieve scanning (in-process upstream)', () => {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const http = require('node:http') as typeof import('node:http');
  const zlib = require('node:zlib') as typeof import('node:zlib');
  /* eslint-enable @typescript-eslint/no-require-imports */

  it('decodes a gzip upstream body, withholds the blocked part and another study\'s, keeps part order and bytes', async () => {
    const { body, contentType } = multipartBody(files);
    const gz = zlib.gzipSync(body);
    const seenEncodings: string[] = [];
    const upstream = http.createServer((req, res) => {
      seenEncodings.push(String(req.headers['accept-encoding']));
      res.writeHead(200, { 'content-type': contentType, 'content-encoding': 'gzip', 'content-length': String(gz.length) }).end(gz);
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const port = (upstream.address() as import('node:net').AddressInfo).port;
    const scanner = new FakeScanner({ [uid(files[1])]: 'block' });
    const w = await startServer(validateConfig({ upstream: { url: `http://127.0.0.1:${port}/dicom-web` }, server: { port: 0, host: '127.0.0.1' }, wado: { scan: true, partialStatus: 200 }, limits: { memoryPartBytes: 1024 } }), { scanner, logger: createLogger('silent'), eventStream: null });
    try {
      const res = await fetch(`${w.url}/dicom-web/studies/${readHeader(files[0])!.studyInstanceUid}`, { headers: { accept: 'multipart/related; type="application/dicom"' } });
      const got = Buffer.from(await res.arrayBuffer());
      expect(res.status).toBe(200); // wado.partialStatus: 200 (CP-2418 clients)
      // files[1] blocked by the scanner; files[3] belongs to another study than the one retrieved
      expect(res.headers.get('x-warden-withheld')).toBe('2');
      expect(res.headers.get('warning')).toMatch(/2 of 4 instances withheld/);
      expect(res.headers.get('warning')).toMatch(/StudyInstanceUID of the instance differs/);
      const { multipartParts } = await import('../helpers/orthanc-client');
      expect(multipartParts(got, res.headers.get('content-type')!).map(sha256)).toEqual([files[0], files[2]].map(sha256));
      expect(seenEncodings).toEqual(['identity']);
    } finally {
      await w.close();
      upstream.closeAllConnections();
      await new Promise<void>((r) => upstream.close(() => r()));
    }
  });
});

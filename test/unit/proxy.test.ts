import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { startSink } from '../helpers/sink-upstream';
import { FakeScanner } from '../helpers/fake-scanner';
import { stow, sha256, referencedUids, failedItems, multipartBody } from '../helpers/stow';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { validateConfig, type WardenConfigInput } from '../../src/config';
import { createLogger } from '../../src/proxy/logger';
import { readIdentity } from '../../src/proxy/identity';
import { parseMediaType, ingestMultipart } from '../../src/proxy/multipart';
import { MemoryBudget } from '../../src/proxy/spool';
import { FAILURE_REASONS } from '../../src/proxy/failure-reasons';
import { DEFAULT_POLICY } from '../../src/policy';

const CORPUS = path.join(__dirname, '..', '..', '..', 'shared', 'corpus', 'dicom', 'pydicom', 'dicomdirtests', '98892003');
const files = ['MR2/4981', 'MR2/5011', 'MR2/4950', 'MR2/6605'].map((p) => fs.readFileSync(path.join(CORPUS, p)));
const uid = (b: Buffer): string => readIdentity(b)!.sopInstanceUid!;

async function withGateway(cfg: Partial<WardenConfigInput>, scanner: FakeScanner, fn: (w: RunningServer, sink: Awaited<ReturnType<typeof startSink>>) => Promise<void>): Promise<void> {
  const sink = await startSink();
  const config = validateConfig({ ...cfg, upstream: { url: sink.url, ...(cfg.upstream ?? {}) }, server: { port: 0, host: '127.0.0.1', ...(cfg.server ?? {}) } });
  const w = await startServer(config, { scanner, logger: createLogger('silent') });
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

  it('requires the bearer tokens when configured (401), separately for /metrics', async () => {
    const auth = { dicomwebToken: 'd'.repeat(20), metricsToken: 'm'.repeat(20) };
    await withGateway({ auth }, new FakeScanner(), async (w) => {
      expect((await stow(`${w.url}/dicom-web/studies`, files)).status).toBe(401);
      expect((await fetch(`${w.url}/dicom-web/studies`)).status).toBe(401);
      expect((await fetch(`${w.url}/dicom-web/studies`, { headers: { authorization: `Bearer ${auth.metricsToken}` } })).status).toBe(401);
      expect((await fetch(`${w.url}/dicom-web/studies`, { headers: { authorization: `Bearer ${auth.dicomwebToken}` } })).status).toBe(200);
      expect((await fetch(`${w.url}/metrics`, { headers: { authorization: `Bearer ${auth.dicomwebToken}` } })).status).toBe(401);
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

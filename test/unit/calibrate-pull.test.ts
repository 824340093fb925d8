import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { DicomwebPuller, describeSource, newestFirst, qidoQuery, readParts, studyDateRange, type StudyRef } from '../../src/cli/dicomweb-pull';
import { PullState } from '../../src/cli/calibrate-state';
import { canonicalOrder } from '../../src/cli/calibrate';
import type { FeatureTable } from '../../src/detectors';

/** The DICOMweb pull client, its resume state and the canonical order, against a small in-process server (127.0.0.1). */

function multipart(parts: { type?: string; body: Buffer }[], boundary: string): Buffer {
  const chunks: Buffer[] = [Buffer.from('preamble to ignore\r\n')];
  for (const p of parts) chunks.push(Buffer.from(`--${boundary}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`), p.body, Buffer.from('\r\n'));
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

/** Feeds `body` to readParts in chunks of `size` bytes. */
async function parse(body: Buffer, boundary: string, size: number, maxBytes = 1 << 20, onPart?: (b: Buffer) => Promise<void>) {
  const stream = new PassThrough();
  const got: Buffer[] = [];
  const done = readParts(stream, boundary, async (b) => { got.push(b); await onPart?.(b); }, maxBytes);
  for (let i = 0; i < body.length; i += size) {
    if (!stream.write(body.subarray(i, i + size))) await new Promise((r) => stream.once('drain', r));
  }
  stream.end();
  return { result: await done, got };
}

describe('readParts (multipart/related, one part at a time)', () => {
  const boundary = 'b0undary-x';
  const a = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.from(`--${boundary}`), Buffer.alloc(3000, 7)]); // a boundary-like run inside
  const b = Buffer.alloc(70000, 9);
  const body = multipart([{ type: 'application/dicom', body: a }, { type: 'application/dicom', body: b }, { type: 'application/json', body: Buffer.from('{}') }], boundary);

  it.each([1, 7, 4096, body.length])('splits the parts exactly with %i-byte chunks, skipping non-DICOM parts', async (size) => {
    const { result, got } = await parse(body, boundary, size);
    expect(got.map((g) => g.length)).toEqual([a.length, b.length]);
    expect(got[0].equals(a)).toBe(true);
    expect(got[1].equals(b)).toBe(true);
    expect(result).toEqual({ instances: 2, skipped: { 'part of type application/json': 1 } });
  });

  it('hands parts over in turn: the next part waits until the previous one is handled', async () => {
    const events: string[] = [];
    await parse(body, boundary, 1024, 1 << 20, async (part) => {
      events.push(`start ${part.length}`);
      await new Promise((r) => setTimeout(r, 20));
      events.push(`end ${part.length}`);
    });
    expect(events).toEqual([`start ${a.length}`, `end ${a.length}`, `start ${b.length}`, `end ${b.length}`]);
  });

  it('leaves out parts above the size limit, and fails on a body cut before its closing boundary', async () => {
    const { result, got } = await parse(body, boundary, 999, 10000);
    expect(got.map((g) => g.length)).toEqual([a.length]);
    expect(result.skipped).toEqual({ 'larger than 10000 bytes': 1, 'part of type application/json': 1 });
    await expect(parse(body.subarray(0, body.length - 4000), boundary, 999)).rejects.toThrow();
  });
});

describe('QIDO-RS query and ordering', () => {
  it('builds the page query with the filters and the attributes it reads', () => {
    const q = new URLSearchParams(qidoQuery({ modalities: ['CR', 'DX'], studyDate: '20250101-', pageSize: 50 }, 100));
    expect(q.get('limit')).toBe('50');
    expect(q.get('offset')).toBe('100');
    expect(q.get('ModalitiesInStudy')).toBe('CR,DX');
    expect(q.get('StudyDate')).toBe('20250101-');
    expect(q.getAll('includefield')).toEqual(['00080020', '00080030', '00080061', '00201208']);
    expect(new URLSearchParams(qidoQuery({ modalities: ['CR'], pageSize: 5 }, 0, false)).has('ModalitiesInStudy')).toBe(false);
  });

  it('--since / --date-range become DICOM range matching; bad dates are USAGE errors', () => {
    expect(studyDateRange('20250301')).toBe('20250301-');
    expect(studyDateRange(undefined, '20250101-20250331')).toBe('20250101-20250331');
    expect(studyDateRange()).toBeUndefined();
    expect(() => studyDateRange('2025-03-01')).toThrow(expect.objectContaining({ code: 'USAGE' }));
    expect(() => studyDateRange(undefined, '20250331-20250101')).toThrow(expect.objectContaining({ code: 'USAGE' }));
    expect(() => studyDateRange('20250301', '20250101-20250331')).toThrow(/not both/);
  });

  it('newest first by StudyDate and StudyTime, undated last; the source keeps no credentials', () => {
    const s = (uid: string, date: string, time = ''): StudyRef => ({ uid, date, time });
    const sorted = [s('a', ''), s('b', '20240101', '090000'), s('c', '20250101'), s('d', '20240101', '101500.5')].sort(newestFirst);
    expect(sorted.map((x) => x.uid)).toEqual(['c', 'd', 'b', 'a']);
    expect(describeSource('https://user:secret@pacs.example.org:8443/dicom-web/?token=x')).toBe('https://pacs.example.org:8443/dicom-web');
  });
});

describe('DicomwebPuller against a small server', () => {
  const studies = Array.from({ length: 23 }, (_, i) => ({ uid: `1.2.3.${i}`, date: `202501${String(1 + (i % 28)).padStart(2, '0')}`, modality: i % 5 === 0 ? 'CT' : 'DX' }));
  let server: http.Server;
  let base = '';
  let mode: 'ok' | 'ignores-offset' | 'modality-paging-broken' | 'unauthorized' | 'not-json' = 'ok';
  const seen: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const url = new URL(req.url!, 'http://x');
      seen.push(url.search);
      if (mode === 'unauthorized') { res.writeHead(401); res.end(); return; }
      if (mode === 'not-json') { res.writeHead(200, { 'content-type': 'application/dicom+json' }); res.end('<html>'); return; }
      if (url.pathname === '/dicom-web/studies') {
        const limit = Number(url.searchParams.get('limit'));
        let offset = Number(url.searchParams.get('offset'));
        const modalities = url.searchParams.get('ModalitiesInStudy')?.split(',');
        if (mode === 'ignores-offset') offset = 0;
        if (mode === 'modality-paging-broken' && modalities && offset > 0) { res.writeHead(200); res.end('[]'); return; }
        const match = studies.filter((s) => !modalities || modalities.includes(s.modality));
        res.writeHead(200, { 'content-type': 'application/dicom+json' });
        res.end(JSON.stringify(match.slice(offset, offset + limit).map((s) => ({
          '0020000D': { vr: 'UI', Value: [s.uid] }, '00080020': { vr: 'DA', Value: [s.date] }, '00080061': { vr: 'CS', Value: [s.modality] },
        }))));
        return;
      }
      res.writeHead(404);
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
  });

  const search = async (query: Parameters<DicomwebPuller['searchStudies']>[0]) => {
    const puller = new DicomwebPuller({ baseUrl: base });
    const notes: string[] = [];
    try {
      return { studies: await puller.searchStudies(query, (n) => notes.push(n)), notes };
    } finally {
      await puller.close();
    }
  };

  it('pages through every match, newest first, and keeps the newest N', async () => {
    mode = 'ok';
    const all = await search({ modalities: ['DX'], pageSize: 4 });
    expect(all.studies.map((s) => s.uid)).toEqual(studies.filter((s) => s.modality === 'DX').sort((x, y) => (x.date < y.date ? 1 : x.date > y.date ? -1 : x.uid < y.uid ? -1 : 1)).map((s) => s.uid));
    expect(all.notes).toEqual([]);
    const newest = await search({ modalities: [], pageSize: 4, limitStudies: 3 });
    expect(newest.studies.map((s) => s.date)).toEqual(['20250123', '20250122', '20250121']);
  });

  it('matches ModalitiesInStudy itself when the server cannot page with it (as Orthanc 1.10)', async () => {
    mode = 'modality-paging-broken';
    const r = await search({ modalities: ['DX'], pageSize: 4 });
    expect(r.studies).toHaveLength(studies.filter((s) => s.modality === 'DX').length);
    expect(r.studies.every((s) => s.modalities?.includes('DX'))).toBe(true);
    expect(r.notes).toEqual([expect.stringMatching(/does not page correctly when it matches ModalitiesInStudy/)]);
  });

  it('stops when the server ignores offset (the same page again)', async () => {
    mode = 'ignores-offset';
    seen.length = 0;
    const r = await search({ modalities: [], pageSize: 4 });
    expect(r.studies).toHaveLength(4);
    expect(seen.length).toBeLessThanOrEqual(3);
  });

  it('typed errors: 401 (with a hint), a body that is not JSON, a study that is gone', async () => {
    mode = 'unauthorized';
    await expect(search({ modalities: [], pageSize: 4 })).rejects.toMatchObject({ code: 'DICOMWEB_SOURCE_ERROR', message: expect.stringMatching(/HTTP 401 \(check --token\)/) });
    mode = 'not-json';
    await expect(search({ modalities: [], pageSize: 4 })).rejects.toMatchObject({ code: 'DICOMWEB_SOURCE_ERROR', message: expect.stringMatching(/not DICOM JSON/) });
    mode = 'ok';
    const puller = new DicomwebPuller({ baseUrl: base });
    try {
      const r = await puller.retrieveStudy('9.9.9', async () => undefined, 1000);
      expect(r).toEqual({ instances: 0, skipped: { 'study not found on the server': 1 } });
    } finally {
      await puller.close();
    }
    expect(() => new DicomwebPuller({ baseUrl: 'ftp://x/dicom-web' })).toThrow(expect.objectContaining({ code: 'USAGE' }));
  });
});

describe('PullState (resume file)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-pull-state-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const binding = { modelSha256: 'a'.repeat(64), names: ['logits', 'penultimate'], source: 'http://127.0.0.1:1/dicom-web', modalities: ['DX'] };
  const study = (k: number) => ({
    study: `study${k}`, skipped: (k === 2 ? { 'error DICOM_MALFORMED': 1 } : {}) as Record<string, number>,
    instances: [{ sop: `sop${k}`, pred: k % 2, features: { logits: Float32Array.of(k, -k), penultimate: Float32Array.of(0.1 * k, 1e-30, -3.5, k) } }],
  });

  it('round-trips studies exactly, drops a line cut by an interruption, and appends after it', () => {
    const file = path.join(dir, 'a.state');
    const s = PullState.open(file, binding);
    s.append(study(1));
    s.append(study(2));
    fs.appendFileSync(file, '{"study":"study3","skipped":{},"instan'); // killed mid-write
    const back = PullState.open(file, binding);
    expect([...back.studies.keys()]).toEqual(['study1', 'study2']);
    expect(back.studies.get('study2')).toEqual(study(2));
    back.append(study(3));
    expect([...PullState.open(file, binding).studies.keys()]).toEqual(['study1', 'study2', 'study3']);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('refuses a file of another pull or not a state file (CALIBRATION_STATE_MISMATCH)', () => {
    const file = path.join(dir, 'b.state');
    PullState.open(file, binding).append(study(1));
    for (const other of [{ modelSha256: 'b'.repeat(64) }, { names: ['logits'] }, { source: 'http://other/dicom-web' }, { modalities: ['CR'] }]) {
      expect(() => PullState.open(file, { ...binding, ...other })).toThrow(expect.objectContaining({ code: 'CALIBRATION_STATE_MISMATCH' }));
    }
    const junk = path.join(dir, 'c.state');
    fs.writeFileSync(junk, 'hello\n');
    expect(() => PullState.open(junk, binding)).toThrow(expect.objectContaining({ code: 'CALIBRATION_STATE_MISMATCH' }));
  });
});

describe('canonicalOrder', () => {
  const t: FeatureTable = {
    n: 4, numClasses: 2, predicted: Int32Array.of(0, 1, 0, 1),
    layers: { a: { dim: 2, data: Float32Array.of(1, 2, 3, 4, 5, 6, 1, 2) }, logits: { dim: 1, data: Float32Array.of(0, 1, 2, 0) } },
  };

  it('orders by the features, whatever the arrival order, and keeps one instance per SOP Instance UID', () => {
    const meta = [{ sop: 'x' }, { sop: 'y' }, { sop: 'z' }, { sop: 'w' }];
    const { order } = canonicalOrder(t, meta);
    // the same rows arriving reversed end in the same order of contents
    const rev: FeatureTable = { ...t, predicted: Int32Array.from(t.predicted).reverse(), layers: {
      a: { dim: 2, data: Float32Array.of(1, 2, 5, 6, 3, 4, 1, 2) }, logits: { dim: 1, data: Float32Array.of(0, 2, 1, 0) } } };
    const r = canonicalOrder(rev, [...meta].reverse());
    expect(order.map((i) => meta[i].sop)).toEqual(r.order.map((i) => [...meta].reverse()[i].sop));
    expect(canonicalOrder(t, [{ sop: 'x' }, { sop: 'y' }, { sop: 'x' }, { sop: 'w' }]).order).toHaveLength(3);
  });
});

/**
 * The gateway against a real Orthanc (started here on 127.0.0.1, stopped by PID), with a stand-in scanner so
 * that each verdict can be chosen per instance. The same routes with the real pipeline, model and bundle are
 * exercised in gateway-pipeline.test.ts.
 */
import * as fs from 'node:fs';
import { Writable } from 'node:stream';
import { startOrthanc, orthancAvailable, type OrthancHandle } from '../helpers/orthanc';
import { FakeScanner } from '../helpers/fake-scanner';
import { stow, sha256, referencedUids, failedItems, multipartBody } from '../helpers/stow';
import { corpusFiles, onePerTransferSyntax } from '../helpers/corpus';
import { orthancInstanceId, orthancFile, multipartParts } from '../helpers/orthanc-client';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { validateConfig } from '../../src/config';
import { createLogger } from '../../src/core/logger';
import { readHeader } from '../../src/dicom';
import { FAILURE_REASONS } from '../../src/proxy/failure-reasons';

jest.setTimeout(120000);
const logLines: string[] = [];
const logSink = new Writable({ write(chunk, _e, cb) { logLines.push(String(chunk)); cb(); } });

let orthanc: OrthancHandle;
let warden: RunningServer;
const scanner = new FakeScanner();
const base = (): string => `${warden.url}/dicom-web`;

beforeAll(async () => {
  if (!orthancAvailable()) throw new Error('Orthanc + DICOMweb plugin are needed: bash scripts/setup.sh --with-orthanc');
  orthanc = await startOrthanc();
  const config = validateConfig({ upstream: { url: orthanc.dicomWeb }, server: { port: 0, host: '127.0.0.1' }, limits: { memoryPartBytes: 64 * 1024 } });
  warden = await startServer(config, { scanner, logger: createLogger('info', logSink), eventStream: null });
});
afterAll(async () => {
  await warden?.close();
  await orthanc?.stop();
});

const read = (f: string): Buffer => fs.readFileSync(f);
const uidOf = (b: Buffer): string => readHeader(b)!.sopInstanceUid!;

describe('STOW-RS through Warden', () => {
  it('stores every transfer syntax Orthanc accepts byte-for-byte (sha256 of GET /instances/{id}/file)', async () => {
    const picks = onePerTransferSyntax();
    expect(picks.length).toBeGreaterThanOrEqual(15);
    const res = await stow(`${base()}/studies`, picks.map((p) => read(p.file)));
    expect([200, 202]).toContain(res.status);
    const stored = new Set(referencedUids(res.json));
    const failed = failedItems(res.json);
    expect(stored.size + failed.length).toBe(picks.length);
    let checked = 0;
    for (const p of picks) {
      const id = await orthancInstanceId(orthanc.url, p.sopInstanceUid);
      if (stored.has(p.sopInstanceUid)) {
        expect(id).not.toBeNull();
        expect({ ts: p.ts, sha: sha256(await orthancFile(orthanc.url, id!)) }).toEqual({ ts: p.ts, sha: sha256(read(p.file)) });
        checked++;
      } else {
        // refused by Orthanc itself: relayed as a failure, never claimed stored
        expect(failed.find((f) => f.uid === p.sopInstanceUid)).toBeDefined();
      }
    }
    expect(checked).toBeGreaterThanOrEqual(15);
  });

  it('answers 409 with FailedSOPSequence for a blocked study, which never reaches Orthanc', async () => {
    const f = read(`${__dirname}/../../../shared/corpus/dicom/pydicom/dicomdirtests/98892003/MR700/4648`);
    scanner.verdicts[uidOf(f)] = 'block';
    const res = await stow(`${base()}/studies`, [f]);
    expect(res.status).toBe(409);
    expect(referencedUids(res.json)).toEqual([]);
    const [item] = failedItems(res.json);
    expect(item.uid).toBe(uidOf(f));
    expect(item.reason).toBe(FAILURE_REASONS.blocked_by_detector.code);
    expect(item.text).toMatch(/blocked/);
    expect(res.headers.get('warning')).toMatch(/^299 warden ".*blocked/);
    expect(await orthancInstanceId(orthanc.url, uidOf(f))).toBeNull();
  });

  it('answers 202 for a mixed request: forwarded ones stored, blocked ones listed and absent', async () => {
    const files = ['MR2/4981', 'MR2/5011', 'MR2/4950'].map((p) => read(`${__dirname}/../../../shared/corpus/dicom/pydicom/dicomdirtests/98892003/${p}`));
    scanner.verdicts[uidOf(files[1])] = 'block';
    const res = await stow(`${base()}/studies`, files);
    expect(res.status).toBe(202);
    expect(referencedUids(res.json).sort()).toEqual([uidOf(files[0]), uidOf(files[2])].sort());
    expect(failedItems(res.json).map((f) => f.uid)).toEqual([uidOf(files[1])]);
    expect(await orthancInstanceId(orthanc.url, uidOf(files[1]))).toBeNull();
    expect(await orthancInstanceId(orthanc.url, uidOf(files[0]))).not.toBeNull();
    // Retrieve URLs point at Warden (derived from the request's Host + basePath), never at Orthanc
    const id0 = readHeader(files[0])!;
    expect(res.json['00081190'].Value[0]).toBe(`${base()}/studies/${id0.studyInstanceUid}`);
    const item = res.json['00081199'].Value.find((it: any) => it['00081155'].Value[0] === id0.sopInstanceUid);
    expect(item['00081190'].Value[0]).toBe(`${base()}/studies/${id0.studyInstanceUid}/series/${id0.seriesInstanceUid}/instances/${id0.sopInstanceUid}`);
    expect(res.text).not.toContain(orthanc.url);
    const retrieved = await fetch(item['00081190'].Value[0], { headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
    expect(retrieved.status).toBe(200);
    expect(multipartParts(Buffer.from(await retrieved.arrayBuffer()), retrieved.headers.get('content-type')!).map(sha256)).toEqual([sha256(files[0])]);
  });

  it('forwards flagged instances, marked in the response, the log and the metrics', async () => {
    const f = read(`${__dirname}/../../../shared/corpus/dicom/pydicom/dicomdirtests/98892003/MR2/6605`);
    scanner.verdicts[uidOf(f)] = 'flag';
    const res = await stow(`${base()}/studies`, [f]);
    expect(res.status).toBe(200);
    expect(referencedUids(res.json)).toEqual([uidOf(f)]);
    expect(res.json['00081199'].Value[0]['00091001'].Value[0]).toBe('FLAG');
    expect(res.headers.get('warning')).toMatch(/flagged/);
    const id = await orthancInstanceId(orthanc.url, uidOf(f));
    expect(sha256(await orthancFile(orthanc.url, id!))).toBe(sha256(f));
    const flagged = logLines.map((l) => JSON.parse(l)).filter((l) => l.event === 'instance_flagged');
    expect(flagged.length).toBeGreaterThan(0);
  });

  it('counts all three verdicts in /metrics and never puts a UID in a label', async () => {
    const text = await (await fetch(`${warden.url}/metrics`)).text();
    for (const v of ['forward', 'flag', 'block']) expect(text).toMatch(new RegExp(`^warden_instances_total\\{route="stow",verdict="${v}"\\} [1-9]`, 'm'));
    expect(text).toMatch(/^warden_studies_total\{route="stow",verdict="block"\} [1-9]/m);
    expect(text).toMatch(/^warden_upstream_requests_total\{method="POST",status="200"\} [1-9]/m);
    expect(text).not.toMatch(/\d+\.\d+\.\d+\.\d+\.\d+/); // no dotted UIDs anywhere
    expect(logLines.join('')).not.toContain('1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457');
  });

  it('rejects malformed multipart with 400, non-multipart with 415, and stays up', async () => {
    const { body, contentType } = multipartBody([read(`${__dirname}/../../../shared/corpus/dicom/pydicom/MR_small.dcm`)]);
    const truncated = body.subarray(0, body.length - 40);
    let res = await fetch(`${base()}/studies`, { method: 'POST', body: truncated, headers: { 'content-type': contentType } });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error.message).toMatch(/multipart/i);
    res = await fetch(`${base()}/studies`, { method: 'POST', body: 'garbage with no boundary', headers: { 'content-type': 'multipart/related; type="application/dicom"; boundary=zzz' } });
    expect(res.status).toBe(400);
    res = await fetch(`${base()}/studies`, { method: 'POST', body: 'x', headers: { 'content-type': 'multipart/related; type="application/dicom"' } });
    expect(res.status).toBe(400);
    res = await fetch(`${base()}/studies`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(415);
    expect((await fetch(`${warden.url}/healthz`)).status).toBe(200);
  });

  it('fails an instance whose StudyInstanceUID differs from POST /studies/{study}', async () => {
    const f = read(`${__dirname}/../../../shared/corpus/dicom/pydicom/dicomdirtests/98892003/MR2/6935`);
    const res = await stow(`${base()}/studies/1.2.3.4.5`, [f]);
    expect(res.status).toBe(409);
    expect(failedItems(res.json)[0].reason).toBe(FAILURE_REASONS.study_mismatch.code);
  });

  it('gives every shared corpus file a conformant STOW-RS response and stays up', async () => {
    const files = corpusFiles();
    expect(files.length).toBeGreaterThan(250);
    const statuses = new Map<number, number>();
    for (const file of files) {
      const res = await stow(`${base()}/studies`, [read(file)]);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      expect({ file, status: [200, 202, 409].includes(res.status) }).toEqual({ file, status: true });
      expect(res.headers.get('content-type')).toMatch(/^application\/dicom\+json/);
      const n = referencedUids(res.json).length + failedItems(res.json).length;
      expect({ file, n }).toEqual({ file, n: 1 });
    }
    expect((await fetch(`${warden.url}/healthz`)).status).toBe(200);
    expect(statuses.get(200)).toBeGreaterThan(100);
  });
});

describe('QIDO-RS and WADO-RS pass-through', () => {
  const get = async (url: string, accept: string): Promise<{ status: number; type: string | null; body: Buffer }> => {
    const res = await fetch(url, { headers: { accept } });
    return { status: res.status, type: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) };
  };

  it('returns what Orthanc returns for QIDO-RS', async () => {
    for (const q of ['/studies', '/studies?limit=2&offset=1', '/instances?Modality=MR', '/studies/1.2.3/series']) {
      const via = await get(`${base()}${q}`, 'application/dicom+json');
      const direct = await get(`${orthanc.dicomWeb}${q}`, 'application/dicom+json');
      expect({ q, status: via.status, type: via.type }).toEqual({ q, status: direct.status, type: direct.type });
      // the same results, with Retrieve URLs (0008,1190) pointing at Warden instead of Orthanc
      const directText = direct.body.toString('utf8');
      if (directText.trim()) expect(JSON.parse(via.body.toString('utf8'))).toEqual(JSON.parse(directText.split(`${orthanc.dicomWeb}/`).join(`${base()}/`)));
      else expect(via.body.length).toBe(0);
      expect(via.body.toString('utf8')).not.toContain(orthanc.url);
    }
  });

  it('rewrites QIDO-RS Retrieve URLs to server.publicBaseUrl when configured', async () => {
    const config = validateConfig({ upstream: { url: orthanc.dicomWeb }, server: { port: 0, host: '127.0.0.1', publicBaseUrl: 'https://warden.example.org/dicom-web' } });
    const pub = await startServer(config, { scanner: new FakeScanner(), logger: createLogger('silent'), eventStream: null });
    try {
      const res = await get(`${pub.url}/dicom-web/studies`, 'application/dicom+json');
      const studies = JSON.parse(res.body.toString('utf8'));
      expect(studies.length).toBeGreaterThan(0);
      for (const s of studies) expect(s['00081190'].Value[0]).toBe(`https://warden.example.org/dicom-web/studies/${s['0020000D'].Value[0]}`);
      const f = read(`${__dirname}/../../../shared/corpus/dicom/pydicom/dicomdirtests/98892003/MR2/4981`);
      const id = readHeader(f)!;
      const stowed = await stow(`${pub.url}/dicom-web/studies`, [f]);
      expect(stowed.json['00081190'].Value[0]).toBe(`https://warden.example.org/dicom-web/studies/${id.studyInstanceUid}`);
    } finally {
      await pub.close();
    }
  });

  it('returns the stored bytes for WADO-RS with transfer-syntax=*, and metadata as Orthanc', async () => {
    const f = read(`${__dirname}/../../../shared/corpus/dicom/pydicom/dicomdirtests/98892003/MR2/4981`);
    const id = readHeader(f)!;
    const meta = (await (await fetch(`${orthanc.url}/instances/${await orthancInstanceId(orthanc.url, id.sopInstanceUid!)}/tags?simplify`)).json()) as any;
    const path = `/studies/${id.studyInstanceUid}/series/${meta.SeriesInstanceUID}/instances/${id.sopInstanceUid}`;
    const accept = 'multipart/related; type="application/dicom"; transfer-syntax=*';
    const via = await get(`${base()}${path}`, accept);
    expect(via.status).toBe(200);
    const parts = multipartParts(via.body, via.type!);
    expect(parts.map(sha256)).toEqual([sha256(f)]);
    const metaVia = await get(`${base()}${path}/metadata`, 'application/dicom+json');
    const metaDirect = await get(`${orthanc.dicomWeb}${path}/metadata`, 'application/dicom+json');
    expect(metaVia.body.equals(metaDirect.body)).toBe(true);
    const missing = await get(`${base()}/studies/9.9.9/series/9.9/instances/9.9.9.9`, accept);
    const missingDirect = await get(`${orthanc.dicomWeb}/studies/9.9.9/series/9.9/instances/9.9.9.9`, accept);
    expect(missing.status).toBe(missingDirect.status);
  });
});

describe('upstream down', () => {
  it('answers 502 and claims nothing stored', async () => {
    const config = validateConfig({ upstream: { url: 'http://127.0.0.1:9/dicom-web', timeoutMs: 2000 }, server: { port: 0, host: '127.0.0.1' } });
    const down = await startServer(config, { scanner: new FakeScanner(), logger: createLogger('silent'), eventStream: null });
    try {
      const f = read(`${__dirname}/../../../shared/corpus/dicom/pydicom/MR_small.dcm`);
      const res = await stow(`${down.url}/dicom-web/studies`, [f]);
      expect([502, 503]).toContain(res.status);
      expect(referencedUids(res.json)).toEqual([]);
      expect(failedItems(res.json).length).toBe(1);
      const q = await fetch(`${down.url}/dicom-web/studies`);
      expect(q.status).toBe(502);
      const ready = await fetch(`${down.url}/readyz`);
      expect(ready.status).toBe(503);
    } finally {
      await down.close();
    }
  });
});

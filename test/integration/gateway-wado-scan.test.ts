/**
 * WADO-RS retrieve scanning (wado.scan: true) against a real Orthanc (started here on 127.0.0.1, stopped by PID):
 * a study is stored in Orthanc directly, then retrieved through Warden with a stand-in scanner that blocks one
 * instance and flags another. The blocked one is withheld, the others come back byte-for-byte.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startOrthanc, orthancAvailable, type OrthancHandle } from '../helpers/orthanc';
import { FakeScanner } from '../helpers/fake-scanner';
import { stow, sha256 } from '../helpers/stow';
import { multipartParts } from '../helpers/orthanc-client';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { validateConfig } from '../../src/config';
import { createLogger } from '../../src/core/logger';
import { readHeader } from '../../src/dicom';
import { DEFAULT_POLICY } from '../../src/policy';

jest.setTimeout(120000);

const STUDY_DIR = path.join(__dirname, '../../../shared/corpus/dicom/pydicom/dicomdirtests/98892003/MR700');
const files = fs.readdirSync(STUDY_DIR).sort().slice(0, 4).map((f) => fs.readFileSync(path.join(STUDY_DIR, f)));
const ids = files.map((b) => readHeader(b)!);
const study = ids[0].studyInstanceUid!;
const series = ids[0].seriesInstanceUid;
const ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*';

let orthanc: OrthancHandle;
let warden: RunningServer;
let wardenStudyRule: RunningServer;
const scanner = new FakeScanner();
const studyScanner = new FakeScanner({}, { ...DEFAULT_POLICY, studyRule: 'study' });

beforeAll(async () => {
  if (!orthancAvailable()) throw new Error('Orthanc + DICOMweb plugin are needed: bash scripts/setup.sh --with-orthanc');
  expect(new Set(ids.map((i) => i.studyInstanceUid)).size).toBe(1);
  orthanc = await startOrthanc();
  const direct = await stow(`${orthanc.dicomWeb}/studies`, files);
  expect(direct.status).toBe(200);
  const logger = createLogger('silent');
  const common = { upstream: { url: orthanc.dicomWeb }, server: { port: 0, host: '127.0.0.1' }, wado: { scan: true }, limits: { memoryPartBytes: 64 * 1024 } };
  warden = await startServer(validateConfig(common), { scanner, logger, eventStream: null });
  wardenStudyRule = await startServer(validateConfig(common), { scanner: studyScanner, logger, eventStream: null });
  scanner.verdicts[ids[1].sopInstanceUid!] = 'block';
  scanner.verdicts[ids[2].sopInstanceUid!] = 'flag';
  studyScanner.verdicts[ids[1].sopInstanceUid!] = 'block';
});
afterAll(async () => {
  await warden?.close();
  await wardenStudyRule?.close();
  await orthanc?.stop();
});

async function get(url: string, accept = ACCEPT): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(url, { headers: { accept } });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}
const uids = (parts: Buffer[]): string[] => parts.map((p) => readHeader(p)!.sopInstanceUid!).sort();

describe('WADO-RS retrieve scanning (wado.scan: true)', () => {
  it('withholds the blocked instance of a study retrieve (206 + Warning) and returns the others byte-for-byte', async () => {
    const res = await get(`${warden.url}/dicom-web/studies/${study}`);
    expect(res.status).toBe(206);
    expect(res.headers.get('content-type')).toMatch(/^multipart\/related; type="application\/dicom"; boundary=/);
    expect(res.headers.get('x-warden-withheld')).toBe('1');
    expect(res.headers.get('x-warden-instances')).toBe('4');
    expect(res.headers.get('x-warden-flagged')).toBe('count=1');
    expect(res.headers.get('warning')).toMatch(/299 warden "1 of 4 instances withheld by policy"/);
    expect(Number(res.headers.get('content-length'))).toBe(res.body.length);
    const parts = multipartParts(res.body, res.headers.get('content-type')!);
    expect(uids(parts)).toEqual([ids[0], ids[2], ids[3]].map((i) => i.sopInstanceUid).sort());
    // the original stored bytes, untouched
    const bySop = new Map(files.map((f, i) => [ids[i].sopInstanceUid, sha256(f)]));
    for (const p of parts) expect(sha256(p)).toBe(bySop.get(readHeader(p)!.sopInstanceUid));
    // the flagged part is marked in its part headers
    expect(res.body.toString('latin1')).toMatch(/X-Warden-Flagged: uad:p=/);
  });

  it('answers 200 with every instance when nothing is blocked (series of a clean retrieve)', async () => {
    const res = await get(`${warden.url}/dicom-web/studies/${study}/series/${series}/instances/${ids[0].sopInstanceUid}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-warden-withheld')).toBe('0');
    expect(res.headers.get('warning')).toBeNull();
    const parts = multipartParts(res.body, res.headers.get('content-type')!);
    expect(parts.map(sha256)).toEqual([sha256(files[0])]);
  });

  it('answers 409 with no multipart body when every instance is withheld', async () => {
    const res = await get(`${warden.url}/dicom-web/studies/${study}/series/${series}/instances/${ids[1].sopInstanceUid}`);
    expect(res.status).toBe(409);
    expect(res.headers.get('x-warden-withheld')).toBe('1');
    expect(res.headers.get('warning')).toMatch(/withheld/);
    const json = JSON.parse(res.body.toString('utf8'));
    expect(json.error.code).toBe('INSTANCES_WITHHELD');
    expect(json.withheld).toHaveLength(1);
  });

  it('withholds the whole study under policy.studyRule: study', async () => {
    const res = await get(`${wardenStudyRule.url}/dicom-web/studies/${study}`);
    expect(res.status).toBe(409);
    expect(res.headers.get('x-warden-withheld')).toBe('4');
  });

  it('passes metadata, QIDO and upstream errors through unscanned', async () => {
    const seen = scanner.seen.length;
    const meta = await get(`${warden.url}/dicom-web/studies/${study}/metadata`, 'application/dicom+json');
    const direct = await get(`${orthanc.dicomWeb}/studies/${study}/metadata`, 'application/dicom+json');
    expect(meta.status).toBe(200);
    expect(JSON.parse(meta.body.toString()).length).toBe(JSON.parse(direct.body.toString()).length);
    const qido = await get(`${warden.url}/dicom-web/studies?StudyInstanceUID=${study}`, 'application/dicom+json');
    expect(qido.status).toBe(200);
    const missing = await get(`${warden.url}/dicom-web/studies/1.2.3.4.5.6.7.404`);
    expect(missing.status).toBe((await get(`${orthanc.dicomWeb}/studies/1.2.3.4.5.6.7.404`)).status);
    expect(scanner.seen.length).toBe(seen);
  });

  it('counts retrieved instances by verdict in /metrics', async () => {
    const text = await (await fetch(`${warden.url}/metrics`)).text();
    for (const v of ['forward', 'flag', 'block']) expect(text).toMatch(new RegExp(`^warden_instances_total\\{route="wado",verdict="${v}"\\} [1-9]`, 'm'));
    expect(text).toMatch(/^warden_requests_total\{route="wado",status="206"\} [1-9]/m);
    expect(text).toMatch(/^warden_requests_total\{route="wado",status="409"\} [1-9]/m);
    expect(text).not.toContain(study);
  });
});

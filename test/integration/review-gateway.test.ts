/**
 * The review page of a running gateway in a real headless Chromium (Debian's, playwright-core), against a real
 * Orthanc: the demo fixtures are sent through Warden, a reviewer logs in with the browser's credentials prompt
 * (HTTP Basic, the token as password), filters the blocked instances, releases one with a comment, and it arrives in
 * Orthanc byte-exact. Then a grep over everything the run wrote — logs, security events, audit database files,
 * metrics, quarantine file names — finds no patient name, patient ID, birth date or raw UID.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import dcmjs from 'dcmjs';
import { startOrthanc, type OrthancHandle } from '../helpers/orthanc';
import { orthancFile, orthancInstanceId } from '../helpers/orthanc-client';
import { stow, sha256 } from '../helpers/stow';
import { readLabManifest } from '../helpers/lab-fixtures';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { validateConfig } from '../../src/config';
import { createLogger } from '../../src/core/logger';
import { readHeader } from '../../src/dicom';

jest.setTimeout(300000);

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'review-gateway');
const REVIEWER = 'reviewer-token-e2e-00000';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-review-gw-'));

/** A fixture with a patient birth date written in (the lab leaves it empty), so that the grep for it can fail. */
function withBirthDate(bytes: Buffer, date: string): Buffer {
  const file = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict);
  ds.PatientBirthDate = date;
  file.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(ds);
  return Buffer.from(file.write());
}

function identifiers(bytes: Buffer): string[] {
  const file = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict) as Record<string, unknown>;
  const name = ds.PatientName as Array<{ Alphabetic?: string }> | string | undefined;
  const text = Array.isArray(name) ? name[0]?.Alphabetic : name;
  return [text, ds.PatientID, ds.PatientBirthDate, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID]
    .filter((v): v is string => typeof v === 'string' && v.length >= 6);
}

let orthanc: OrthancHandle;
let w: RunningServer;
let ctx: BrowserContext;
let page: Page;
const logs: string[] = [];
const events: string[] = [];
const sent: Buffer[] = [];

beforeAll(async () => {
  orthanc = await startOrthanc();
  const eventStream = new PassThrough();
  eventStream.on('data', (d: Buffer) => events.push(d.toString('utf8')));
  w = await startServer(validateConfig({
    upstream: { url: orthanc.dicomWeb },
    server: { port: 0, host: '127.0.0.1', stateDir: path.join(tmp, 'state') },
    model: { workers: 1, threadsPerWorker: 1 },
    auth: { tokens: [{ name: 'dr-review', roles: ['reviewer'], token: REVIEWER }] },
  }), { logger: createLogger('debug', { write: (l: string) => { logs.push(l); } }), eventStream });
  // the demo's fixtures, a study per request as `warden send` does; a few with a birth date written in
  const rows = readLabManifest();
  const byStudy = new Map<string, Buffer[]>();
  rows.forEach((r, i) => {
    const bytes = i % 7 === 0 ? withBirthDate(fs.readFileSync(r.path), '19700101') : fs.readFileSync(r.path);
    sent.push(bytes);
    byStudy.set(r.study_uid, [...(byStudy.get(r.study_uid) ?? []), bytes]);
  });
  for (const files of byStudy.values()) await stow(`${w.url}/dicom-web/studies`, files);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  ctx = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(tmp, 'chromium-')), {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 900 },
    httpCredentials: { username: 'dr-review', password: REVIEWER },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = ctx.pages()[0] ?? await ctx.newPage();
});

afterAll(async () => {
  await ctx?.close();
  await w?.close();
  await orthanc?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

it('loads, filters the blocked instances and releases one to Orthanc from the review page', async () => {
  await page.goto(`${w.url}/ui/`);
  expect(await page.locator('#instances tbody tr').count()).toBeGreaterThan(10);
  await page.selectOption('#f-verdict', 'block');
  await Promise.all([page.waitForURL(/verdict=block/), page.click('#apply-filters')]);
  const blocked = await page.locator('#instances tbody tr').evaluateAll((rows) => rows.map((r) => [r.getAttribute('data-id'), r.getAttribute('data-verdict')]));
  expect(blocked.length).toBeGreaterThan(0);
  expect(new Set(blocked.map((b) => b[1]))).toEqual(new Set(['block']));
  await page.screenshot({ path: path.join(ARTIFACTS, '01-blocked.png'), fullPage: true });

  const id = blocked[0][0]!;
  const rec = await (await fetch(`${w.url}/ui/api/instances/${id}`, { headers: { authorization: `Bearer ${REVIEWER}` } })).json() as { sha256: string };
  const original = sent.find((b) => sha256(b) === rec.sha256)!;
  expect(original).toBeDefined();
  await Promise.all([page.waitForURL(/\/instances\//), page.click(`tr[data-id="${id}"] a:text("review")`)]);
  await page.screenshot({ path: path.join(ARTIFACTS, '02-instance.png'), fullPage: true });
  await Promise.all([page.waitForURL(/\/release$/), page.click('#release')]);
  await page.fill('#comment', 'Reviewed: a manipulated copy of a test fixture, released for the test.');
  await Promise.all([page.waitForURL(/done=released/), page.click('#confirm')]);
  expect(await page.textContent('#state')).toContain('released');
  const inOrthanc = await orthancInstanceId(orthanc.url, readHeader(original)!.sopInstanceUid!);
  expect(sha256(await orthancFile(orthanc.url, inOrthanc!))).toBe(rec.sha256);
});

it('wrote no patient name, ID, birth date or raw UID into logs, events, the audit database, metrics or file names', async () => {
  const forbidden = [...new Set(sent.flatMap(identifiers))];
  expect(forbidden).toEqual(expect.arrayContaining(['19700101']));
  expect(forbidden.length).toBeGreaterThan(100);
  const state = path.join(tmp, 'state');
  const dbFiles = fs.readdirSync(state).filter((f) => f.startsWith('audit.sqlite')).map((f) => path.join(state, f));
  expect(dbFiles.length).toBeGreaterThan(0);
  const names: string[] = [];
  const walk = (d: string): void => { for (const e of fs.readdirSync(d, { withFileTypes: true })) { names.push(e.name); if (e.isDirectory()) walk(path.join(d, e.name)); } };
  walk(state);
  const metrics = await (await fetch(`${w.url}/metrics`)).text();
  const page1 = await (await fetch(`${w.url}/ui/api/instances?limit=1000`, { headers: { authorization: `Bearer ${REVIEWER}` } })).text();
  const haystacks: Record<string, string> = {
    logs: logs.join('\n'), events: events.join(''), metrics, auditApi: page1, fileNames: names.join('\n'),
    ...Object.fromEntries(dbFiles.map((f) => [path.basename(f), fs.readFileSync(f).toString('latin1')])),
  };
  expect(haystacks.logs.length).toBeGreaterThan(1000);
  expect(haystacks.events).toMatch(/"type":"block"/);
  const found = Object.entries(haystacks).flatMap(([where, text]) => forbidden.filter((f) => text.includes(f)).map((f) => `${where}: ${f}`));
  expect(found).toEqual([]);
});

/**
 * Nothing is lost when Warden dies right after a block answer: `warden serve` (a child process, real model and
 * bundle, real Orthanc) is killed with SIGKILL the moment the sender has its 409; after a restart the quarantined
 * bytes and the audit record are there, and the restarted gateway can release them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort, startOrthanc, type OrthancHandle } from '../helpers/orthanc';
import { orthancFile, orthancInstanceId } from '../helpers/orthanc-client';
import { stow, sha256 } from '../helpers/stow';
import { readLabManifest } from '../helpers/lab-fixtures';
import { readHeader } from '../../src/dicom';

jest.setTimeout(240000);

const ROOT = path.resolve(__dirname, '..', '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-crash-'));
const REVIEWER = 'reviewer-token-crash-0000';
const attacks = readLabManifest().filter((r) => r.kind === 'adversarial' && r.success === '1' && r.eps === '8').map((r) => fs.readFileSync(r.path));

let orthanc: OrthancHandle;
let child: ChildProcess | undefined;
let port = 0;
let configFile = '';

async function startWarden(): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), 'serve', '--config', configFile], { cwd: ROOT, stdio: 'ignore' });
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`warden serve exited with ${proc.exitCode}`);
    try { if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return proc; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('warden serve did not start');
}

beforeAll(async () => {
  orthanc = await startOrthanc();
  port = await freePort();
  configFile = path.join(tmp, 'warden.yaml');
  fs.writeFileSync(configFile, [
    `server: { host: 127.0.0.1, port: ${port}, stateDir: ${path.join(tmp, 'state')} }`,
    `upstream: { url: ${orthanc.dicomWeb} }`,
    'model: { workers: 1, threadsPerWorker: 1 }',
    `auth: { tokens: [{ name: reviewer, roles: [reviewer], token: ${REVIEWER} }] }`,
    'alerts: { events: false }',
    'logging: { level: warn }',
  ].join('\n'));
});

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await orthanc?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

it('keeps the bytes and the record of an instance blocked just before a kill -9, and releases it after the restart', async () => {
  child = await startWarden();
  let blocked: Buffer | undefined;
  for (const f of attacks) {
    const res = await stow(`http://127.0.0.1:${port}/dicom-web/studies`, [f]);
    if (res.status === 409) {
      child.kill('SIGKILL'); // the sender has its answer: die now
      blocked = f;
      break;
    }
  }
  expect(blocked).toBeDefined();
  await new Promise((r) => child!.once('exit', r));
  const address = sha256(blocked!);
  expect(sha256(fs.readFileSync(path.join(tmp, 'state', 'quarantine', address.slice(0, 2), `${address.slice(2)}.dcm`)))).toBe(address);

  child = await startWarden();
  const api = (p: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${port}/ui/api${p}`, { ...init, headers: { authorization: `Bearer ${REVIEWER}`, 'content-type': 'application/json' } });
  const page = await (await api('/instances?status=quarantined')).json() as { items: Array<{ id: string; sha256: string; verdict: string }> };
  const rec = page.items.find((r) => r.sha256 === address);
  expect(rec).toMatchObject({ verdict: 'block' });
  const released = await (await api(`/instances/${rec!.id}/release`, { method: 'POST', body: JSON.stringify({ comment: 'checked after the crash' }) })).json() as { state: string };
  expect(released.state).toBe('released');
  const id = await orthancInstanceId(orthanc.url, readHeader(blocked!)!.sopInstanceUid!);
  expect(sha256(await orthancFile(orthanc.url, id!))).toBe(address);
  child.kill('SIGTERM');
  await new Promise((r) => child!.once('exit', r));
});

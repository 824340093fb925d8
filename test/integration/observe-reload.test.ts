/**
 * Going live (issue "site adaptation"), against a real Orthanc with the embedded model and bundle:
 * - observe mode forwards an ε = 8/255 adversarial fixture byte-exact and says "would block" in the answer, the log
 *   and the metrics; enforce mode blocks the same file;
 * - a hot reload swaps bundles while STOW-RS requests are in flight: no request fails, each answer names the bundle
 *   that scored it, and a bad bundle is refused while the one in use stays.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startOrthanc, type OrthancHandle } from '../helpers/orthanc';
import { orthancFile, orthancInstanceId } from '../helpers/orthanc-client';
import { stow, sha256, referencedUids } from '../helpers/stow';
import { readLabManifest } from '../helpers/lab-fixtures';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { validateConfig, type WardenConfig, type WardenConfigInput } from '../../src/config';
import { createLogger } from '../../src/core/logger';
import { DEFAULT_BUNDLE_PATH } from '../../src/core/defaults';
import { readBundleFile, writeBundleFile } from '../../src/detectors';
import { TAG, readHeader } from '../../src/dicom';

jest.setTimeout(240000);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-golive-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const lab = readLabManifest();
const attacks = lab.filter((r) => r.kind === 'adversarial' && r.success === '1' && r.eps === '8').map((r) => fs.readFileSync(r.path));
const clean = lab.filter((r) => r.kind === 'clean').map((r) => fs.readFileSync(r.path));
const uid = (b: Buffer): string => readHeader(b)!.sopInstanceUid!;

let orthanc: OrthancHandle;
beforeAll(async () => { orthanc = await startOrthanc(); });
afterAll(async () => { await orthanc?.stop(); });

function config(extra: Partial<WardenConfigInput>): WardenConfig {
  return validateConfig({ upstream: { url: orthanc.dicomWeb }, server: { port: 0, host: '127.0.0.1', stateDir: path.join(tmp, `s-${Math.random()}`) }, model: { workers: 1, threadsPerWorker: 1 }, ...extra });
}

describe('observe mode', () => {
  it('forwards what enforce mode blocks, byte-exact, and says it would have blocked it in the answer, the log and the metrics', async () => {
    const enforce = await startServer(config({}), { logger: createLogger('silent'), eventStream: null });
    let target: Buffer | undefined;
    try {
      for (const f of attacks) if ((await stow(`${enforce.url}/dicom-web/studies`, [f])).status === 409) { target = f; break; }
    } finally {
      await enforce.close();
    }
    expect(target).toBeDefined();
    expect(await orthancInstanceId(orthanc.url, uid(target!))).toBeNull();

    const lines: string[] = [];
    const observe = await startServer(config({ policy: { mode: 'observe' } }), { logger: createLogger('info', { write: (l: string) => { lines.push(l); } }), eventStream: null });
    try {
      const res = await stow(`${observe.url}/dicom-web/studies`, [target!]);
      expect(res.status).toBe(200);
      expect(referencedUids(res.json)).toEqual([uid(target!)]);
      const item = res.json[TAG.ReferencedSOPSequence].Value[0];
      expect(item[TAG.WardenVerdict].Value[0]).toBe('FORWARD');
      expect(item[TAG.WardenWouldBe].Value[0]).toBe('BLOCK');
      expect(item[TAG.WardenReason].Value[0]).toMatch(/observe mode: would have been blocked/);
      expect(res.headers.get('warning')).toMatch(/would have been blocked/);
      const id = await orthancInstanceId(orthanc.url, uid(target!));
      expect(sha256(await orthancFile(orthanc.url, id!))).toBe(sha256(target!));
      expect(lines.some((l) => /"event":"instance_would_block"/.test(l))).toBe(true);
      const metrics = await (await fetch(`${observe.url}/metrics`)).text();
      expect(metrics).toMatch(/^warden_instances_observed_total\{route="stow",verdict="block"\} 1$/m);
      expect(metrics).toMatch(/^warden_instances_total\{route="stow",verdict="forward"\} 1$/m);
    } finally {
      await observe.close();
    }
  });
});

describe('hot reload', () => {
  it('swaps bundles under load without failing a request; every answer names the bundle that scored it; a bad bundle is refused', async () => {
    // a second valid bundle: the embedded one, written again (another creation time, so another sha256)
    const contents = readBundleFile(DEFAULT_BUNDLE_PATH);
    const second = path.join(tmp, 'second.bundle');
    writeBundleFile(second, { ...contents, header: { ...contents.header, createdAt: new Date(Date.UTC(2030, 0, 1)).toISOString() } });
    const foreign = path.join(tmp, 'foreign.bundle');
    writeBundleFile(foreign, { ...contents, header: { ...contents.header, model: { ...contents.header.model, sha256: '0'.repeat(64) } } });

    let next: string | null = null;
    const base = config({ auth: { tokens: [{ name: 'ops', roles: ['admin'], token: 'admin-token-000000000' }] } });
    const w: RunningServer = await startServer(base, {
      logger: createLogger('silent'), eventStream: null,
      reloadConfig: () => ({ ...base, model: { ...base.model, bundle: next } }),
    });
    try {
      const first = w.deps.runtimes.current.bundleSha256!;
      const answers: Array<{ status: number; bundle: string | null }> = [];
      let sending = true;
      const load = (async () => {
        let i = 0;
        while (sending) {
          const batch = await Promise.all([0, 1, 2].map((k) => stow(`${w.url}/dicom-web/studies`, [clean[(i + k) % clean.length]])));
          for (const r of batch) answers.push({ status: r.status, bundle: r.headers.get('x-warden-bundle') });
          i += 3;
        }
      })();
      await new Promise((r) => setTimeout(r, 1500));
      next = second;
      const swapped = await w.reload();
      await new Promise((r) => setTimeout(r, 1500));
      // a bundle fitted for another model: refused (here and through the admin API), the second one stays
      next = foreign;
      await expect(w.reload()).rejects.toMatchObject({ code: 'RELOAD_REFUSED' });
      const viaApi = await fetch(`${w.url}/admin/reload`, { method: 'POST', headers: { authorization: 'Bearer admin-token-000000000' } });
      expect(viaApi.status).toBe(409);
      expect(((await viaApi.json()) as { error: { message: string } }).error.message).toMatch(/fitted for the model with sha256 000000000000/);
      await new Promise((r) => setTimeout(r, 800));
      sending = false;
      await load;

      expect(swapped.bundleSha256).not.toBe(first);
      expect(answers.length).toBeGreaterThan(6);
      expect(answers.filter((a) => a.status !== 200)).toEqual([]);
      expect(new Set(answers.map((a) => a.bundle))).toEqual(new Set([first, swapped.bundleSha256]));
      // after the swap, only the new bundle answers (also after the refused reload)
      const last = answers.slice(-3);
      for (const a of last) expect(a.bundle).toBe(swapped.bundleSha256);
      expect(await (await fetch(`${w.url}/metrics`)).text()).toContain(`bundle_sha256="${swapped.bundleSha256}"`);
    } finally {
      await w.close();
    }
  });
});

/**
 * Two doors, one decision: the same files under the same configuration get the same verdict from `warden scan`
 * (the CLI, run as a user runs it) and from `warden serve` (a STOW-RS request per file through the gateway, the
 * verdict read from the PS3.18 answer's private tag 0009,1001). Corpus files of several modalities (in and out of
 * the default CR/DX scope), a non-image, a truncated file, and lab fixtures (clean and adversarial DX).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startSink } from '../helpers/sink-upstream';
import { stow } from '../helpers/stow';
import { readLabManifest } from '../helpers/lab-fixtures';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/core/logger';
import { TAG } from '../../src/dicom';

jest.setTimeout(240000);

const ROOT = path.resolve(__dirname, '..', '..');
const CORPUS = path.resolve(ROOT, '..', 'shared', 'corpus', 'dicom');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-parity-'));
const truncated = path.join(dir, 'truncated.dcm');

function files(): string[] {
  const corpus = ['pydicom/MR_small.dcm', 'cornerstone-dicomParser/CT1_UNC.explicit_little_endian.dcm', 'pydicom/rtplan.dcm', 'pydicom/dicomdirtests/77654033/CR1/6154',
    'pydicom/dicomdirtests/77654033/CR2/6247', 'pydicom-data/RG3_J2KR.dcm'].map((f) => path.join(CORPUS, f));
  const lab = readLabManifest();
  const pick = (kind: string, n: number) => lab.filter((r) => r.kind === kind && (kind !== 'adversarial' || r.success === '1')).slice(0, n).map((r) => r.path);
  return [...corpus, ...pick('clean', 3), ...pick('adversarial', 3), truncated];
}

describe('warden scan and warden serve judge a file the same way', () => {
  let sink: Awaited<ReturnType<typeof startSink>>;
  let gateway: RunningServer;
  let configFile: string;

  beforeAll(async () => {
    const mr = fs.readFileSync(path.join(CORPUS, 'pydicom', 'MR_small.dcm'));
    fs.writeFileSync(truncated, mr.subarray(0, mr.length - 100));
    sink = await startSink();
    // The shipped defaults, but for what a test needs: loopback, any port, this sink.
    configFile = path.join(dir, 'warden.yaml');
    fs.writeFileSync(configFile, `server:\n  host: 127.0.0.1\n  port: 0\nupstream:\n  url: ${sink.url}\nmodel:\n  workers: 1\n  threadsPerWorker: 1\n`);
    gateway = await startServer(loadConfig(configFile, {}), { logger: createLogger('silent'), eventStream: null });
  });

  afterAll(async () => {
    await gateway?.close();
    await sink?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('gives every file the same verdict through both doors', async () => {
    const list = files();
    const cli = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), 'scan', '--json', '--config', configFile, ...list],
      { cwd: ROOT, encoding: 'utf8', timeout: 180000, env: { ...process.env, WARDEN_CONFIG: '' } });
    expect(cli.stderr).not.toMatch(/warden: [A-Z_]+:/);
    const scanned = new Map(cli.stdout.trim().split('\n').map((l) => JSON.parse(l)).map((r) => [r.file, r.verdict ?? 'forward']));
    expect(scanned.size).toBe(list.length);

    const served = new Map<string, string>();
    for (const file of list) {
      const res = await stow(`${gateway.url}/dicom-web/studies`, [fs.readFileSync(file)]);
      const item = res.json?.[TAG.ReferencedSOPSequence]?.Value?.[0] ?? res.json?.[TAG.FailedSOPSequence]?.Value?.[0];
      served.set(file, String(item?.[TAG.WardenVerdict]?.Value?.[0]).toLowerCase());
    }
    const rows = list.map((f) => ({ file: path.relative(ROOT, f), scan: scanned.get(f), serve: served.get(f) }));
    expect(rows).toEqual(rows.map((r) => ({ ...r, serve: r.scan })));
    // the comparison means something only if the set exercises several verdicts
    expect(new Set(rows.map((r) => r.scan)).size).toBeGreaterThanOrEqual(2);
  });
});

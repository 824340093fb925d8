/**
 * `warden calibrate --from-dicomweb` against a real Orthanc (started here on 127.0.0.1, stopped by PID), filled with
 * 120 clean instances (Kermany test-split images written as DICOM, 2 per study, in four transfer syntaxes): the bundle
 * it writes has exactly the calibration of `warden calibrate --from <the same files>`; a pull killed after a few
 * studies and rerun with the same --state file ends with the same bundle; typed errors for a bundle of another model,
 * an empty source, a server that is down and a state file of another pull.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort, orthancAvailable, startOrthanc, type OrthancHandle } from '../helpers/orthanc';
import { SYNTAX, splitPaths, writeKermanyStudies, type WrittenInstance } from '../helpers/write-dicom';
import { decodeBundle, encodeBundle, readBundleFile } from '../../src/detectors';

jest.setTimeout(600000);
const ROOT = path.resolve(__dirname, '..', '..');
const WARDEN = path.join(ROOT, 'bin', 'warden.js');
const SHIPPED = path.join(ROOT, 'models', 'warden-cxr-ref.bundle');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-calibrate-web-'));
const FILES = path.join(dir, 'site');
const STUDIES = 60;
const env = { ...process.env, WARDEN_LOG_LEVEL: 'error' };

function warden(...args: string[]) {
  const res = spawnSync(process.execPath, [WARDEN, ...args], { cwd: dir, encoding: 'utf8', timeout: 300000, env });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** Every array of every detector, by `<detector>/<array>` (the bundle's own typed arrays). */
function arraysOf(file: string): Record<string, ArrayLike<number>> {
  const out: Record<string, ArrayLike<number>> = {};
  for (const d of readBundleFile(file).detectors) for (const [name, a] of Object.entries(d.state.arrays)) out[`${d.id}/${name}`] = a;
  return out;
}

/** The calibration arrays (plain numbers, for readable diffs). */
const calibrationOnly = (arrays: Record<string, ArrayLike<number>>) => Object.fromEntries(Object.entries(arrays).filter(([k]) => /calibration/.test(k)).map(([k, v]) => [k, Array.from(v)]));

/** Names of the arrays whose bytes differ between two bundles' arrays (or that only one has). */
function differing(a: Record<string, ArrayLike<number>>, b: Record<string, ArrayLike<number>>): string[] {
  const bytes = (v: ArrayLike<number>) => Buffer.from((v as Float64Array).buffer, (v as Float64Array).byteOffset, (v as Float64Array).byteLength);
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !a[k] || !b[k] || !bytes(a[k]).equals(bytes(b[k])) || a[k].constructor !== b[k].constructor);
}

let orthanc: OrthancHandle;
let written: WrittenInstance[];
let fromFolder: Record<string, ArrayLike<number>>;

beforeAll(async () => {
  if (!orthancAvailable()) throw new Error('Orthanc + DICOMweb plugin are needed: bash scripts/setup.sh --with-orthanc');
  written = await writeKermanyStudies(FILES, splitPaths('test').slice(0, 2 * STUDIES), {
    group: 'calibrate-web', perStudy: 2, syntaxes: [SYNTAX.explicitLittle, SYNTAX.implicitLittle, SYNTAX.explicitBig, SYNTAX.deflated],
  });
  orthanc = await startOrthanc();
  for (const w of written) {
    const res = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: fs.readFileSync(w.file) });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`Orthanc refused ${w.file}: ${res.status}`);
  }
  const res = warden('calibrate', '--bundle', SHIPPED, '--from', FILES, '--out', path.join(dir, 'folder.bundle'));
  if (res.code !== 0) throw new Error(`calibrate --from failed: ${res.stderr}`);
  fromFolder = arraysOf(path.join(dir, 'folder.bundle'));
});

afterAll(async () => {
  await orthanc?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('warden calibrate --from-dicomweb against Orthanc', () => {
  test('pulls every study (QIDO-RS in pages of 7, WADO-RS transfer-syntax=*) and writes the same calibration as --from the files, exactly', () => {
    const out = path.join(dir, 'web.bundle');
    const res = warden('calibrate', '--bundle', SHIPPED, '--from-dicomweb', orthanc.dicomWeb, '--page-size', '7', '--out', out, '--report', path.join(dir, 'report'));
    expect(res.stderr).toMatch(/site {9}120 clean instances from 60 studies/);
    expect(res.code).toBe(0);
    const web = arraysOf(out);
    expect(Object.keys(calibrationOnly(web)).sort()).toEqual(expect.arrayContaining(['kd/calibration_scores', 'kd/calibration_scores_class_0', 'uad/calibration_scores', 'uad/penultimate:layer_calibration']));
    expect(calibrationOnly(web)).toEqual(calibrationOnly(fromFolder));
    expect(differing(web, fromFolder)).toEqual([]);
    expect(web['lid/calibration_scores']).toHaveLength(120);
    expect(web['uad/calibration_scores']).toHaveLength(60);
    // calibrated on the site, not the shipped scores
    expect(differing(web, arraysOf(SHIPPED)).sort()).toEqual(Object.keys(calibrationOnly(web)).sort());
    const header = readBundleFile(out).header;
    expect(header.model.sha256).toBe(readBundleFile(SHIPPED).header.model.sha256);
    expect(header.calibration).toMatchObject({ n: 120, source: `dicomweb ${orthanc.dicomWeb} (ModalitiesInStudy CR,DX; any date)`, site: { instances: 120, studies: 60 } });
  });

  test('--limit-studies keeps that many studies', () => {
    const res = warden('calibrate', '--bundle', SHIPPED, '--from-dicomweb', orthanc.dicomWeb, '--page-size', '7', '--limit-studies', '5', '--out', path.join(dir, 'five.bundle'));
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(/site {9}10 clean instances from 5 studies/);
    expect(readBundleFile(path.join(dir, 'five.bundle')).header.calibration.source).toMatch(/newest 5 studies/);
  });

  test('a pull killed after a few studies continues from its state file and ends with the same bundle', async () => {
    const state = path.join(dir, 'pull.state');
    const out = path.join(dir, 'resumed.bundle');
    const args = [WARDEN, 'calibrate', '--bundle', SHIPPED, '--from-dicomweb', orthanc.dicomWeb, '--out', out, '--state', state];
    const child = spawn(process.execPath, args, { cwd: dir, env, stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const lines = () => (fs.existsSync(state) ? fs.readFileSync(state, 'utf8').split('\n').length - 1 : 0); // complete lines
    let seen = 0;
    for (let i = 0; i < 6000 && child.exitCode === null; i++) {
      seen = lines();
      if (seen >= 1 + 3) break; // the header and 3 studies
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill('SIGKILL');
    await exited;
    expect(fs.existsSync(out)).toBe(false); // stopped before the end
    const done = lines() - 1;
    expect(done).toBeGreaterThanOrEqual(3);
    expect(done).toBeLessThan(STUDIES);
    const text = fs.readFileSync(state, 'utf8');
    for (const w of written.slice(0, 5)) expect(text).not.toContain(w.study); // hashed study UIDs only
    const res = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8', timeout: 300000, env });
    expect(res.status).toBe(0);
    const resumed = Number(/\((\d+) studies resumed from the state file\)/.exec(res.stderr)?.[1]);
    expect(resumed).toBeGreaterThanOrEqual(done);
    expect(res.stderr).toMatch(/site {9}120 clean instances from 60 studies/);
    expect(differing(arraysOf(out), fromFolder)).toEqual([]);
    // a finished state file is complete: a third run pulls nothing and writes the same bundle again
    const again = warden('calibrate', '--bundle', SHIPPED, '--from-dicomweb', orthanc.dicomWeb, '--out', path.join(dir, 'again.bundle'), '--state', state);
    expect(again.stderr).toMatch(/\(60 studies resumed from the state file\)/);
    expect(differing(arraysOf(path.join(dir, 'again.bundle')), fromFolder)).toEqual([]);
  });

  test('a state file of another pull is refused (CALIBRATION_STATE_MISMATCH)', () => {
    const res = warden('calibrate', '--bundle', SHIPPED, '--from-dicomweb', orthanc.dicomWeb, '--modality', 'DX', '--out', path.join(dir, 'x.bundle'), '--state', path.join(dir, 'pull.state'));
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/CALIBRATION_STATE_MISMATCH: .*another modality filter/);
  });

  test('no study matches: CALIBRATION_SOURCE_EMPTY', () => {
    const res = warden('calibrate', '--bundle', SHIPPED, '--from-dicomweb', orthanc.dicomWeb, '--modality', 'CT', '--out', path.join(dir, 'ct.bundle'));
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/CALIBRATION_SOURCE_EMPTY: No study on .* matches ModalitiesInStudy CT/);
    expect(fs.existsSync(path.join(dir, 'ct.bundle'))).toBe(false);
  });
});

describe('warden calibrate --refit domain', () => {
  test('refits the domain detectors on some studies of the site and calibrates them on the others (seeded split by study)', () => {
    const out = path.join(dir, 'refit.bundle');
    const res = warden('calibrate', '--bundle', SHIPPED, '--from', FILES, '--refit', 'domain', '--seed', '3', '--out', out);
    expect(res.stderr).toMatch(/refitted and calibrated on held-out studies: kd, lid, mgm, uad, nrd/);
    expect(res.code).toBe(0);
    const header = readBundleFile(out).header;
    expect(header.fit).toMatchObject({ n: readBundleFile(SHIPPED).header.fit.n, refit: { detectors: ['kd', 'lid', 'mgm', 'uad', 'nrd'], n: 60, split: expect.stringMatching(/seed 3: 30 studies to fit, 30 to calibrate/) } });
    // the refitted (domain) detectors calibrate on the other 60; the adversarial ones, not refitted, on all 120
    expect(header.calibration).toMatchObject({ n: 120, site: { instances: 120, studies: 60 }, perDetector: { lid: 60, uad: 60, squeeze: 120, coherence: 120, margin: 120 } });
    expect(header.model.sha256).toBe(readBundleFile(SHIPPED).header.model.sha256);
    const arrays = arraysOf(out);
    expect(arrays['lid/calibration_scores']).toHaveLength(60);
    expect(arrays['squeeze/calibration_scores']).toHaveLength(120);
    expect(differing(arrays, arraysOf(SHIPPED))).toContain('mgm/mean');
    // the same seed gives the same bundle
    const again = warden('calibrate', '--bundle', SHIPPED, '--from', FILES, '--refit', 'domain', '--seed', '3', '--out', path.join(dir, 'refit2.bundle'));
    expect(again.code).toBe(0);
    expect(differing(arraysOf(path.join(dir, 'refit2.bundle')), arrays)).toEqual([]);
  });
});

describe('warden calibrate: typed errors', () => {
  test('a server that is down: DICOMWEB_SOURCE_UNREACHABLE, no bundle written', async () => {
    const port = await freePort();
    const res = warden('calibrate', '--bundle', SHIPPED, '--from-dicomweb', `http://127.0.0.1:${port}/dicom-web`, '--out', path.join(dir, 'down.bundle'));
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(new RegExp(`DICOMWEB_SOURCE_UNREACHABLE: The DICOMweb server at http://127\\.0\\.0\\.1:${port} could not be reached for the QIDO-RS study search \\(ECONNREFUSED\\)`));
    expect(fs.existsSync(path.join(dir, 'down.bundle'))).toBe(false);
  });

  test('a folder without a usable instance: CALIBRATION_SOURCE_EMPTY', () => {
    const empty = path.join(dir, 'empty');
    fs.mkdirSync(empty);
    fs.writeFileSync(path.join(empty, 'notes.dcm'), 'not a DICOM file');
    const res = warden('calibrate', '--bundle', SHIPPED, '--from', empty, '--out', path.join(dir, 'empty.bundle'));
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/CALIBRATION_SOURCE_EMPTY: folder .*empty holds no usable clean instance \(left out: 1 × not a DICOM Part-10 file\)/);
  });

  test('a bundle fitted for another model: BUNDLE_MODEL_MISMATCH before anything is read', () => {
    const contents = decodeBundle(fs.readFileSync(SHIPPED));
    contents.header.model.sha256 = 'f'.repeat(64);
    const other = path.join(dir, 'other-model.bundle');
    fs.writeFileSync(other, encodeBundle(contents));
    const res = warden('calibrate', '--bundle', other, '--from', FILES, '--out', path.join(dir, 'mismatch.bundle'));
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/BUNDLE_MODEL_MISMATCH: .*fitted for the model with sha256 ffffffffffff/);
    expect(res.stderr).not.toMatch(/site {2}/); // no extraction started
  });
});

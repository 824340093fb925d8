/** `warden fit --from`: the split by study, the detectors a model can feed, the summary counts (src/cli/fit-sources.ts). */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FitSummary, applicableSpecs, splitByStudy } from '../../src/cli/fit-sources';
import { DEFAULT_SPECS } from '../../src/detectors';
import { readHeader } from '../../src/dicom';
import { LAB_DIR } from '../helpers/lab-fixtures';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-fit-from-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

beforeAll(() => {
  fs.cpSync(path.join(LAB_DIR, 'clean'), path.join(dir, 'clean'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'clean', 'thumbs.db'), 'not a DICOM file');
  fs.writeFileSync(path.join(dir, 'clean', 'manifest.csv'), 'file\n'); // never DICOM: left out of folder walks
});

const studyOf = (file: string) => readHeader(fs.readFileSync(file))!.studyInstanceUid!;

describe('splitByStudy', () => {
  test('no study straddles train and calibration; calibration holds about the fraction; non-DICOM files are skipped with a reason', async () => {
    const split = await splitByStudy(path.join(dir, 'clean'), 0.3, 7);
    const all = split.train.length + split.calibration.length;
    expect(all).toBe(44);
    expect(split.files).toBe(45); // manifest.csv is not walked, thumbs.db is
    expect(split.skipped).toEqual([{ file: expect.stringMatching(/thumbs\.db$/), reason: 'not a DICOM Part-10 file' }]);
    const trainStudies = new Set(split.train.map((i) => studyOf(i.absPath)));
    const calStudies = new Set(split.calibration.map((i) => studyOf(i.absPath)));
    expect([...calStudies].filter((s) => trainStudies.has(s))).toEqual([]);
    expect(split.studies).toEqual({ train: trainStudies.size, calibration: calStudies.size });
    // studies are added until calibration reaches 30 % of the instances: it overshoots by less than one study
    const sizes = new Map<string, number>();
    for (const i of [...split.train, ...split.calibration]) sizes.set(i.meta.study, (sizes.get(i.meta.study) ?? 0) + 1);
    expect(split.calibration.length).toBeGreaterThanOrEqual(0.3 * all);
    expect(split.calibration.length).toBeLessThan(0.3 * all + Math.max(...sizes.values()));
    // study keys are hashes, never the UIDs
    for (const i of [...split.train, ...split.calibration]) expect(i.meta.study).toMatch(/^[0-9a-f]{16}$/);
  });

  test('seeded: the same seed gives the same split, another seed another one', async () => {
    const names = async (seed: number) => (await splitByStudy(path.join(dir, 'clean'), 0.3, seed)).calibration.map((i) => i.meta.file).sort();
    expect(await names(7)).toEqual(await names(7));
    expect(await names(8)).not.toEqual(await names(7));
  });

  test('a fraction outside (0, 1) and a folder of one study are USAGE errors', async () => {
    await expect(splitByStudy(path.join(dir, 'clean'), 1, 1)).rejects.toMatchObject({ code: 'USAGE', message: expect.stringMatching(/--calibration-fraction/) });
    const one = path.join(dir, 'one');
    fs.mkdirSync(one);
    fs.copyFileSync(path.join(LAB_DIR, 'clean', 'clean_test', 'study0004', 'IM06.dcm'), path.join(one, 'a.dcm'));
    await expect(splitByStudy(one, 0.3, 1)).rejects.toMatchObject({ code: 'USAGE', message: expect.stringMatching(/1 study/) });
  });
});

describe('applicableSpecs', () => {
  test('default detectors whose layer the model lacks are left out and named; explicit ones are kept', () => {
    const layers = ['block1_relu_mean', 'block1_relu_std', 'penultimate'];
    const { specs, leftOut } = applicableSpecs(DEFAULT_SPECS, layers, false);
    // squeeze and margin read the logits and the views, which every model has
    expect(specs.map((s) => s.id)).toEqual(['kd', 'lid', 'mgm', 'uad', 'squeeze', 'margin']);
    expect(leftOut).toEqual([expect.stringMatching(/^nrd \(needs feature layer residual_stats/), expect.stringMatching(/^coherence \(needs feature layer stage1_mean, stage1_std, stage2_mean/)]);
    expect(applicableSpecs(DEFAULT_SPECS, layers, true).specs).toHaveLength(DEFAULT_SPECS.length);
    // without a penultimate output, KD and MGM go too
    expect(applicableSpecs(DEFAULT_SPECS, ['block1_relu_mean'], false).specs.map((s) => s.id)).toEqual(['lid', 'uad', 'squeeze', 'margin']);
  });
});

test('FitSummary counts skipped instances by reason and scanned ones by transfer syntax', () => {
  const s = new FitSummary();
  s.skip('not a DICOM Part-10 file');
  s.record('train', { status: 'scanned', transferSyntaxUid: '1.2.840.10008.1.2.1.99', timings: {} });
  s.record('train', { status: 'skipped', skipReason: 'no pixel data', timings: {} });
  s.record('calibration', { status: 'error', error: { code: 'DICOM_TRUNCATED', message: 'x' }, timings: {} });
  const text = s.lines({ source: 'clean/', detectors: ['uad'], leftOut: [], bundle: 'b', bundleBytes: 1000, modelSha256: 'ab'.repeat(32) }).join('\n');
  expect(text).toMatch(/skipped {6}3: 1 × not a DICOM Part-10 file, 1 × not an image \(no pixel data\), 1 × error DICOM_TRUNCATED/);
  expect(text).toMatch(/syntaxes {5}DeflatedExplicitVRLittleEndian 1/);
});

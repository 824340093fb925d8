/**
 * The shipped policy, end to end through the real pipeline with the embedded model and bundle (issue 12): blocking
 * rests on adversarial evidence. It blocks none of the clean fixtures, none of the benign corruptions at severity 1
 * (test/fixtures/lab-corruptions), none of the foreign-source CR/DX radiographs of ../shared/corpus/dicom, and at
 * least 90 % of the successful L∞ fixtures at ε ≥ 4/255. The domain signal may flag foreign images, never block.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { compose, type ScanPipeline } from '../../src/pipeline';
import { readManifest, truthy } from '../../src/eval/dataset';
import { foreignItems } from '../../src/cli/eval';
import { DEFAULT_POLICY } from '../../src/policy';
import { CORPUS_DIR } from '../helpers/corpus';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures');
const LAB = path.join(FIXTURES, 'lab', 'manifest.csv');
const CORRUPTIONS = path.join(FIXTURES, 'lab-corruptions', 'manifest.csv');
const LINF = new Set(['fgsm', 'bim', 'pgd_linf', 'mim', 'uap']);

interface Verdict { file: string; verdict: string; signals: string[] }

describe('the shipped policy on the committed fixtures and the foreign corpus radiographs', () => {
  let pipeline: ScanPipeline;
  const verdicts: Record<'clean' | 'adv4' | 'sev1' | 'sev23' | 'foreign', Verdict[]> = { clean: [], adv4: [], sev1: [], sev23: [], foreign: [] };

  const scanFile = async (file: string, label: string): Promise<Verdict> => {
    const { record, decision } = await pipeline.scan(fs.readFileSync(file), { file: label });
    expect(record.status).toBe('scanned');
    return { file: label, verdict: decision.verdict, signals: decision.reasons.map((r) => `${r.signal}:${r.code}`) };
  };

  beforeAll(async () => {
    ({ pipeline } = await compose({ workers: 1 }));
    for (const row of readManifest(LAB)) {
      const isAdv4 = row.kind === 'adversarial' && truthy(row.success) && LINF.has(row.attack) && Number(row.eps) >= 4;
      if (row.kind === 'clean') verdicts.clean.push(await scanFile(row.absPath, row.file));
      else if (isAdv4) verdicts.adv4.push(await scanFile(row.absPath, row.file));
    }
    for (const row of readManifest(CORRUPTIONS)) {
      verdicts[row.severity === '1' ? 'sev1' : 'sev23'].push(await scanFile(row.absPath, `${row.attack} s${row.severity} ${row.file}`));
    }
    for (const item of await foreignItems([CORPUS_DIR], ['CR', 'DX'])) verdicts.foreign.push(await scanFile(item.absPath, item.meta.file));
  }, 600000);

  afterAll(async () => {
    await pipeline?.close();
  });

  const blocked = (vs: Verdict[]) => vs.filter((v) => v.verdict === 'block');

  it('decides blocking by adversarial-signal detectors only, and the domain signal by domain detectors', () => {
    const detectors = pipeline.bundle!.detectors!;
    expect(DEFAULT_POLICY.adversarial.decideBy.length).toBeGreaterThan(0);
    for (const id of DEFAULT_POLICY.adversarial.decideBy) expect(detectors[id]?.signal).toBe('adversarial');
    for (const id of DEFAULT_POLICY.domain.decideBy) expect(detectors[id]?.signal).toBe('domain');
  });

  it('blocks none of the clean fixtures', () => {
    expect(verdicts.clean.length).toBeGreaterThanOrEqual(40);
    expect(blocked(verdicts.clean)).toEqual([]);
  });

  it('blocks none of the benign corruptions at severity 1', () => {
    expect(new Set(verdicts.sev1.map((v) => v.file.split(' ')[0])).size).toBe(10);
    expect(blocked(verdicts.sev1)).toEqual([]);
  });

  it('blocks none of the foreign-source CR/DX radiographs of the shared corpus', () => {
    expect(verdicts.foreign.length).toBeGreaterThanOrEqual(7);
    expect(blocked(verdicts.foreign)).toEqual([]);
  });

  it('blocks at least 90 % of the successful L∞ fixtures at ε ≥ 4/255, on adversarial evidence', () => {
    expect(verdicts.adv4.length).toBeGreaterThanOrEqual(10);
    const b = blocked(verdicts.adv4);
    expect(b.length / verdicts.adv4.length).toBeGreaterThanOrEqual(0.9);
    for (const v of b) expect(v.signals).toContain('adversarial:detected');
  });
});

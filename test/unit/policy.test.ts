import { DEFAULT_POLICY, applyStudyRule, combinePValues, decide, decideStudy, formatReason, isApplicable, unreachableThresholds, validatePolicy, worstVerdict, type InstanceOutcome, type Policy } from '../../src/policy';

const adversarial = (over: Partial<Policy['adversarial']> = {}): Policy['adversarial'] => ({ decideBy: ['uad'], combine: 'bonferroni', flagFpr: 0.05, blockFpr: 0.005, ...over });
const policy: Policy = { ...DEFAULT_POLICY, adversarial: adversarial(), domain: { decideBy: [], combine: 'bonferroni', flagFpr: 0.01 } };
const scanned = (p: number): InstanceOutcome => ({ kind: 'scanned', scores: { uad: { score: 1, pValue: p } } });

describe('decide', () => {
  it.each([
    ['clean p-value forwards', scanned(0.4), 'forward'],
    ['p at the flag rate flags', scanned(0.05), 'flag'],
    ['p between block and flag flags', scanned(0.01), 'flag'],
    ['p at the block rate blocks', scanned(0.005), 'block'],
    ['tiny p blocks', scanned(1e-6), 'block'],
    ['out-of-scope instances forward unscanned', { kind: 'out_of_scope' } as InstanceOutcome, 'forward'],
    ['non-image instances forward', { kind: 'skipped' } as InstanceOutcome, 'forward'],
    ['decode errors fail closed by default', { kind: 'error', errorClass: 'decode', code: 'DICOM_TRUNCATED' } as InstanceOutcome, 'block'],
    ['model timeouts fail closed by default', { kind: 'error', errorClass: 'timeout', code: 'MODEL_TIMEOUT' } as InstanceOutcome, 'block'],
    ['a missing decision detector fails closed', { kind: 'scanned', scores: { kd: { score: 1, pValue: 0.5 } } } as InstanceOutcome, 'block'],
  ])('%s', (_name, outcome, expected) => {
    expect(decide(outcome, policy).verdict).toBe(expected);
  });

  it('follows a configured fail-open error policy', () => {
    const open: Policy = { ...policy, onError: { decode: 'forward', model: 'flag', timeout: 'forward' } };
    expect(decide({ kind: 'error', errorClass: 'decode', code: 'NOT_DICOM' }, open).verdict).toBe('forward');
    expect(decide({ kind: 'error', errorClass: 'model', code: 'MODEL_INFERENCE_FAILED' }, open).verdict).toBe('flag');
  });

  it('combines several decision detectors with Bonferroni', () => {
    const two: Policy = { ...policy, adversarial: adversarial({ decideBy: ['uad', 'mgm'] }) };
    const outcome: InstanceOutcome = { kind: 'scanned', scores: { uad: { score: 0, pValue: 0.03 }, mgm: { score: 0, pValue: 0.5 } } };
    expect(decide(outcome, two).verdict).toBe('forward'); // 0.03 × 2 = 0.06 > 0.05
    expect(combinePValues([0.03, 0.5])).toBeCloseTo(0.06);
  });

  it('names the detector and p-value in its reason', () => {
    expect(formatReason(decide(scanned(0.001), policy).reasons[0])).toMatch(/^uad:p=0\.0010<=0\.005$/);
  });
});

describe('study rule', () => {
  it('withholds only blocked instances under the instance rule', () => {
    expect(applyStudyRule(['forward', 'block', 'flag'], 'instance')).toEqual(['forward', 'block', 'flag']);
  });
  it('withholds the whole study under the study rule', () => {
    expect(applyStudyRule(['forward', 'block', 'flag'], 'study')).toEqual(['block', 'block', 'block']);
    expect(applyStudyRule(['forward', 'flag'], 'study')).toEqual(['forward', 'flag']);
  });
  it('reports the worst verdict', () => {
    expect(worstVerdict(['forward', 'flag'])).toBe('flag');
    expect(worstVerdict([])).toBe('forward');
  });
});

describe('applicability', () => {
  const chest = { sopClassUid: '1.2.840.10008.5.1.4.1.1.1.1', modality: 'DX', bodyPartExamined: 'CHEST', photometricInterpretation: 'MONOCHROME2' };
  it('matches when every selector is empty', () => {
    expect(isApplicable({}, {})).toBe(true);
  });
  it('matches modality and body part case-insensitively', () => {
    expect(isApplicable(chest, { modalities: ['dx', 'CR'], bodyParts: ['chest'] })).toBe(true);
  });
  it('rejects an instance outside a non-empty selector', () => {
    expect(isApplicable({ ...chest, modality: 'CT' }, { modalities: ['DX', 'CR'] })).toBe(false);
    expect(isApplicable({ ...chest, photometricInterpretation: 'RGB' }, DEFAULT_POLICY.applicability)).toBe(false);
  });
  it('rejects an instance missing a selected attribute', () => {
    expect(isApplicable({ modality: 'DX' }, { bodyParts: ['CHEST'] })).toBe(false);
  });
});

describe('unreachableThresholds', () => {
  // UAD calibrated marginally (391 scores), KD by class (215 "normal", 567 "pneumonia")
  const floors = { normal: { uad: 1 / 392, kd: 1 / 216 }, pneumonia: { uad: 1 / 392, kd: 1 / 568 } };
  it('says nothing when the deciding detector can reach both thresholds', () => {
    expect(unreachableThresholds({ ...policy, adversarial: adversarial() }, floors)).toEqual([]);
  });
  it('names a block threshold below the smallest p-value the calibration set allows', () => {
    const problems = unreachableThresholds({ ...policy, adversarial: adversarial({ blockFpr: 0.001 }) }, floors);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^policy\.adversarial\.blockFpr 0\.001 is below 0\.0026.* uad can give any instance .*no instance can ever be blocked/);
  });
  it('names the predicted classes a class-calibrated detector cannot reach', () => {
    const problems = unreachableThresholds({ ...policy, adversarial: adversarial({ decideBy: ['kd'], blockFpr: 0.003 }) }, floors);
    expect(problems).toEqual([expect.stringMatching(/below 0\.0046.*instances predicted "normal".*those can never be blocked/)]);
  });
  it('accounts for Bonferroni: two detectors double the floor', () => {
    // per class 2 × min(floors): normal 2/392 = 0.0051 > 0.005, pneumonia 2/568 = 0.0035 ≤ 0.005
    expect(unreachableThresholds({ ...policy, adversarial: adversarial({ decideBy: ['uad', 'kd'] }) }, floors)).toEqual([expect.stringMatching(/blockFpr 0\.005 .*uad\+kd.*"normal"/)]);
  });
  it('flags an unreachable flag threshold too, and ignores detectors the bundle lacks', () => {
    expect(unreachableThresholds({ ...policy, adversarial: adversarial({ blockFpr: 0.0001, flagFpr: 0.0002 }) }, floors)).toHaveLength(2);
    expect(unreachableThresholds({ ...policy, adversarial: adversarial({ decideBy: ['lid'], blockFpr: 0.0001 }) }, floors)).toEqual([]);
  });
});

describe('validatePolicy', () => {
  it('accepts the default', () => expect(validatePolicy(DEFAULT_POLICY)).toEqual([]));
  it('names the bad key', () => {
    expect(validatePolicy({ ...policy, adversarial: adversarial({ blockFpr: 0.1 }) })).toContain('policy.adversarial.blockFpr must not exceed policy.adversarial.flagFpr');
    expect(validatePolicy({ ...policy, adversarial: adversarial({ flagFpr: 2 }) })[0]).toMatch(/policy\.adversarial\.flagFpr/);
  });
});

describe('two signals: adversarial evidence blocks, unfamiliarity only flags', () => {
  const two: Policy = { ...policy, adversarial: adversarial({ decideBy: ['squeeze'] }), domain: { decideBy: ['uad'], combine: 'bonferroni', flagFpr: 0.01 } };
  const scores = (adv: number, dom: number): InstanceOutcome => ({ kind: 'scanned', scores: { squeeze: { score: 0, pValue: adv }, uad: { score: 0, pValue: dom } } });

  it('never blocks on the domain signal alone, however small its p-value: it flags with its own reason', () => {
    const d = decide(scores(0.5, 1e-6), two);
    expect(d.verdict).toBe('flag');
    expect(d.reasons).toEqual([expect.objectContaining({ signal: 'domain', code: 'out_of_domain', detector: 'uad', threshold: 0.01 })]);
    expect(d.pValues).toEqual({ adversarial: 0.5, domain: 1e-6 });
  });
  it('blocks on the adversarial signal and says both when both fire', () => {
    const d = decide(scores(0.001, 0.001), two);
    expect(d.verdict).toBe('block');
    expect(d.reasons.map((r) => r.signal)).toEqual(['adversarial', 'domain']);
  });
  it('forwards when neither fires', () => {
    expect(decide(scores(0.3, 0.3), two)).toMatchObject({ verdict: 'forward', reasons: [] });
  });
  it('combines by twice the mean p-value when asked (valid under any dependence)', () => {
    expect(combinePValues([0.01, 0.03], 'twice-mean')).toBeCloseTo(0.04, 12);
    expect(combinePValues([0.9, 0.8], 'twice-mean')).toBe(1);
    const mean: Policy = { ...two, adversarial: adversarial({ decideBy: ['squeeze', 'uad'], combine: 'twice-mean' }) };
    expect(decide(scores(0.001, 0.002), mean).verdict).toBe('block'); // 2 × 0.0015 = 0.003
  });
});

describe('observe mode', () => {
  const observe: Policy = { ...policy, mode: 'observe' };
  it('forwards what enforce mode would block or flag, and records what would have happened', () => {
    expect(decide(scanned(0.001), observe)).toMatchObject({ verdict: 'forward', wouldBe: 'block', reasons: [expect.objectContaining({ signal: 'adversarial' })] });
    expect(decide(scanned(0.01), observe)).toMatchObject({ verdict: 'forward', wouldBe: 'flag' });
    expect(decide({ kind: 'error', code: 'DICOM_TRUNCATED' }, observe)).toMatchObject({ verdict: 'forward', wouldBe: 'block' });
    expect(decide(scanned(0.4), observe).wouldBe).toBeUndefined();
  });
  it('still refuses request parts that are not instances', () => {
    expect(decide({ kind: 'rejected', rejection: 'not_part10' }, observe).verdict).toBe('block');
  });
  it('applies the study rule to what would have happened', () => {
    const ds = [decide(scanned(0.4), observe), decide(scanned(0.001), observe)];
    const ruled = decideStudy(ds, 'study');
    expect(ruled.map((d) => d.verdict)).toEqual(['forward', 'forward']);
    expect(ruled.map((d) => d.wouldBe)).toEqual(['block', 'block']);
  });
});

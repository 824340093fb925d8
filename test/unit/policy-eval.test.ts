import { evaluatePolicy, renderPolicyMarkdown } from '../../src/eval';
import { PolicySchema } from '../../src/policy';

/** Rows of a scored set: meta and each detector's p-values. */
function scored(rows: Array<{ meta: Record<string, string>; sq: number; kd: number }>) {
  return {
    meta: rows.map((r) => r.meta),
    pValues: { sq: Float64Array.from(rows.map((r) => r.sq)), kd: Float64Array.from(rows.map((r) => r.kd)) },
  };
}

const policy = PolicySchema.parse({
  adversarial: { decideBy: ['sq'], flagFpr: 0.05, blockFpr: 0.005 },
  domain: { decideBy: ['kd'], flagFpr: 0.01 },
});

describe('evaluatePolicy: the shipped policy measured per group through decide()', () => {
  const set = scored([
    { meta: { kind: 'clean', split: 'test' }, sq: 0.5, kd: 0.3 },
    { meta: { kind: 'clean', split: 'test' }, sq: 0.04, kd: 0.9 },
    { meta: { kind: 'clean', split: 'calibration' }, sq: 0.001, kd: 0.001 },
    { meta: { kind: 'adversarial', attack: 'pgd', eps: '4', norm: 'Linf', success: '1' }, sq: 0.001, kd: 0.5 },
    { meta: { kind: 'adversarial', attack: 'pgd', eps: '4', norm: 'Linf', success: '1' }, sq: 0.02, kd: 0.5 },
    { meta: { kind: 'adversarial', attack: 'pgd', eps: '4', norm: 'Linf', success: '0' }, sq: 0.9, kd: 0.5 },
    { meta: { kind: 'benign', attack: 'jpeg', severity: '1' }, sq: 0.3, kd: 0.0001 },
    { meta: { kind: 'benign', attack: 'jpeg', severity: '3' }, sq: 0.003, kd: 0.2 },
    { meta: { kind: 'foreign', file: 'cr1.dcm' }, sq: 0.6, kd: 0.0001 },
  ]);
  const pe = evaluatePolicy(set, policy, 'test', 'split');
  const row = (kind: string, group: string, extra: Record<string, string> = {}) =>
    pe.rows.find((r) => r.kind === kind && r.group === group && Object.entries(extra).every(([k, v]) => (r as unknown as Record<string, string>)[k] === v))!;

  it('counts only the clean rows of the test split and only successful attacks', () => {
    expect(row('clean', 'clean').n).toBe(2);
    expect(row('adversarial', 'pgd').n).toBe(2);
  });

  it('blocks on the adversarial signal only; the domain signal flags and never blocks', () => {
    expect(row('adversarial', 'pgd')).toMatchObject({ blocked: 0.5, flagged_adversarial: 1, adv_p_le_1: 0.5, adv_p_le_5: 1, auroc: 1 });
    expect(row('benign', 'jpeg', { severity: '1' })).toMatchObject({ blocked: 0, flagged_adversarial: 0, flagged_domain: 1 });
    expect(row('benign', 'jpeg', { severity: '3' })).toMatchObject({ blocked: 1, flagged_domain: 0 });
    expect(pe.foreign).toEqual([{ file: 'cr1.dcm', verdict: 'flag', adversarialP: 0.6, domainP: 0.0001 }]);
  });

  it('is judged in enforce mode even when the policy observes', () => {
    const observed = evaluatePolicy(set, { ...policy, mode: 'observe' }, 'test', 'split');
    expect(observed.rows.find((r) => r.kind === 'adversarial')!.blocked).toBe(0.5);
  });

  it('renders a Markdown table with a row per group and the foreign files', () => {
    const md = renderPolicyMarkdown(pe).join('\n');
    expect(md).toContain('Adversarial signal (may block): sq');
    expect(md).toContain('| benign: jpeg | severity 1 | 1 |');
    expect(md).toContain('| cr1.dcm | flag |');
  });
});

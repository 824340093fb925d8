import { decide, type Policy } from '../policy';
import type { DetectorScore } from '../core/types';
import { auroc, eps255, rateAtOrBelow } from './evaluation';
import { truthy } from './dataset';

/**
 * The shipped policy, measured as a whole: each row of a scored set goes through the real `decide()` (in enforce
 * mode) with its detectors' p-values, and the report counts verdicts per group — the clean negatives, each attack × ε
 * (successful examples only), each benign corruption × severity, the foreign radiographs. AUROC and TPR at 1 % / 5 %
 * use the adversarial signal's combined p-value (smaller = more adversarial), so they are threshold-free / set on the
 * calibration split like the per-detector rows.
 */

export interface PolicyGroupRow {
  kind: 'clean' | 'adversarial' | 'benign' | 'foreign';
  /** Attack or corruption name; `clean`; `foreign`. */
  group: string;
  eps: string;
  norm: string;
  severity: string;
  n: number;
  /** Adversarial signal: share with combined p ≤ 1 % and ≤ 5 % (operating points from the calibration split). */
  adv_p_le_1: number;
  adv_p_le_5: number;
  /** Verdicts of the policy: blocked, flagged for adversarial evidence (flag or block), flagged for the domain signal. */
  blocked: number;
  flagged_adversarial: number;
  flagged_domain: number;
  /** Against the clean negatives, on the combined adversarial p-value (attack rows only). */
  auroc?: number;
}

export interface PolicyEvaluation {
  adversarial: { decideBy: string[]; combine: string; flagFpr: number; blockFpr: number };
  domain: { decideBy: string[]; combine: string; flagFpr: number };
  rows: PolicyGroupRow[];
  /** Per foreign file: its verdict and the two signals' combined p-values. */
  foreign: { file: string; verdict: string; adversarialP: number; domainP?: number }[];
}

export interface ScoredRows {
  meta: Record<string, string>[];
  pValues: Record<string, Float64Array>;
}

interface RowDecision { verdict: string; adv: number; dom?: number; advFlag: boolean; domFlag: boolean }

function decideRow(set: ScoredRows, i: number, policy: Policy): RowDecision {
  const scores: Record<string, DetectorScore> = {};
  for (const [id, p] of Object.entries(set.pValues)) scores[id] = { score: NaN, pValue: p[i] };
  const d = decide({ kind: 'scanned', scores }, { ...policy, mode: 'enforce' });
  return {
    verdict: d.verdict,
    adv: d.pValues?.adversarial ?? 1,
    dom: d.pValues?.domain,
    advFlag: d.reasons.some((r) => r.signal === 'adversarial'),
    domFlag: d.reasons.some((r) => r.signal === 'domain'),
  };
}

const share = (xs: boolean[]) => (xs.length ? xs.filter(Boolean).length / xs.length : NaN);

/** Verdict rates of `policy` per group of the scored rows. Clean rows are those of `cleanSplit`; foreign rows have kind `foreign`. */
export function evaluatePolicy(set: ScoredRows, policy: Policy, cleanSplit: string, splitColumn: string): PolicyEvaluation {
  const decisions = set.meta.map((_, i) => decideRow(set, i, policy));
  const groups = new Map<string, { row: Omit<PolicyGroupRow, 'n' | 'adv_p_le_1' | 'adv_p_le_5' | 'blocked' | 'flagged_adversarial' | 'flagged_domain'>; ix: number[] }>();
  const add = (key: string, row: Omit<PolicyGroupRow, 'n' | 'adv_p_le_1' | 'adv_p_le_5' | 'blocked' | 'flagged_adversarial' | 'flagged_domain'>, i: number) => {
    if (!groups.has(key)) groups.set(key, { row, ix: [] });
    groups.get(key)!.ix.push(i);
  };
  set.meta.forEach((m, i) => {
    const kind = m.kind || 'clean';
    if (kind === 'clean' && m[splitColumn] === cleanSplit) add('clean', { kind: 'clean', group: 'clean', eps: '', norm: '', severity: '' }, i);
    else if (kind === 'adversarial' && truthy(m.success)) add(`a|${m.attack}|${m.eps}`, { kind: 'adversarial', group: m.attack, eps: m.eps ?? '', norm: m.norm ?? '', severity: '' }, i);
    else if (kind === 'benign') add(`b|${m.attack}|${m.severity ?? ''}`, { kind: 'benign', group: m.attack || 'benign', eps: '', norm: '', severity: m.severity ?? '' }, i);
    else if (kind === 'foreign') add('foreign', { kind: 'foreign', group: 'foreign', eps: '', norm: '', severity: '' }, i);
  });
  const cleanIx = groups.get('clean')?.ix ?? [];
  // smaller p = more adversarial; the score for AUROC is −log p
  const advScore = (i: number) => -Math.log(Math.max(decisions[i].adv, 1e-300));
  const rows: PolicyGroupRow[] = [...groups.values()].map(({ row, ix }) => {
    const p = ix.map((i) => decisions[i].adv);
    const out: PolicyGroupRow = {
      ...row, n: ix.length,
      adv_p_le_1: rateAtOrBelow(p, 0.01), adv_p_le_5: rateAtOrBelow(p, 0.05),
      blocked: share(ix.map((i) => decisions[i].verdict === 'block')),
      flagged_adversarial: share(ix.map((i) => decisions[i].advFlag)),
      flagged_domain: share(ix.map((i) => decisions[i].domFlag)),
    };
    if (row.kind === 'adversarial' && cleanIx.length && ix.length) out.auroc = auroc(cleanIx.map(advScore), ix.map(advScore));
    return out;
  });
  const order = { clean: 0, foreign: 1, benign: 2, adversarial: 3 };
  const epsOrder = (r: PolicyGroupRow) => (r.norm.toLowerCase() === 'l2' ? Number(r.eps) || 0 : eps255(r.eps) ?? 0);
  rows.sort((a, b) => order[a.kind] - order[b.kind] || a.group.localeCompare(b.group) || epsOrder(a) - epsOrder(b) || a.severity.localeCompare(b.severity));
  const foreign = set.meta.flatMap((m, i) => (m.kind === 'foreign'
    ? [{ file: m.file, verdict: decisions[i].verdict, adversarialP: decisions[i].adv, ...(decisions[i].dom !== undefined ? { domainP: decisions[i].dom } : {}) }] : []));
  const a = policy.adversarial;
  const d = policy.domain;
  return {
    adversarial: { decideBy: a.decideBy, combine: a.combine, flagFpr: a.flagFpr, blockFpr: a.blockFpr },
    domain: { decideBy: d.decideBy, combine: d.combine, flagFpr: d.flagFpr },
    rows, foreign,
  };
}

const pct = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : `${(100 * x).toFixed(1)} %`);

/** The policy section of report.md. */
export function renderPolicyMarkdown(pe: PolicyEvaluation): string[] {
  const a = pe.adversarial;
  const L: string[] = [];
  L.push('## The policy as shipped (every row through decide())', '');
  L.push(`Adversarial signal (may block): ${a.decideBy.join(' + ') || '(none)'}, combined by ${a.combine}; flag at p ≤ ${a.flagFpr}, block at p ≤ ${a.blockFpr}. ` +
    `Domain signal (flags only): ${pe.domain.decideBy.join(' + ') || '(none)'}, ${pe.domain.combine}, flag at p ≤ ${pe.domain.flagFpr}.`, '');
  L.push('| rows | ε / severity | n | AUROC | adv. p ≤ 1 % | adv. p ≤ 5 % | flagged (adversarial) | blocked | flagged (domain) |', '|---|---|---|---|---|---|---|---|---|');
  for (const r of pe.rows) {
    const name = r.kind === 'benign' ? `benign: ${r.group}` : r.kind === 'adversarial' ? r.group : r.group;
    const level = r.kind === 'benign' ? (r.severity ? `severity ${r.severity}` : '') : r.eps;
    L.push(`| ${name} | ${level} | ${r.n} | ${r.auroc === undefined ? '–' : r.auroc.toFixed(3)} | ${pct(r.adv_p_le_1)} | ${pct(r.adv_p_le_5)} | ${pct(r.flagged_adversarial)} | ${pct(r.blocked)} | ${pct(r.flagged_domain)} |`);
  }
  if (pe.foreign.length) {
    L.push('', '### Foreign-source radiographs', '', '| file | verdict | adversarial p | domain p |', '|---|---|---|---|');
    for (const f of pe.foreign) L.push(`| ${f.file} | ${f.verdict} | ${f.adversarialP.toPrecision(3)} | ${f.domainP === undefined ? '–' : f.domainP.toPrecision(3)} |`);
  }
  L.push('');
  return L;
}

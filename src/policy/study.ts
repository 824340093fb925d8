import type { Decision, Verdict } from '../core/types';
import { makeDecision } from './decide';
import type { Policy } from './schema';

const SEVERITY: Record<Verdict, number> = { forward: 0, flag: 1, block: 2 };

/** The study rule on verdicts: with 'study', one blocked instance blocks every instance of its study. */
export function applyStudyRule(verdicts: Verdict[], rule: Policy['studyRule']): Verdict[] {
  if (rule === 'instance' || !verdicts.includes('block')) return verdicts.slice();
  return verdicts.map(() => 'block');
}

/**
 * The study rule on the decisions of one study's instances (same order): an instance the rule withholds gets a new
 * Decision, its reasons plus `study_rule`; the others are returned as they were.
 */
export function decideStudy(decisions: readonly Decision[], rule: Policy['studyRule']): Decision[] {
  const ruled = applyStudyRule(decisions.map((d) => d.verdict), rule);
  // in observe mode the rule applies to what would have happened
  const would = applyStudyRule(decisions.map((d) => d.wouldBe ?? d.verdict), rule);
  return decisions.map((d, i) => {
    const wouldChange = (d.wouldBe ?? d.verdict) !== would[i];
    if (ruled[i] === d.verdict && !wouldChange) return d;
    const extra = { pValue: d.pValue, pValues: d.pValues, ...(d.wouldBe !== undefined || wouldChange ? { wouldBe: would[i] } : {}) };
    return makeDecision(ruled[i], [...d.reasons, { signal: 'study', code: 'study_rule' }], extra);
  });
}

export function worstVerdict(verdicts: Verdict[]): Verdict {
  return verdicts.reduce<Verdict>((worst, v) => (SEVERITY[v] > SEVERITY[worst] ? v : worst), 'forward');
}

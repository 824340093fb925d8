import type { DetectorScore, Verdict } from '../core/types';

/**
 * decide: detector p-values + applicability + error policy → forward | flag | block.
 * Pure functions only: the proxy and `warden scan` both call these, neither re-implements them.
 */

export interface ApplicabilitySelectors {
  /** Empty or absent list = any value. Modality, body part and photometric compare case-insensitively. */
  sopClassUids?: string[];
  modalities?: string[];
  bodyParts?: string[];
  photometric?: string[];
}

export type ErrorClass = 'decode' | 'model' | 'timeout';

export interface Policy {
  applicability: ApplicabilitySelectors;
  /** Flag when the combined p-value is at or below this clean false-positive rate. */
  flagFpr: number;
  /** Block when the combined p-value is at or below this clean false-positive rate (≤ flagFpr). */
  blockFpr: number;
  /** Detectors whose p-values decide; more than one are combined with Bonferroni so the FPR stays valid. */
  decideBy: string[];
  /** 'instance': only blocked instances are withheld; 'study': one blocked instance withholds its study. */
  studyRule: 'instance' | 'study';
  /** What to do when an instance cannot be scanned. Fail closed (block) by default. */
  onError: Record<ErrorClass, Verdict>;
}

export const DEFAULT_POLICY: Policy = {
  applicability: { modalities: [], sopClassUids: [], bodyParts: [], photometric: ['MONOCHROME1', 'MONOCHROME2'] },
  flagFpr: 0.05,
  blockFpr: 0.005,
  decideBy: ['uad'],
  studyRule: 'instance',
  onError: { decode: 'block', model: 'block', timeout: 'block' },
};

export interface InstanceAttributes {
  sopClassUid?: string;
  modality?: string;
  bodyPartExamined?: string;
  photometricInterpretation?: string;
}

export function isApplicable(attrs: InstanceAttributes, selectors: ApplicabilitySelectors): boolean {
  const matches = (list: string[] | undefined, value: string | undefined, caseInsensitive: boolean): boolean => {
    if (!list || list.length === 0) return true;
    if (value === undefined) return false;
    const v = caseInsensitive ? value.trim().toUpperCase() : value.trim();
    return list.some((entry) => (caseInsensitive ? entry.trim().toUpperCase() : entry.trim()) === v);
  };
  return (
    matches(selectors.sopClassUids, attrs.sopClassUid, false) &&
    matches(selectors.modalities, attrs.modality, true) &&
    matches(selectors.bodyParts, attrs.bodyPartExamined, true) &&
    matches(selectors.photometric, attrs.photometricInterpretation, true)
  );
}

export type InstanceOutcome =
  | { kind: 'scanned'; scores: Record<string, DetectorScore> }
  | { kind: 'out_of_scope' }
  | { kind: 'skipped' }
  | { kind: 'error'; errorClass: ErrorClass; code: string };

export interface Decision {
  verdict: Verdict;
  /** Machine-readable reasons, e.g. `uad:p=0.0012<=0.005`, `out_of_scope`, `error:DICOM_TRUNCATED`. */
  reasons: string[];
  /** The combined p-value the verdict rests on, when scanned. */
  pValue?: number;
}

/**
 * The policy's thresholds that the deciding detectors cannot reach. With n calibration scores a conformal p-value
 * is at least 1 / (n + 1), and Bonferroni multiplies the smallest by the number of detectors, so the combined
 * p-value of an instance never goes below k · min floor. `floors` maps each predicted class (label) to the floor of
 * every detector for instances of that class (class-calibrated detectors differ by class). Returns one sentence
 * per unreachable threshold (empty when both can be reached for every class).
 */
export function unreachableThresholds(policy: Policy, floors: Record<string, Record<string, number>>): string[] {
  const classes = Object.keys(floors);
  const problems: string[] = [];
  for (const key of ['blockFpr', 'flagFpr'] as const) {
    const hit: { label: string; floor: number; used: string[] }[] = [];
    for (const label of classes) {
      const used = policy.decideBy.filter((name) => floors[label][name] !== undefined);
      if (used.length === 0) continue;
      const floor = combinePValues(used.map((name) => floors[label][name]));
      if (policy[key] < floor) hit.push({ label, floor, used });
    }
    if (hit.length === 0) continue;
    const who = hit.length === classes.length ? 'any instance' : `instances predicted ${hit.map((h) => `"${h.label}"`).join(', ')}`;
    const floor = Math.min(...hit.map((h) => h.floor));
    problems.push(`policy.${key} ${policy[key]} is below ${fmt(floor)}, the smallest p-value that ${hit[0].used.join('+')} can give ${who} `
      + `with this bundle's calibration set: ${hit.length === classes.length ? 'no instance can ever' : 'those can never'} be `
      + `${key === 'blockFpr' ? 'blocked' : 'flagged'} by the detectors. Raise it, or refit the bundle with a larger calibration split.`);
  }
  return problems;
}

/** Bonferroni: valid whatever the dependence between detectors. */
export function combinePValues(pValues: number[]): number {
  if (pValues.length === 0) return 1;
  return Math.min(1, Math.min(...pValues) * pValues.length);
}

export function decide(outcome: InstanceOutcome, policy: Policy): Decision {
  switch (outcome.kind) {
    case 'out_of_scope':
      return { verdict: 'forward', reasons: ['out_of_scope'] };
    case 'skipped':
      return { verdict: 'forward', reasons: ['not_an_image'] };
    case 'error':
      return { verdict: policy.onError[outcome.errorClass], reasons: [`error:${outcome.code}`] };
    case 'scanned': {
      const used = policy.decideBy.filter((name) => outcome.scores[name] !== undefined);
      if (used.length === 0) {
        return { verdict: policy.onError.model, reasons: [`error:NO_DECISION_DETECTOR(${policy.decideBy.join(',')})`] };
      }
      const p = combinePValues(used.map((name) => outcome.scores[name].pValue));
      const label = used.join('+');
      if (p <= policy.blockFpr) return { verdict: 'block', reasons: [`${label}:p=${fmt(p)}<=${policy.blockFpr}`], pValue: p };
      if (p <= policy.flagFpr) return { verdict: 'flag', reasons: [`${label}:p=${fmt(p)}<=${policy.flagFpr}`], pValue: p };
      return { verdict: 'forward', reasons: [], pValue: p };
    }
  }
}

const SEVERITY: Record<Verdict, number> = { forward: 0, flag: 1, block: 2 };

/** Applies the study rule: with 'study', one blocked instance blocks every instance of its study. */
export function applyStudyRule(verdicts: Verdict[], rule: Policy['studyRule']): Verdict[] {
  if (rule === 'instance' || !verdicts.includes('block')) return verdicts.slice();
  return verdicts.map(() => 'block');
}

export function worstVerdict(verdicts: Verdict[]): Verdict {
  return verdicts.reduce<Verdict>((worst, v) => (SEVERITY[v] > SEVERITY[worst] ? v : worst), 'forward');
}

export function validatePolicy(policy: Policy): string[] {
  const problems: string[] = [];
  const inUnit = (x: number) => Number.isFinite(x) && x > 0 && x < 1;
  if (!inUnit(policy.flagFpr)) problems.push('policy.flagFpr must be a number in (0, 1)');
  if (!inUnit(policy.blockFpr)) problems.push('policy.blockFpr must be a number in (0, 1)');
  if (policy.blockFpr > policy.flagFpr) problems.push('policy.blockFpr must not exceed policy.flagFpr');
  if (policy.decideBy.length === 0) problems.push('policy.decideBy must name at least one detector');
  return problems;
}

function fmt(p: number): string {
  return p < 0.001 ? p.toExponential(2) : p.toFixed(4);
}

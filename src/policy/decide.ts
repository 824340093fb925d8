import type { Decision, DetectorScore, Reason, Verdict } from '../core/types';
import { ERROR_CATALOGUE, isErrorCode, type ErrorCode } from '../core/errors';
import type { ErrorClass, Policy } from './schema';

/**
 * decide: what happened to an instance (scanned with scores, out of scope, not an image, failed, refused as a part)
 * → an immutable Decision with structured reasons. The only place a verdict is made; the pipeline, the proxy and
 * the CLI hand an InstanceOutcome in and carry the Decision out.
 */

/** Why a request part cannot be an instance at all (the proxy saw it before any decode). */
export type PartRejection = 'not_part10' | 'part_content_type' | 'too_large' | 'study_mismatch' | 'duplicate_instance';

export type InstanceOutcome =
  /** `byPixels`: scanned although its tags put it out of scope, because its pixels fit the model. */
  | { kind: 'scanned'; scores: Record<string, DetectorScore>; byPixels?: boolean }
  /** Scanned without a detector bundle: a prediction, nothing to judge. */
  | { kind: 'unjudged'; byPixels?: boolean }
  /** `action`: the policy's out-of-scope action for this instance (outOfScopeAction); default forward. */
  | { kind: 'out_of_scope'; action?: Verdict }
  | { kind: 'skipped' }
  /** `errorClass` defaults to the class of `code` in the error catalogue. */
  | { kind: 'error'; code: string; errorClass?: ErrorClass }
  | { kind: 'rejected'; rejection: PartRejection; detail?: string };

/** Which onError rule an error code falls under: input errors are `decode`, MODEL_TIMEOUT is `timeout`, the rest `model`. */
export function errorClassOf(code: string): ErrorClass {
  if (code === 'MODEL_TIMEOUT') return 'timeout';
  const entry = isErrorCode(code) ? ERROR_CATALOGUE[code as ErrorCode] : undefined;
  return entry && entry.kind === 'input' ? 'decode' : 'model';
}

/** Bonferroni: valid whatever the dependence between detectors. */
export function combinePValues(pValues: number[]): number {
  if (pValues.length === 0) return 1;
  return Math.min(1, Math.min(...pValues) * pValues.length);
}

/** The reason an instance scanned by its pixels carries (its tags put it out of scope). */
function byPixels(outcome: { byPixels?: boolean }): Reason[] {
  return outcome.byPixels ? [{ signal: 'scope', code: 'tags_out_of_scope' }] : [];
}

/** Builds a Decision that cannot be changed afterwards (reasons included). */
export function makeDecision(verdict: Verdict, reasons: Reason[], pValue?: number): Decision {
  const frozen = Object.freeze(reasons.map((r) => Object.freeze({ ...r })));
  return Object.freeze(pValue === undefined ? { verdict, reasons: frozen } : { verdict, reasons: frozen, pValue });
}

export function decide(outcome: InstanceOutcome, policy: Policy): Decision {
  switch (outcome.kind) {
    case 'out_of_scope':
      return makeDecision(outcome.action ?? 'forward', [{ signal: 'scope', code: 'out_of_scope' }]);
    case 'skipped':
      return makeDecision('forward', [{ signal: 'scope', code: 'not_an_image' }]);
    case 'unjudged':
      return makeDecision('forward', [{ signal: 'scope', code: 'no_detectors' }, ...byPixels(outcome)]);
    case 'rejected':
      return makeDecision('block', [{ signal: 'input', code: outcome.rejection, ...(outcome.detail ? { detail: outcome.detail } : {}) }]);
    case 'error':
      return makeDecision(policy.onError[outcome.errorClass ?? errorClassOf(outcome.code)], [{ signal: 'error', code: outcome.code }]);
    case 'scanned': {
      const scope = byPixels(outcome);
      const used = policy.decideBy.filter((name) => outcome.scores[name] !== undefined);
      if (used.length === 0) {
        return makeDecision(policy.onError.model, [{ signal: 'error', code: 'no_decision_detector', detector: policy.decideBy.join('+') }, ...scope]);
      }
      const p = combinePValues(used.map((name) => outcome.scores[name].pValue));
      const detector = used.join('+');
      if (p <= policy.blockFpr) return makeDecision('block', [{ signal: 'adversarial', code: 'detected', detector, pValue: p, threshold: policy.blockFpr }, ...scope], p);
      if (p <= policy.flagFpr) return makeDecision('flag', [{ signal: 'adversarial', code: 'detected', detector, pValue: p, threshold: policy.flagFpr }, ...scope], p);
      return makeDecision('forward', scope, p);
    }
  }
}

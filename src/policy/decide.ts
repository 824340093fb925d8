import type { Decision, DetectorScore, Reason, Verdict } from '../core/types';
import { ERROR_CATALOGUE, isErrorCode, type ErrorCode } from '../core/errors';
import type { Combine, ErrorClass, Policy, SignalPolicy } from './schema';

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
export function combinePValues(pValues: number[], rule: Combine = 'bonferroni'): number {
  if (pValues.length === 0) return 1;
  if (rule === 'twice-mean') return Math.min(1, (2 * pValues.reduce((a, b) => a + b, 0)) / pValues.length);
  return Math.min(1, Math.min(...pValues) * pValues.length);
}

/** The reason an instance scanned by its pixels carries (its tags put it out of scope). */
function byPixels(outcome: { byPixels?: boolean }): Reason[] {
  return outcome.byPixels ? [{ signal: 'scope', code: 'tags_out_of_scope' }] : [];
}

/** Builds a Decision that cannot be changed afterwards (reasons included). */
export function makeDecision(verdict: Verdict, reasons: Reason[], extra: { pValue?: number; pValues?: Decision['pValues']; wouldBe?: Verdict } = {}): Decision {
  const frozen = Object.freeze(reasons.map((r) => Object.freeze({ ...r })));
  const d: { -readonly [K in keyof Decision]: Decision[K] } = { verdict, reasons: frozen };
  if (extra.pValue !== undefined) d.pValue = extra.pValue;
  if (extra.pValues !== undefined) d.pValues = Object.freeze({ ...extra.pValues });
  if (extra.wouldBe !== undefined) d.wouldBe = extra.wouldBe;
  return Object.freeze(d);
}

/** In observe mode a verdict other than forward is recorded as what would have happened, and the instance forwarded. */
function carriedOut(verdict: Verdict, reasons: Reason[], policy: Policy, extra: { pValue?: number; pValues?: Decision['pValues'] } = {}): Decision {
  if (policy.mode === 'observe' && verdict !== 'forward') return makeDecision('forward', reasons, { ...extra, wouldBe: verdict });
  return makeDecision(verdict, reasons, extra);
}

/** One signal's combined p-value over the decideBy detectors that scored (undefined when none did). */
function signalPValue(scores: Record<string, DetectorScore>, s: SignalPolicy): { p: number; detector: string } | undefined {
  const used = s.decideBy.filter((name) => scores[name] !== undefined);
  if (used.length === 0) return undefined;
  return { p: combinePValues(used.map((name) => scores[name].pValue), s.combine), detector: used.join('+') };
}

export function decide(outcome: InstanceOutcome, policy: Policy): Decision {
  switch (outcome.kind) {
    case 'out_of_scope':
      return carriedOut(outcome.action ?? 'forward', [{ signal: 'scope', code: 'out_of_scope' }], policy);
    case 'skipped':
      return makeDecision('forward', [{ signal: 'scope', code: 'not_an_image' }]);
    case 'unjudged':
      return makeDecision('forward', [{ signal: 'scope', code: 'no_detectors' }, ...byPixels(outcome)]);
    case 'rejected':
      // not an instance the policy can judge (its bytes may not even be kept): refused in either mode
      return makeDecision('block', [{ signal: 'input', code: outcome.rejection, ...(outcome.detail ? { detail: outcome.detail } : {}) }]);
    case 'error':
      return carriedOut(policy.onError[outcome.errorClass ?? errorClassOf(outcome.code)], [{ signal: 'error', code: outcome.code }], policy);
    case 'scanned': {
      const scope = byPixels(outcome);
      const adv = signalPValue(outcome.scores, policy.adversarial);
      if (!adv) {
        return carriedOut(policy.onError.model, [{ signal: 'error', code: 'no_decision_detector', detector: policy.adversarial.decideBy.join('+') }, ...scope], policy);
      }
      const dom = signalPValue(outcome.scores, policy.domain);
      const reasons: Reason[] = [];
      let verdict: Verdict = 'forward';
      const a = policy.adversarial;
      if (adv.p <= a.flagFpr) {
        verdict = adv.p <= a.blockFpr ? 'block' : 'flag';
        reasons.push({ signal: 'adversarial', code: 'detected', detector: adv.detector, pValue: adv.p, threshold: verdict === 'block' ? a.blockFpr : a.flagFpr });
      }
      if (dom && dom.p <= policy.domain.flagFpr) {
        // the model's answer is unreliable here: worth a flag, never a block on its own
        if (verdict === 'forward') verdict = 'flag';
        reasons.push({ signal: 'domain', code: 'out_of_domain', detector: dom.detector, pValue: dom.p, threshold: policy.domain.flagFpr });
      }
      const pValues = { adversarial: adv.p, ...(dom ? { domain: dom.p } : {}) };
      return carriedOut(verdict, [...reasons, ...scope], policy, { pValue: adv.p, pValues });
    }
  }
}

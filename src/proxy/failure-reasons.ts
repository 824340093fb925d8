import type { Decision } from '../core/types';

/**
 * The one table from "why an instance was not stored" to the PS3.18 FailureReason (0008,1197) in the STOW-RS
 * response. Ranges follow PS3.18 §10.5.3 / PS3.4 Annex GG: A7xx out of resources, A9xx data set does not
 * match, Cxxx cannot understand (the low byte is ours: 0xC0A_ = refused by Warden's policy), 0110 processing
 * failure. docs/metrics.md ("STOW-RS failure reasons") lists the same table for operators.
 */
export const FAILURE_REASONS = {
  /** The adversarial signal's p-value at or below policy.adversarial.blockFpr. */
  blocked_by_detector: { code: 0xc0a1, text: 'blocked: the instance looks adversarial' },
  /** Scanning failed (decode, model, timeout) and policy.onError says block. */
  blocked_by_error_policy: { code: 0xc0a2, text: 'blocked: the instance could not be scanned and the error policy is to block' },
  /** studyRule 'study': another instance of the same study was blocked. */
  blocked_by_study_rule: { code: 0xc0a3, text: 'withheld: another instance of the same study was blocked (policy.studyRule: study)' },
  /** Not a DICOM Part-10 file, or the part is not application/dicom. */
  not_dicom: { code: 0xc000, text: 'cannot understand: the part is not a DICOM Part-10 instance' },
  /** Instance larger than limits.maxInstanceBytes. */
  too_large: { code: 0xa700, text: 'out of resources: the instance exceeds limits.maxInstanceBytes' },
  /** POST …/studies/{study} with an instance of another study. */
  study_mismatch: { code: 0xa900, text: 'the StudyInstanceUID of the instance differs from the study in the request URL' },
  /** Another part of the same STOW-RS request carries the same SOP Instance UID (the upstream keeps one of them). */
  duplicate_instance: { code: 0xc0a4, text: 'refused: an earlier part of this request carries the same SOP Instance UID' },
  /** The upstream refused or did not confirm the instance. */
  upstream_failed: { code: 0x0110, text: 'processing failure: the upstream server did not store the instance' },
} as const;

export type FailureCause = keyof typeof FAILURE_REASONS;

/** Why a Decision kept an instance from the upstream, as a failure cause (undefined when it was not blocked). */
export function failureCauseOf(decision: Decision): FailureCause | undefined {
  if (decision.verdict !== 'block') return undefined;
  const reasons = decision.reasons;
  if (reasons.some((r) => r.signal === 'study')) return 'blocked_by_study_rule';
  const first = reasons[0];
  if (!first) return 'blocked_by_detector';
  if (first.signal === 'input') {
    if (first.code === 'too_large') return 'too_large';
    if (first.code === 'study_mismatch') return 'study_mismatch';
    if (first.code === 'duplicate_instance') return 'duplicate_instance';
    return 'not_dicom';
  }
  if (first.signal === 'error') return 'blocked_by_error_policy';
  return 'blocked_by_detector';
}

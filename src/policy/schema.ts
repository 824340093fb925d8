import { z } from 'zod';
import type { Verdict } from '../core/types';

/**
 * The policy: which instances are scanned, at which clean false-positive rates each signal flags or blocks, and
 * what happens when an instance cannot be scanned. One schema, one default: `warden serve` reads it from the
 * configuration's `policy` section, `warden scan` from the same section (or the default below), so both judge a
 * file the same way.
 *
 * Two questions, two signals (docs/architecture.md): the *adversarial* signal (evidence of structure that flips the
 * model's decision) may flag and block; the *domain* signal (the image is unlike the clean training data: the model's
 * answer is unreliable there) only ever flags. Blocking needs adversarial evidence.
 */

export interface ApplicabilitySelectors {
  /** Empty or absent list = any value. Modality, body part and photometric compare case-insensitively. */
  sopClassUids?: string[];
  modalities?: string[];
  bodyParts?: string[];
  photometric?: string[];
}

export type ErrorClass = 'decode' | 'model' | 'timeout';

/** A selector with the action for instances outside the scope that match it. */
export interface OutOfScopeRule extends ApplicabilitySelectors {
  action: Verdict;
}

/**
 * How the p-values of several detectors of one signal become one, validly whatever their dependence: Bonferroni
 * (k · min p) or twice the mean (2 · mean p; Vovk & Wang 2020).
 */
export type Combine = 'bonferroni' | 'twice-mean';

export interface SignalPolicy {
  /** Detectors whose p-values make the signal (combined by `combine`). Empty = the signal is off. */
  decideBy: string[];
  combine: Combine;
  /** Flag when the combined p-value is at or below this clean false-positive rate. */
  flagFpr: number;
}

export interface Policy {
  /**
   * enforce: verdicts are carried out. observe: every verdict is computed, logged, counted and recorded as in enforce
   * mode, but every instance is forwarded; answers and metrics say what would have happened.
   */
  mode?: 'enforce' | 'observe';
  /** The scope by the instance's tags: instances inside are scanned. */
  applicability: ApplicabilitySelectors;
  /**
   * Tags are the sender's word: scan an instance whose tags put it out of scope when its pixels fit what the model
   * reads (greyscale, single frame, at least the model's input size, aspect ratio at most 3:1). Default true.
   */
  scanByPixels?: boolean;
  /** What happens to instances that are not scanned because they are out of scope: the first matching rule's action, else `action`. */
  outOfScope?: { action: Verdict; rules?: OutOfScopeRule[] };
  /** The signal that may block: evidence of adversarial structure. */
  adversarial: SignalPolicy & {
    /** Block when the combined p-value is at or below this clean false-positive rate (≤ flagFpr). */
    blockFpr: number;
  };
  /** The signal that only flags: the image is outside the model's domain. */
  domain: SignalPolicy;
  /** 'instance': only blocked instances are withheld; 'study': one blocked instance withholds its study. */
  studyRule: 'instance' | 'study';
  /** What to do when an instance cannot be scanned. Fail closed (block) by default. */
  onError: Record<ErrorClass, Verdict>;
}

const verdict = z.enum(['forward', 'flag', 'block']);
const fpr = z.number().gt(0).lt(1);
const stringList = z.array(z.string().min(1));
const combine = z.enum(['bonferroni', 'twice-mean']);

// The embedded reference model reads chest radiographs: CR and DX by default; widen for other models.
const DEFAULT_APPLICABILITY = { sopClassUids: [], modalities: ['CR', 'DX'], bodyParts: [], photometric: ['MONOCHROME1', 'MONOCHROME2'] };
/**
 * The shipped bundle's detectors of each signal (models/warden-cxr-ref.bundle; docs/evaluation.md, "Why these
 * detectors", says why): blocking rests on three families of adversarial evidence, merged by Bonferroni (valid under
 * any dependence): the answer's brittleness under a 2×2 median (squeeze), the disagreement of early layers with the
 * logits (coherence) and a decision just past the boundary (margin). UAD, the strongest "unlike the training
 * images" detector, flags out-of-domain images and never blocks.
 */
const DEFAULT_ADVERSARIAL = { decideBy: ['squeeze', 'coherence', 'margin'], combine: 'bonferroni' as const, flagFpr: 0.05, blockFpr: 0.005 };
const DEFAULT_DOMAIN = { decideBy: ['uad'], combine: 'bonferroni' as const, flagFpr: 0.01 };

const selectors = {
  sopClassUids: stringList.default([]),
  modalities: stringList.default([]),
  bodyParts: stringList.default([]),
  photometric: stringList.default([]),
};

export const PolicySchema = z.strictObject({
  mode: z.enum(['enforce', 'observe']).default('enforce'),
  applicability: z.strictObject({
    sopClassUids: stringList.default([]),
    modalities: stringList.default(DEFAULT_APPLICABILITY.modalities),
    bodyParts: stringList.default([]),
    photometric: stringList.default(DEFAULT_APPLICABILITY.photometric),
  }).default(DEFAULT_APPLICABILITY),
  scanByPixels: z.boolean().default(true),
  outOfScope: z.strictObject({
    action: verdict.default('forward'),
    rules: z.array(z.strictObject({ ...selectors, action: verdict })).default([]),
  }).default({ action: 'forward', rules: [] }),
  adversarial: z.strictObject({
    decideBy: stringList.default(DEFAULT_ADVERSARIAL.decideBy),
    combine: combine.default(DEFAULT_ADVERSARIAL.combine),
    flagFpr: fpr.default(DEFAULT_ADVERSARIAL.flagFpr),
    blockFpr: fpr.default(DEFAULT_ADVERSARIAL.blockFpr),
  }).refine((p) => p.blockFpr <= p.flagFpr, { message: 'must not exceed policy.adversarial.flagFpr', path: ['blockFpr'] })
    .default(DEFAULT_ADVERSARIAL),
  domain: z.strictObject({
    decideBy: stringList.default(DEFAULT_DOMAIN.decideBy),
    combine: combine.default(DEFAULT_DOMAIN.combine),
    flagFpr: fpr.default(DEFAULT_DOMAIN.flagFpr),
  }).default(DEFAULT_DOMAIN),
  studyRule: z.enum(['instance', 'study']).default('instance'),
  onError: z.strictObject({ decode: verdict.default('block'), model: verdict.default('block'), timeout: verdict.default('block') })
    .default({ decode: 'block', model: 'block', timeout: 'block' }),
});

/** Policy keys of earlier versions and where they live now (the configuration error names the new place). */
export const MOVED_POLICY_KEYS: Record<string, string> = {
  decideBy: 'policy.adversarial.decideBy (may block) or policy.domain.decideBy (flags only)',
  flagFpr: 'policy.adversarial.flagFpr or policy.domain.flagFpr',
  blockFpr: 'policy.adversarial.blockFpr',
};

/** The one default policy (the schema's defaults). */
export const DEFAULT_POLICY: Policy = Object.freeze(PolicySchema.parse({})) as Policy;

/** Problems of a policy built in code, checked by the same schema as a configured one; empty when valid. */
export function validatePolicy(policy: Policy): string[] {
  const result = PolicySchema.safeParse(policy);
  if (result.success) return [];
  return result.error.issues.map((issue) => `policy.${issue.path.join('.')} ${issue.message}`);
}

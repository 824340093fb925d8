import { z } from 'zod';
import type { Verdict } from '../core/types';

/**
 * The policy: which instances are scanned, at which clean false-positive rates a detector signal flags or blocks, and
 * what happens when an instance cannot be scanned. One schema, one default: `warden serve` reads it from the
 * configuration's `policy` section, `warden scan` from the same section (or the default below), so both judge a
 * file the same way.
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

export interface Policy {
  /** The scope by the instance's tags: instances inside are scanned. */
  applicability: ApplicabilitySelectors;
  /**
   * Tags are the sender's word: scan an instance whose tags put it out of scope when its pixels fit what the model
   * reads (greyscale, single frame, at least the model's input size, aspect ratio at most 3:1). Default true.
   */
  scanByPixels?: boolean;
  /** What happens to instances that are not scanned because they are out of scope: the first matching rule's action, else `action`. */
  outOfScope?: { action: Verdict; rules?: OutOfScopeRule[] };
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

const verdict = z.enum(['forward', 'flag', 'block']);
const fpr = z.number().gt(0).lt(1);
const stringList = z.array(z.string().min(1));

// The embedded reference model reads chest radiographs: CR and DX by default; widen for other models.
const DEFAULT_APPLICABILITY = { sopClassUids: [], modalities: ['CR', 'DX'], bodyParts: [], photometric: ['MONOCHROME1', 'MONOCHROME2'] };

const selectors = {
  sopClassUids: stringList.default([]),
  modalities: stringList.default([]),
  bodyParts: stringList.default([]),
  photometric: stringList.default([]),
};

export const PolicySchema = z.strictObject({
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
  flagFpr: fpr.default(0.05),
  blockFpr: fpr.default(0.005),
  decideBy: stringList.min(1).default(['uad']),
  studyRule: z.enum(['instance', 'study']).default('instance'),
  onError: z.strictObject({ decode: verdict.default('block'), model: verdict.default('block'), timeout: verdict.default('block') })
    .default({ decode: 'block', model: 'block', timeout: 'block' }),
}).refine((p) => p.blockFpr <= p.flagFpr, { message: 'must not exceed policy.flagFpr', path: ['blockFpr'] });

/** The one default policy (the schema's defaults). */
export const DEFAULT_POLICY: Policy = Object.freeze(PolicySchema.parse({})) as Policy;

/** Problems of a policy built in code, checked by the same schema as a configured one; empty when valid. */
export function validatePolicy(policy: Policy): string[] {
  const result = PolicySchema.safeParse(policy);
  if (result.success) return [];
  return result.error.issues.map((issue) => `policy.${issue.path.join('.')} ${issue.message}`);
}

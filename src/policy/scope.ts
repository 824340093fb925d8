import type { Verdict } from '../core/types';
import type { ApplicabilitySelectors, Policy } from './schema';

export interface InstanceAttributes {
  sopClassUid?: string;
  modality?: string;
  bodyPartExamined?: string;
  photometricInterpretation?: string;
}

/** True when the instance's attributes fall inside every non-empty selector. */
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

/** What the pixels of an instance are: enough to tell whether the model could read it, whatever the tags say. */
export interface PixelGeometry {
  rows: number;
  columns: number;
  numberOfFrames: number;
  samplesPerPixel: number;
}

/**
 * Whether an image fits what a model with this input reads as a radiograph: greyscale, a single frame, at least the
 * model's input size on its short side, aspect ratio at most 3:1. The scope by pixels that sender-controlled tags
 * (Modality, Body Part…) cannot talk their way out of.
 */
export function fitsModelInput(g: PixelGeometry, input: { height: number; width: number }): boolean {
  const short = Math.min(g.rows, g.columns);
  const long = Math.max(g.rows, g.columns);
  return g.samplesPerPixel === 1 && g.numberOfFrames === 1 && short >= Math.min(input.height, input.width) && long <= 3 * short;
}

/** The action for an instance that is not scanned because it is out of scope: the first matching rule's, else the default. */
export function outOfScopeAction(attrs: InstanceAttributes, policy: Policy): Verdict {
  const rules = policy.outOfScope?.rules ?? [];
  for (const rule of rules) if (isApplicable(attrs, rule)) return rule.action;
  return policy.outOfScope?.action ?? 'forward';
}

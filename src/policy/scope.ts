import type { ApplicabilitySelectors } from './schema';

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

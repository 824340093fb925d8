/**
 * DICOM decode stage: Part-10 bytes → DecodedInstance | SkippedInstance, or a typed WardenError.
 * Transfer syntaxes are decoded through a registry keyed by UID (see ./registry.ts for the table).
 */
import type { DecodedInstance, SkippedInstance } from '../core/types';

export { decodeInstance } from './decode';
export { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits';
export { hashUid } from './hash';

/** Type guard for the skipped (non-image) result of decodeInstance. */
export function isSkipped(x: DecodedInstance | SkippedInstance | unknown): x is SkippedInstance {
  return typeof x === 'object' && x !== null && (x as { skipped?: unknown }).skipped === true;
}

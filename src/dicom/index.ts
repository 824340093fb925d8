/**
 * DICOM decode stage: Part-10 bytes → DecodedInstance | SkippedInstance, or a typed WardenError.
 * Transfer syntaxes are decoded through a registry keyed by UID (see ./registry.ts for the table).
 */
export { decodeInstance, isSkipped } from './decode';
export { DEFAULT_DECODE_LIMITS, type DecodeLimits } from './limits';
export { hashUid, setUidHashKey } from './hash';
export { decodedBytesEstimate, readHeader, readHeaderFrom, type InstanceHeader } from './header';
export { TAG } from './tags';
export { supportedTransferSyntaxes } from './registry';

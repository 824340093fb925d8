import { WardenError, isWardenError, toWardenError, ERROR_CATALOGUE } from '../../src/core/errors';

describe('WardenError', () => {
  it('survives structured cloning as a branded error', () => {
    const err = new WardenError('DICOM_TRUNCATED', 'The file ends at byte 10.');
    const cloned = structuredClone(err.toJSON());
    expect(isWardenError(cloned)).toBe(true);
    expect(WardenError.fromSerialized(cloned).code).toBe('DICOM_TRUNCATED');
  });
  it('wraps foreign errors with a fallback code and keeps the cause', () => {
    const cause = new RangeError('boom');
    const wrapped = toWardenError(cause, 'PIXEL_DECODE_FAILED', 'The JPEG codec failed.');
    expect(wrapped.code).toBe('PIXEL_DECODE_FAILED');
    expect(wrapped.cause).toBe(cause);
  });
  it('every catalogue code has a kind and a sentence', () => {
    for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
      expect(entry.summary.endsWith('.')).toBe(true);
    }
  });
});

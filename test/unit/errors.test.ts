import { WardenError, isWardenError, toWardenError, httpStatusOf, ERROR_CATALOGUE } from '../../src/core/errors';

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

describe('docs/errors.md', () => {
  // fastify's habit: the catalogue and its documentation are checked against each other both ways.
  const doc = require('node:fs').readFileSync(require('node:path').join(__dirname, '..', '..', 'docs', 'errors.md'), 'utf8') as string;
  const rows = new Map([...doc.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]));

  it('documents every catalogue code with the HTTP status the catalogue gives it', () => {
    for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) expect({ code, status: rows.get(code) }).toEqual({ code, status: entry.status });
  });
  it('lists no code the catalogue does not have', () => {
    for (const code of rows.keys()) expect({ code, inCatalogue: code in ERROR_CATALOGUE }).toEqual({ code, inCatalogue: true });
  });
  it('maps every code to a real HTTP error status', () => {
    for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
      expect({ code, status: entry.status >= 400 && entry.status <= 599 }).toEqual({ code, status: true });
      expect(httpStatusOf(code as keyof typeof ERROR_CATALOGUE)).toBe(entry.status);
    }
  });
});

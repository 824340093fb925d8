import type { Request } from 'express';
import { WardenError } from '../core/errors';
import type { AppContext } from './context';
import { isValidBoundary, parseMediaType } from './multipart';

/**
 * Admission: whether a request that will scan instances may start now (shutdown, the gateway's limits), and whether
 * a STOW-RS request's declared body is one Warden can read. Refusals are typed errors; the handler answers them.
 */

export function admitScan(ctx: AppContext, route: 'stow' | 'wado'): WardenError | null {
  const { limits } = ctx.config;
  if (ctx.shuttingDown) return new WardenError('GATEWAY_SATURATED', 'Warden is shutting down.', { detail: { shuttingDown: true } });
  const active = route === 'stow' ? ctx.activeStow : ctx.activeStow + ctx.activeWado;
  if (active >= limits.maxConcurrentStowRequests || ctx.scans.waiting > limits.maxQueuedScans) {
    return new WardenError('GATEWAY_SATURATED', 'Too many concurrent scans; retry later.');
  }
  return null;
}

/** The multipart boundary of a STOW-RS request. @returns a typed refusal instead when the request cannot be read. */
export function stowBoundary(ctx: AppContext, req: Request): { boundary: string } | WardenError {
  const ct = parseMediaType(req.headers['content-type']);
  if (!ct || ct.mediaType !== 'multipart/related') {
    return new WardenError('UNSUPPORTED_MEDIA_TYPE', `STOW-RS needs Content-Type multipart/related; type="application/dicom" (got ${ct ? ct.mediaType : 'none'}).`);
  }
  const partType = (ct.params.type ?? 'application/dicom').toLowerCase();
  if (partType !== 'application/dicom') {
    return new WardenError('UNSUPPORTED_MEDIA_TYPE', `Warden scans application/dicom instances only; multipart/related type="${partType}" is not supported.`);
  }
  if (!ct.params.boundary) return new WardenError('MULTIPART_MALFORMED', 'The multipart/related Content-Type has no boundary parameter.');
  if (!isValidBoundary(ct.params.boundary)) return new WardenError('MULTIPART_MALFORMED', 'The multipart boundary is not a valid RFC 2046 boundary (1 to 70 characters).');
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > ctx.config.limits.maxBodyBytes) {
    return new WardenError('BODY_TOO_LARGE', `The request body (${declared} bytes) exceeds limits.maxBodyBytes (${ctx.config.limits.maxBodyBytes}).`);
  }
  return { boundary: ct.params.boundary };
}

/** Headers that go with a refusal: Retry-After on 502/503/504 (worth retrying), the connection closed after a refused body. */
export function refusalHeaders(ctx: AppContext, err: WardenError, closeConnection: boolean): Record<string, string> {
  return {
    ...(err.status === 502 || err.status === 503 || err.status === 504 ? { 'Retry-After': String(ctx.config.limits.retryAfterSeconds) } : {}),
    ...(closeConnection ? { Connection: 'close' } : {}),
  };
}

import type { Request } from 'express';
import { publish } from '../core/events';
import { Readable } from 'node:stream';
import { TAG, readHeader } from '../dicom';
import { formatReasons } from '../policy';
import type { AppContext } from './context';
import { FAILURE_REASONS } from './failure-reasons';
import type { JudgedPart } from './judge';
import { multipartBody, sanitizeHeader } from './multipart-writer';
import { upstreamPath } from './paths';

/**
 * The STOW-RS forward: the accepted parts' original bytes in one upstream STOW-RS request, and what the upstream
 * says it did with each instance (from its PS3.18 response body).
 */

/**
 * Per accepted part (by index): stored upstream (listed in its ReferencedSOPSequence), or not, with the upstream's
 * failure reason (FailedSOPSequence) or 0x0110 when the answer does not mention it.
 */
export type UpstreamOutcome = { stored: true } | { stored: false; failureReason: number };

export type ForwardResult =
  | { kind: 'answered'; status: number; outcomes: ReadonlyMap<number, UpstreamOutcome> }
  | { kind: 'unavailable'; status: 502 | 503 | 504; upstreamStatus?: number; retryAfter?: string; message: string };

/** Upstream statuses that mean nothing was stored. */
const NOTHING_STORED = new Set([401, 403, 404, 413, 415]);

export async function forwardStow(ctx: AppContext, req: Request, accepted: JudgedPart[]): Promise<ForwardResult> {
  const flagHeader = ctx.config.upstream.flagHeader;
  const multipart = multipartBody(accepted.map((p) => ({
    headers: {
      'Content-Type': 'application/dicom',
      'Content-Length': String(p.stored.size),
      ...(flagHeader && p.decision.verdict === 'flag' ? { [flagHeader]: sanitizeHeader(formatReasons(p.decision.reasons).join('; ') || 'flagged') } : {}),
    },
    size: p.stored.size,
    stream: () => p.stored.stream(),
  })));
  const flagged = accepted.filter((p) => p.decision.verdict === 'flag').length;
  const headers: Record<string, string> = { 'content-type': multipart.contentType, 'content-length': String(multipart.length), accept: 'application/dicom+json' };
  if (flagHeader && flagged > 0) headers[flagHeader.toLowerCase()] = `count=${flagged}`;
  const path = upstreamPath(req);

  let res;
  try {
    res = await ctx.upstream.request('POST', path, headers, multipart.body());
  } catch (err) {
    const timedOut = (err as { code?: string }).code === 'UPSTREAM_TIMEOUT';
    return { kind: 'unavailable', status: timedOut ? 504 : 502, retryAfter: String(ctx.config.limits.retryAfterSeconds), message: `${(err as Error).message} Nothing is claimed stored: the upstream may or may not have kept some instances; sending them again is safe.` };
  }
  // Only what the upstream's answer lists as stored is claimed stored; an unreadable answer confirms nothing.
  const text = await res.body.text().catch(() => '');
  if (res.statusCode >= 500 || NOTHING_STORED.has(res.statusCode)) {
    publish('error', { scope: ctx.scope, code: 'UPSTREAM_ERROR' });
    return {
      kind: 'unavailable', status: res.statusCode === 503 ? 503 : res.statusCode === 504 ? 504 : 502, upstreamStatus: res.statusCode,
      retryAfter: typeof res.headers['retry-after'] === 'string' ? res.headers['retry-after'] : String(ctx.config.limits.retryAfterSeconds),
      message: `The upstream DICOMweb server answered ${res.statusCode} to the STOW-RS request; nothing is claimed stored.`,
    };
  }
  const { referenced, failed } = readStowResponse(text);
  const outcomes = new Map<number, UpstreamOutcome>();
  for (const p of accepted) {
    const uid = p.header?.sopInstanceUid ?? '';
    const reason = uid ? failed.get(uid) : undefined;
    if (reason !== undefined) outcomes.set(p.index, { stored: false, failureReason: reason });
    // an instance without a SOP Instance UID cannot be matched to the upstream's answer: never confirmed
    else if (uid && referenced.has(uid)) outcomes.set(p.index, { stored: true });
    else outcomes.set(p.index, { stored: false, failureReason: FAILURE_REASONS.upstream_failed.code });
  }
  return { kind: 'answered', status: res.statusCode, outcomes };
}

/** Which SOP Instance UIDs a PS3.18 STOW-RS response body lists as stored (0008,1199) or failed (0008,1198). */
export function readStowResponse(text: string): { referenced: Set<string>; failed: Map<string, number> } {
  const referenced = new Set<string>();
  const failed = new Map<string, number>();
  try {
    type Item = Record<string, { Value?: unknown[] }>;
    const json = JSON.parse(text) as unknown;
    const ds = (Array.isArray(json) ? json[0] : json) as Record<string, { Value?: Item[] }> | undefined;
    for (const it of ds?.[TAG.ReferencedSOPSequence]?.Value ?? []) referenced.add(String(it[TAG.ReferencedSOPInstanceUID]?.Value?.[0] ?? ''));
    for (const it of ds?.[TAG.FailedSOPSequence]?.Value ?? []) {
      failed.set(String(it[TAG.ReferencedSOPInstanceUID]?.Value?.[0] ?? ''), Number(it[TAG.FailureReason]?.Value?.[0] ?? FAILURE_REASONS.upstream_failed.code));
    }
  } catch { /* no or unreadable body: the status alone decides */ }
  return { referenced, failed };
}

/**
 * A single instance's original bytes to the upstream STOW-RS (a reviewer's release from quarantine): stored only when
 * the upstream's answer lists it.
 */
export async function forwardInstance(ctx: AppContext, bytes: Buffer): Promise<{ ok: boolean; upstreamStatus: number | null; detail?: string }> {
  const uid = readHeader(bytes)?.sopInstanceUid ?? '';
  const multipart = multipartBody([{ headers: { 'Content-Type': 'application/dicom', 'Content-Length': String(bytes.length) }, size: bytes.length, stream: () => Readable.from([bytes]) }]);
  let res;
  try {
    res = await ctx.upstream.request('POST', '/studies', { 'content-type': multipart.contentType, 'content-length': String(multipart.length), accept: 'application/dicom+json' }, multipart.body());
  } catch (err) {
    return { ok: false, upstreamStatus: null, detail: (err as Error).message };
  }
  const text = await res.body.text().catch(() => '');
  const { referenced, failed } = readStowResponse(text);
  if (res.statusCode < 300 && referenced.has(uid)) return { ok: true, upstreamStatus: res.statusCode };
  const reason = failed.get(uid);
  return { ok: false, upstreamStatus: res.statusCode, detail: reason !== undefined ? `the upstream refused it (FailureReason 0x${reason.toString(16).toUpperCase()})` : `the upstream answered ${res.statusCode} without listing it as stored` };
}

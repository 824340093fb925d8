import type { Request, Response } from 'express';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Verdict, VerdictRecord } from '../core/types';
import { WardenError, isWardenError, type ErrorCode } from '../core/errors';
import { hashUid } from '../dicom/hash';
import { observeRecord } from '../metrics';
import { applyStudyRule, worstVerdict, type Policy } from '../policy';
import { FAILURE_REASONS, type FailureCause } from './failure-reasons';
import { decodedBytesEstimate, readIdentityFrom, type InstanceIdentity } from './identity';
import { ingestMultipart, parseMediaType, type IngestedPart } from './multipart';
import type { StoredPart } from './spool';
import type { AppContext } from './context';
import { publicBaseUrl } from './urls';

/**
 * STOW-RS interception (PS3.18 §10.5): ingest → identify → scan (bounded) → study rule → forward the accepted
 * parts' original bytes in one upstream STOW-RS request → PS3.18 response (200 / 202 / 409).
 */

export interface PartOutcome {
  index: number;
  stored: StoredPart;
  identity: InstanceIdentity | null;
  record?: VerdictRecord;
  verdict: Verdict;
  cause?: FailureCause;
  reasons: string[];
  /** For a stored instance: the upstream failure reason when it refused it. */
  upstreamFailure?: number;
  stored_ok?: boolean;
  /** The part's own headers (lower-cased names), kept for WADO-RS re-emission. */
  partHeaders?: Record<string, string>;
}

const HEAD_BYTES = 64 * 1024;

function sopHash(o: PartOutcome): string | undefined {
  return o.record?.sopInstanceUidHash ?? (o.identity?.sopInstanceUid ? hashUid(o.identity.sopInstanceUid) : undefined);
}

/** Error responses outside the PS3.18 body (400, 413, 415, 503…): JSON with the stable code. */
export function sendError(res: Response, status: number, code: ErrorCode, message: string, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent) { res.destroy(); return; }
  res.status(status).set(extraHeaders).type('application/json').send(JSON.stringify({ error: { code, message } }));
}

export async function handleStow(ctx: AppContext, req: Request, res: Response, studyFromUrl: string | undefined): Promise<void> {
  const { config, metrics, logger, policy } = ctx;
  const t0 = performance.now();
  const requestId = randomBytes(6).toString('hex');
  const log = logger.child({ requestId, route: 'stow' });
  const answer = (status: number): void => { metrics.stowRequests.inc({ status: String(status) }); };

  // admission
  if (ctx.shuttingDown) {
    answer(503);
    sendError(res, 503, 'GATEWAY_SATURATED', 'Warden is shutting down.', { 'Retry-After': String(config.limits.retryAfterSeconds), Connection: 'close' });
    return;
  }
  if (ctx.activeStow >= config.limits.maxConcurrentStowRequests || ctx.scans.waiting > config.limits.maxQueuedScans) {
    metrics.saturated.inc();
    metrics.errors.inc({ code: 'GATEWAY_SATURATED' });
    answer(503);
    log.warn({ event: 'saturated', activeStow: ctx.activeStow, waitingScans: ctx.scans.waiting }, 'STOW-RS request refused: scan limits reached');
    sendError(res, 503, 'GATEWAY_SATURATED', 'Too many concurrent scans; retry later.', { 'Retry-After': String(config.limits.retryAfterSeconds), Connection: 'close' });
    return;
  }

  const ct = parseMediaType(req.headers['content-type']);
  if (!ct || ct.mediaType !== 'multipart/related') {
    metrics.errors.inc({ code: 'UNSUPPORTED_MEDIA_TYPE' });
    answer(415);
    sendError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', `STOW-RS needs Content-Type multipart/related; type="application/dicom" (got ${ct ? ct.mediaType : 'none'}).`, { Connection: 'close' });
    return;
  }
  const partType = (ct.params.type ?? 'application/dicom').toLowerCase();
  if (partType !== 'application/dicom') {
    metrics.errors.inc({ code: 'UNSUPPORTED_MEDIA_TYPE' });
    answer(415);
    sendError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', `Warden scans application/dicom instances only; multipart/related type="${partType}" is not supported.`, { Connection: 'close' });
    return;
  }
  if (!ct.params.boundary) {
    metrics.errors.inc({ code: 'MULTIPART_MALFORMED' });
    answer(400);
    sendError(res, 400, 'MULTIPART_MALFORMED', 'The multipart/related Content-Type has no boundary parameter.', { Connection: 'close' });
    return;
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > config.limits.maxBodyBytes) {
    metrics.errors.inc({ code: 'BODY_TOO_LARGE' });
    answer(413);
    sendError(res, 413, 'BODY_TOO_LARGE', `The request body (${declared} bytes) exceeds limits.maxBodyBytes (${config.limits.maxBodyBytes}).`, { Connection: 'close' });
    return;
  }

  ctx.activeStow++;
  const allStored: StoredPart[] = [];
  const processing: Promise<PartOutcome>[] = [];
  try {
    let bodyBytes = 0;
    try {
      const result = await ingestMultipart(req, {
        boundary: ct.params.boundary,
        ...ingestLimits(ctx),
        onCreate: (s) => allStored.push(s),
        onPart: (part) => processing.push(processPart(ctx, part, studyFromUrl)),
      });
      bodyBytes = result.bodyBytes;
    } catch (err) {
      const e = isWardenError(err) ? err : new WardenError('MULTIPART_MALFORMED', `The multipart/related body could not be read: ${(err as Error).message}.`);
      const status = e.code === 'BODY_TOO_LARGE' ? 413 : 400;
      metrics.errors.inc({ code: e.code });
      answer(status);
      log.warn({ event: 'stow_rejected', code: e.code, status }, e.message);
      await Promise.allSettled(processing);
      sendError(res, status, e.code, e.message, { Connection: 'close' });
      return;
    }
    metrics.stowBytes.inc(bodyBytes);
    const tIngested = performance.now();
    metrics.stageDuration.observe({ stage: 'ingest' }, (tIngested - t0) / 1000);
    const outcomes = (await Promise.all(processing)).sort((a, b) => a.index - b.index);
    const tScanned = performance.now();
    let forwardMs = 0;
    if (outcomes.length === 0) {
      metrics.errors.inc({ code: 'MULTIPART_MALFORMED' });
      answer(400);
      sendError(res, 400, 'MULTIPART_MALFORMED', 'The multipart/related body contains no parts.', { Connection: 'close' });
      return;
    }
    for (const o of outcomes) if (o.stored.spooled) metrics.spooledParts.inc();

    const byStudy = applyStudyRuleToParts(outcomes, policy.studyRule);

    const accepted = outcomes.filter((o) => o.verdict !== 'block');
    let upstreamStatus: number | null = null;
    if (accepted.length > 0) {
      const tf = performance.now();
      const forwarded = await forward(ctx, req, accepted);
      forwardMs = performance.now() - tf;
      metrics.stageDuration.observe({ stage: 'forward' }, forwardMs / 1000);
      if (forwarded.kind === 'unavailable') {
        const status = forwarded.status;
        answer(status);
        log.error({ event: 'upstream_unavailable', status, upstreamStatus: forwarded.upstreamStatus, instances: outcomes.length }, forwarded.message);
        for (const o of outcomes) metrics.instances.inc({ verdict: o.verdict });
        res.setHeader('Server-Timing', serverTiming(t0, tIngested, tScanned, forwardMs));
        res.status(status).set({ 'Content-Type': 'application/dicom+json', ...(forwarded.retryAfter ? { 'Retry-After': forwarded.retryAfter } : {}) });
        res.end(JSON.stringify(buildBody(outcomes.map((o) => ({ ...o, stored_ok: false, upstreamFailure: FAILURE_REASONS.upstream_failed.code, cause: o.cause ?? 'upstream_failed' })), publicBaseUrl(ctx, req), forwarded.message)));
        return;
      }
      upstreamStatus = forwarded.status;
    }

    // counts, metrics, logs
    const storedCount = outcomes.filter((o) => o.stored_ok).length;
    const flagged = outcomes.filter((o) => o.verdict === 'flag' && o.stored_ok);
    for (const o of outcomes) {
      metrics.instances.inc({ verdict: o.verdict });
      if (o.record) observeRecord(metrics, o.record);
      if (o.record?.status === 'skipped') metrics.unscanned.inc({ reason: o.record.skipReason === 'out_of_scope' ? 'out_of_scope' : 'not_an_image' });
      if (o.record?.error?.code) metrics.errors.inc({ code: o.record.error.code });
      if (o.verdict === 'flag') metrics.flagged.inc({ detector: detectorLabel(o.reasons) });
      const entry = {
        event: o.verdict === 'forward' ? 'instance' : o.verdict === 'flag' ? 'instance_flagged' : 'instance_blocked',
        partIndex: o.index, sopHash: sopHash(o), studyHash: o.identity?.studyInstanceUid ? hashUid(o.identity.studyInstanceUid) : undefined,
        verdict: o.verdict, reasons: o.reasons, status: o.record?.status, errorCode: o.record?.error?.code, cause: o.cause,
        pValues: o.record?.scores ? Object.fromEntries(Object.entries(o.record.scores).map(([k, v]) => [k, v.pValue])) : undefined,
        timings: o.record?.timings, bytes: o.stored.size, storedUpstream: o.stored_ok ?? false,
      };
      if (o.verdict === 'forward') log.info(entry, 'instance forwarded'); else log.warn(entry, o.verdict === 'flag' ? 'instance flagged and forwarded' : 'instance blocked');
    }
    for (const group of byStudy.values()) metrics.studies.inc({ verdict: worstVerdict(group.map((o) => o.verdict)) });

    let status: number;
    if (storedCount === outcomes.length) status = flagged.length > 0 && config.stow.warningsAs202 ? 202 : 200;
    else if (storedCount === 0) status = 409;
    else status = 202;
    answer(status);
    const warnings = warningHeaders(outcomes);
    if (warnings.length) res.setHeader('Warning', warnings);
    res.setHeader('Server-Timing', serverTiming(t0, tIngested, tScanned, forwardMs));
    res.status(status).setHeader('Content-Type', 'application/dicom+json');
    res.end(JSON.stringify(buildBody(outcomes, publicBaseUrl(ctx, req))));
    log.info({ event: 'stow', status, upstreamStatus, instances: outcomes.length, stored: storedCount, flagged: flagged.length,
      blocked: outcomes.filter((o) => o.verdict === 'block').length, studies: byStudy.size, bytes: bodyBytes,
      ms: Math.round(performance.now() - t0) }, 'STOW-RS answered');
  } catch (err) {
    metrics.errors.inc({ code: 'INTERNAL' });
    answer(500);
    log.error({ event: 'stow_failed', err: { message: (err as Error).message, stack: (err as Error).stack } }, 'STOW-RS failed');
    sendError(res, 500, 'INTERNAL', 'An unexpected internal error; nothing was claimed stored.');
  } finally {
    ctx.activeStow--;
    await Promise.allSettled(processing);
    await Promise.allSettled(allStored.map((s) => s.dispose()));
  }
}

/**
 * Where the request's time went (W3C Server-Timing, milliseconds): `ingest` = reading the body (scans of early
 * parts already run meanwhile), `scan` = from the last byte until every part's verdict, `forward` = the upstream
 * STOW-RS, `total` = up to the answer. Durations only: nothing about the instances themselves.
 */
function serverTiming(t0: number, tIngested: number, tScanned: number, forwardMs: number): string {
  const ms = (x: number): string => x.toFixed(2);
  return `ingest;dur=${ms(tIngested - t0)}, scan;dur=${ms(tScanned - tIngested)}, forward;dur=${ms(forwardMs)}, total;dur=${ms(performance.now() - t0)}`;
}

export function detectorLabel(reasons: string[]): string {
  const first = reasons.find((r) => /^[a-z0-9_+]+:p=/.test(r));
  return first ? first.slice(0, first.indexOf(':')) : reasons.some((r) => r.startsWith('error:')) ? 'error_policy' : 'other';
}

export async function processPart(ctx: AppContext, part: IngestedPart, studyFromUrl: string | undefined): Promise<PartOutcome> {
  const { stored, index } = part;
  const base = { index, stored, identity: null as InstanceIdentity | null, partHeaders: part.headers };
  if (stored.oversized) return { ...base, verdict: 'block', cause: 'too_large', reasons: ['too_large'] };
  const partType = parseMediaType(part.headers['content-type'])?.mediaType;
  if (partType && partType !== 'application/dicom') return { ...base, verdict: 'block', cause: 'not_dicom', reasons: [`part_content_type:${partType}`] };
  let identity: InstanceIdentity | null;
  try {
    identity = await readIdentityFrom(await stored.head(HEAD_BYTES), stored.size, () => stored.read());
  } catch {
    identity = null;
  }
  if (identity === null) return { ...base, verdict: 'block', cause: 'not_dicom', reasons: ['not_part10'] };
  if (studyFromUrl !== undefined && identity.studyInstanceUid !== studyFromUrl) {
    return { ...base, identity, verdict: 'block', cause: 'study_mismatch', reasons: ['study_mismatch'] };
  }
  const { scans, config, policy, metrics } = ctx;
  let release: (() => void) | null = null;
  metrics.activeScans.inc();
  try {
    try {
      // weighted by what the scan will hold: the part's bytes plus its decoded pixels (limits.scanMemoryBytes)
      release = await scans.acquire(config.limits.scanTimeoutMs, stored.size + decodedBytesEstimate(identity, stored.size));
    } catch {
      const record: VerdictRecord = { partIndex: index, status: 'error', error: { code: 'GATEWAY_SATURATED', message: 'The scan waited longer than limits.scanTimeoutMs.' }, timings: {} };
      const verdict = policy.onError.timeout;
      return { ...base, identity, record, verdict, cause: verdict === 'block' ? 'blocked_by_error_policy' : undefined, reasons: ['error:GATEWAY_SATURATED'] };
    }
    let record: VerdictRecord;
    try {
      const bytes = await stored.read();
      record = await ctx.scanner.scan(bytes, { partIndex: index });
    } catch (err) {
      const code = isWardenError(err) ? err.code : 'INTERNAL';
      record = { partIndex: index, status: 'error', error: { code, message: (err as Error).message }, timings: {} };
      const verdict = policy.onError.model;
      return { ...base, identity, record, verdict, cause: verdict === 'block' ? 'blocked_by_error_policy' : undefined, reasons: [`error:${code}`] };
    }
    let verdict: Verdict;
    let reasons = record.reasons ?? [];
    if (record.verdict) verdict = record.verdict;
    else if (record.status === 'error') { verdict = policy.onError.model; reasons = [`error:${record.error?.code ?? 'INTERNAL'}`]; }
    else { verdict = 'forward'; reasons = record.status === 'scanned' ? ['no_detectors'] : reasons; }
    const cause: FailureCause | undefined = verdict === 'block' ? (record.status === 'error' ? 'blocked_by_error_policy' : 'blocked_by_detector') : undefined;
    return { ...base, identity, record, verdict, cause, reasons };
  } finally {
    release?.();
    metrics.activeScans.dec();
  }
}

type ForwardResult =
  | { kind: 'answered'; status: number }
  | { kind: 'unavailable'; status: 502 | 503 | 504; upstreamStatus?: number; retryAfter?: string; message: string };

const CRLF = '\r\n';

async function forward(ctx: AppContext, req: Request, accepted: PartOutcome[]): Promise<ForwardResult> {
  const { config } = ctx;
  const boundary = `warden-${randomBytes(16).toString('hex')}`;
  const flagHeader = config.upstream.flagHeader;
  const heads = accepted.map((o) => {
    let h = `--${boundary}${CRLF}Content-Type: application/dicom${CRLF}Content-Length: ${o.stored.size}${CRLF}`;
    if (flagHeader && o.verdict === 'flag') h += `${flagHeader}: ${sanitizeHeader(o.reasons.join('; ') || 'flagged')}${CRLF}`;
    return Buffer.from(h + CRLF, 'latin1');
  });
  const tail = Buffer.from(`--${boundary}--${CRLF}`, 'latin1');
  const sep = Buffer.from(CRLF, 'latin1');
  const length = heads.reduce((n, h, i) => n + h.length + accepted[i].stored.size + sep.length, 0) + tail.length;
  async function* body(): AsyncGenerator<Buffer> {
    for (let i = 0; i < accepted.length; i++) {
      yield heads[i];
      for await (const chunk of accepted[i].stored.stream()) yield chunk as Buffer;
      yield sep;
    }
    yield tail;
  }
  const flaggedCount = accepted.filter((o) => o.verdict === 'flag').length;
  const headers: Record<string, string> = {
    'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
    'content-length': String(length),
    accept: 'application/dicom+json',
  };
  if (flagHeader && flaggedCount > 0) headers[flagHeader.toLowerCase()] = `count=${flaggedCount}`;
  const path = req.originalUrl.slice(config.server.basePath.length);

  let res;
  try {
    res = await ctx.upstream.request('POST', path, headers, Readable.from(body(), { objectMode: false }));
  } catch (err) {
    return { kind: 'unavailable', status: 502, message: (err as Error).message };
  }
  const text = await res.body.text().catch(() => '');
  if (res.statusCode >= 500 || res.statusCode === 401 || res.statusCode === 403 || res.statusCode === 404 || res.statusCode === 413 || res.statusCode === 415) {
    const retryAfter = typeof res.headers['retry-after'] === 'string' ? res.headers['retry-after'] : undefined;
    ctx.metrics.errors.inc({ code: 'UPSTREAM_ERROR' });
    return {
      kind: 'unavailable', status: res.statusCode === 503 ? 503 : res.statusCode === 504 ? 504 : 502, upstreamStatus: res.statusCode, retryAfter,
      message: `The upstream DICOMweb server answered ${res.statusCode} to the STOW-RS request; nothing is claimed stored.`,
    };
  }
  // PS3.18 response from upstream: which SOP Instance UIDs it stored or refused.
  let referenced = new Set<string>();
  const failed = new Map<string, number>();
  try {
    type Item = Record<string, { Value?: unknown[] }>;
    const json = JSON.parse(text) as unknown;
    const ds = (Array.isArray(json) ? json[0] : json) as Record<string, { Value?: Item[] }> | undefined;
    referenced = new Set((ds?.['00081199']?.Value ?? []).map((it: Item) => String(it['00081155']?.Value?.[0] ?? '')));
    for (const it of ds?.['00081198']?.Value ?? []) failed.set(String(it['00081155']?.Value?.[0] ?? ''), Number(it['00081197']?.Value?.[0] ?? FAILURE_REASONS.upstream_failed.code));
  } catch { /* no or unreadable body: rely on the status alone */ }
  for (const o of accepted) {
    const uid = o.identity?.sopInstanceUid ?? '';
    if (failed.has(uid)) {
      o.stored_ok = false;
      o.upstreamFailure = failed.get(uid);
    } else if (referenced.has(uid) || res.statusCode === 200) {
      o.stored_ok = true;
    } else {
      o.stored_ok = false;
      o.upstreamFailure = FAILURE_REASONS.upstream_failed.code;
    }
    if (!o.stored_ok) o.cause = 'upstream_failed';
  }
  return { kind: 'answered', status: res.statusCode };
}

export function sanitizeHeader(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

/**
 * The study rule, applied per StudyInstanceUID among the parts of one request or retrieve (mutates the
 * outcomes). Returns the parts grouped by study, for the per-study metrics.
 */
export function applyStudyRuleToParts(outcomes: PartOutcome[], rule: Policy['studyRule']): Map<string, PartOutcome[]> {
  const byStudy = new Map<string, PartOutcome[]>();
  for (const o of outcomes) {
    const key = o.identity?.studyInstanceUid ?? '';
    if (!byStudy.has(key)) byStudy.set(key, []);
    byStudy.get(key)!.push(o);
  }
  for (const group of byStudy.values()) {
    const ruled = applyStudyRule(group.map((o) => o.verdict), rule);
    group.forEach((o, i) => {
      if (ruled[i] === 'block' && o.verdict !== 'block') {
        o.verdict = 'block';
        o.cause = 'blocked_by_study_rule';
        o.reasons = [...o.reasons, 'study_rule'];
      }
    });
  }
  return byStudy;
}

/** Body limit, memory budget and spooling for one multipart stream (a STOW request or a scanned WADO retrieve). */
export function ingestLimits(ctx: AppContext) {
  const { limits } = ctx.config;
  return {
    maxBodyBytes: limits.maxBodyBytes,
    budget: ctx.budget,
    spool: { memoryPartBytes: limits.memoryPartBytes, memoryBudgetBytes: ctx.budget.limit, maxInstanceBytes: limits.maxInstanceBytes, dir: ctx.spoolDir },
  };
}

export function readable(o: PartOutcome): string {
  if (o.verdict === 'flag') return `flagged (forwarded): ${o.reasons.join('; ')}`;
  if (o.cause) {
    const base = FAILURE_REASONS[o.cause].text;
    return o.reasons.length ? `${base} (${o.reasons.join('; ')})` : base;
  }
  return 'stored';
}

type Json = Record<string, unknown>;
const ui = (v: string | undefined): Json => (v ? { vr: 'UI', Value: [v] } : { vr: 'UI' });

/** The PS3.18 STOW-RS response dataset (application/dicom+json), with Warden's readable reason privately tagged. */
function buildBody(outcomes: PartOutcome[], publicBase: string, note?: string): Json {
  const referenced: Json[] = [];
  const enc = encodeURIComponent;
  const failedItems: Json[] = [];
  for (const o of outcomes) {
    const item: Json = {
      '00081150': ui(o.identity?.sopClassUid),
      '00081155': ui(o.identity?.sopInstanceUid),
      '00090010': { vr: 'LO', Value: ['WARDEN 1'] },
      '00091001': { vr: 'CS', Value: [o.verdict.toUpperCase()] },
      '00091002': { vr: 'LT', Value: [note && !o.stored_ok ? `${note} ${readable(o)}`.trim() : readable(o)] },
      '00091003': { vr: 'UL', Value: [o.index + 1] },
    };
    const id = o.identity;
    if (o.stored_ok && id?.studyInstanceUid && id.seriesInstanceUid && id.sopInstanceUid) {
      item['00081190'] = { vr: 'UR', Value: [`${publicBase}/studies/${enc(id.studyInstanceUid)}/series/${enc(id.seriesInstanceUid)}/instances/${enc(id.sopInstanceUid)}`] };
    }
    if (o.stored_ok) referenced.push(item);
    else {
      const reason = o.cause === 'upstream_failed' ? (o.upstreamFailure ?? FAILURE_REASONS.upstream_failed.code) : FAILURE_REASONS[o.cause ?? 'upstream_failed'].code;
      failedItems.push({ ...item, '00081197': { vr: 'US', Value: [reason] } });
    }
  }
  const body: Json = {};
  // Retrieve URL (0008,1190) of the study, at Warden (never the upstream's address), when one study was stored
  const storedStudies = new Set(outcomes.filter((o) => o.stored_ok).map((o) => o.identity?.studyInstanceUid));
  const [onlyStudy] = storedStudies;
  if (storedStudies.size === 1 && onlyStudy) body['00081190'] = { vr: 'UR', Value: [`${publicBase}/studies/${enc(onlyStudy)}`] };
  if (referenced.length) body['00081199'] = { vr: 'SQ', Value: referenced };
  if (failedItems.length) body['00081198'] = { vr: 'SQ', Value: failedItems };
  return body;
}

/** One `Warning: 299 warden "…"` per flagged or failed instance (at most 20, then a summary). */
function warningHeaders(outcomes: PartOutcome[]): string[] {
  const notable = outcomes.filter((o) => o.verdict !== 'forward' || !o.stored_ok);
  const out = notable.slice(0, 20).map((o) => {
    const who = o.identity?.sopInstanceUid ? `instance ${o.identity.sopInstanceUid}` : `part ${o.index + 1}`;
    return `299 warden "${sanitizeHeader(`${who}: ${readable(o)}`).replace(/"/g, "'")}"`;
  });
  if (notable.length > 20) out.push(`299 warden "${notable.length - 20} more instances flagged or not stored"`);
  return out;
}

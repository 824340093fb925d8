import type { Request, Response } from 'express';
import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { WardenError, isWardenError } from '../core/errors';
import { hashUid } from '../dicom/hash';
import { observeRecord } from '../metrics';
import { worstVerdict } from '../policy';
import type { AppContext } from './context';
import { ingestMultipart, parseMediaType } from './multipart';
import { handlePassThrough, forwardableRequestHeaders, copyResponseHeaders } from './passthrough';
import type { StoredPart } from './spool';
import { applyStudyRuleToParts, ingestLimits, detectorLabel, processPart, readable, sanitizeHeader, sendError, type PartOutcome } from './stow';

/**
 * WADO-RS retrieve scanning (wado.scan: true), for AI endpoints that pull studies through Warden.
 *
 * Study, series and instance retrieves (GET {base}/studies/{study}[/series/{series}[/instances/{instance}]])
 * whose upstream answer is `multipart/related; type="application/dicom"` are parsed part by part with the same
 * streaming Dicer ingest as STOW-RS (parts spooled beyond the memory budget), each instance is scanned while
 * the rest still downloads, the policy and its study rule are applied, and the client gets a new
 * multipart/related body with the original bytes (and original part headers) of the instances that were not
 * blocked. Flagged instances are kept and marked (part header `upstream.flagHeader`).
 *
 * Status (PS3.18 §10.4.3 Table 10.4.3-1): 200 when every instance is returned; 206 Partial Content with
 * `Warning: 299 warden "…"` when some were withheld (or 200 + the same Warning with wado.partialStatus: 200,
 * for clients that follow CP-2418, which removed 206); 409 Conflict when every instance was withheld (no
 * multipart body: an empty multipart would read as "the study has no instances"). `X-Warden-Withheld: N` and
 * `X-Warden-Instances: M` carry the counts on every scanned retrieve. Nothing is streamed to the client before
 * every verdict is known (the study rule may withhold instances already scanned).
 *
 * Everything else stays pass-through: metadata, rendered, thumbnail, frames, bulk data, QIDO-RS, and any
 * retrieve the upstream answers with an error or with another media type (e.g. application/octet-stream).
 */

const RETRIEVE_RE = /^\/studies\/([^/?]+)(?:\/series\/([^/?]+)(?:\/instances\/([^/?]+))?)?\/?(?:\?.*)?$/;

/** The study UID when `path` (below the base path) is a study/series/instance retrieve, else null. */
export function matchRetrieve(path: string): { study: string; series?: string; instance?: string } | null {
  const m = RETRIEVE_RE.exec(path);
  if (!m) return null;
  const dec = (s: string | undefined): string | undefined => (s === undefined ? undefined : decodeURIComponent(s));
  return { study: dec(m[1])!, series: dec(m[2]), instance: dec(m[3]) };
}

const CRLF = '\r\n';

export async function handleWadoScan(ctx: AppContext, req: Request, res: Response): Promise<void> {
  const path = req.originalUrl.slice(ctx.config.server.basePath.length) || '/';
  const target = req.method === 'GET' ? matchRetrieve(path) : null;
  if (!target) return handlePassThrough(ctx, req, res);

  const { config, metrics, logger, policy } = ctx;
  const t0 = performance.now();
  const log = logger.child({ requestId: randomBytes(6).toString('hex'), route: 'wado' });
  const answer = (status: number): void => { metrics.wadoRequests.inc({ status: String(status) }); };

  if (ctx.shuttingDown || ctx.activeStow + ctx.activeWado >= config.limits.maxConcurrentStowRequests || ctx.scans.waiting > config.limits.maxQueuedScans) {
    metrics.saturated.inc();
    metrics.errors.inc({ code: 'GATEWAY_SATURATED' });
    answer(503);
    sendError(res, 503, 'GATEWAY_SATURATED', ctx.shuttingDown ? 'Warden is shutting down.' : 'Too many concurrent scans; retry later.', { 'Retry-After': String(config.limits.retryAfterSeconds) });
    return;
  }

  const abort = new AbortController();
  const onClose = (): void => { if (!res.writableFinished) abort.abort(); };
  res.on('close', onClose);
  ctx.activeWado++;
  const allStored: StoredPart[] = [];
  const processing: Promise<PartOutcome>[] = [];
  try {
    let upstream;
    try {
      // identity: Warden re-emits the body anyway, and Dicer must see the multipart bytes, not gzip
      upstream = await ctx.upstream.request('GET', path, { ...forwardableRequestHeaders(req), 'accept-encoding': 'identity' }, null, abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return;
      answer(502);
      sendError(res, 502, 'UPSTREAM_UNAVAILABLE', (err as Error).message);
      return;
    }
    const ct = parseMediaType(firstHeader(upstream.headers['content-type']));
    const scannable = upstream.statusCode === 200 && ct?.mediaType === 'multipart/related'
      && (ct.params.type ?? '').toLowerCase() === 'application/dicom' && Boolean(ct.params.boundary);
    if (!scannable) {
      // an error, or a representation Warden does not scan: relayed as it came
      answer(upstream.statusCode);
      res.status(upstream.statusCode);
      copyResponseHeaders(upstream.headers, res, true);
      try { await pipeline(upstream.body, res); } catch { res.destroy(); }
      return;
    }

    let source: Readable = upstream.body;
    const encoding = String(firstHeader(upstream.headers['content-encoding']) ?? 'identity').trim().toLowerCase();
    if (encoding !== 'identity' && encoding !== '') {
      const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? zlib.createGunzip() : encoding === 'deflate' ? zlib.createInflate() : encoding === 'br' ? zlib.createBrotliDecompress() : null;
      if (!decoder) {
        upstream.body.destroy();
        answer(502);
        metrics.errors.inc({ code: 'UPSTREAM_ERROR' });
        sendError(res, 502, 'UPSTREAM_ERROR', `The upstream answered the retrieve with Content-Encoding ${encoding}, which Warden cannot decode to scan it.`);
        return;
      }
      upstream.body.on('error', (err) => decoder.destroy(err));
      source = upstream.body.pipe(decoder);
    }
    try {
      await ingestMultipart(source, {
        boundary: ct.params.boundary,
        ...ingestLimits(ctx),
        onCreate: (s) => allStored.push(s),
        onPart: (part) => processing.push(processPart(ctx, part, target.study)),
      });
    } catch (err) {
      if (abort.signal.aborted) return;
      const e = isWardenError(err) ? err : new WardenError('MULTIPART_MALFORMED', (err as Error).message);
      const status = e.code === 'BODY_TOO_LARGE' ? 413 : 502;
      metrics.errors.inc({ code: status === 502 ? 'UPSTREAM_ERROR' : e.code });
      answer(status);
      log.warn({ event: 'wado_rejected', code: e.code, status }, e.message);
      await Promise.allSettled(processing);
      sendError(res, status, status === 502 ? 'UPSTREAM_ERROR' : e.code, status === 502
        ? `The upstream WADO-RS response could not be read as multipart/related: ${e.message}`
        : `The upstream WADO-RS response exceeds limits.maxBodyBytes (${config.limits.maxBodyBytes}).`);
      return;
    }
    const outcomes = (await Promise.all(processing)).sort((a, b) => a.index - b.index);
    if (abort.signal.aborted) return;

    const byStudy = applyStudyRuleToParts(outcomes, policy.studyRule);

    const kept = outcomes.filter((o) => o.verdict !== 'block');
    const withheld = outcomes.length - kept.length;
    const flagged = kept.filter((o) => o.verdict === 'flag').length;
    for (const o of outcomes) {
      metrics.wadoInstances.inc({ verdict: o.verdict });
      if (o.record) observeRecord(metrics, o.record);
      if (o.record?.status === 'skipped') metrics.unscanned.inc({ reason: o.record.skipReason === 'out_of_scope' ? 'out_of_scope' : 'not_an_image' });
      if (o.record?.error?.code) metrics.errors.inc({ code: o.record.error.code });
      if (o.verdict === 'flag') metrics.flagged.inc({ detector: detectorLabel(o.reasons) });
      if (o.verdict !== 'forward') {
        log.warn({
          event: o.verdict === 'flag' ? 'wado_instance_flagged' : 'wado_instance_withheld', partIndex: o.index,
          sopHash: o.record?.sopInstanceUidHash ?? (o.identity?.sopInstanceUid ? hashUid(o.identity.sopInstanceUid) : undefined),
          studyHash: o.identity?.studyInstanceUid ? hashUid(o.identity.studyInstanceUid) : undefined,
          verdict: o.verdict, reasons: o.reasons, cause: o.cause, bytes: o.stored.size,
        }, o.verdict === 'flag' ? 'retrieved instance flagged and returned' : 'retrieved instance withheld');
      }
    }

    const counts = { 'X-Warden-Instances': String(outcomes.length), 'X-Warden-Withheld': String(withheld), ...(flagged && config.upstream.flagHeader ? { [config.upstream.flagHeader]: `count=${flagged}` } : {}) };
    const warnings = wadoWarnings(outcomes, withheld);
    if (outcomes.length > 0 && kept.length === 0) {
      answer(409);
      res.status(409).set({ ...counts, 'Content-Type': 'application/json' });
      res.setHeader('Warning', warnings);
      res.end(JSON.stringify({
        error: { code: 'INSTANCES_WITHHELD', message: `Warden withheld all ${outcomes.length} retrieved instance(s) under its policy; nothing is returned.` },
        withheld: outcomes.map((o) => ({ part: o.index + 1, sopInstanceUid: o.identity?.sopInstanceUid, reason: readable(o) })),
      }));
      log.warn({ event: 'wado', status: 409, instances: outcomes.length, withheld, ms: Math.round(performance.now() - t0) }, 'WADO-RS retrieve withheld entirely');
      return;
    }

    const status = withheld > 0 ? config.wado.partialStatus : 200;
    const boundary = `warden-${randomBytes(16).toString('hex')}`;
    const flagHeader = config.upstream.flagHeader;
    const heads = kept.map((o) => {
      let h = `--${boundary}${CRLF}Content-Type: ${sanitizeHeader(o.partHeaders?.['content-type'] || 'application/dicom')}${CRLF}`;
      if (o.partHeaders?.['content-location']) h += `Content-Location: ${sanitizeHeader(o.partHeaders['content-location'])}${CRLF}`;
      h += `Content-Length: ${o.stored.size}${CRLF}`;
      if (flagHeader && o.verdict === 'flag') h += `${flagHeader}: ${sanitizeHeader(o.reasons.join('; ') || 'flagged')}${CRLF}`;
      return Buffer.from(h + CRLF, 'latin1');
    });
    const sep = Buffer.from(CRLF, 'latin1');
    const tail = Buffer.from(`--${boundary}--${CRLF}`, 'latin1');
    const length = heads.reduce((n, h, i) => n + h.length + kept[i].stored.size + sep.length, 0) + tail.length;
    answer(status);
    res.status(status).set({ ...counts, 'Content-Type': `multipart/related; type="application/dicom"; boundary=${boundary}`, 'Content-Length': String(length) });
    if (warnings.length) res.setHeader('Warning', warnings);
    async function* body(): AsyncGenerator<Buffer> {
      for (let i = 0; i < kept.length; i++) {
        yield heads[i];
        for await (const chunk of kept[i].stored.stream()) yield chunk as Buffer;
        yield sep;
        // the part's bytes are no longer needed: free memory or the temp file now, not at the end
        await kept[i].stored.dispose();
      }
      yield tail;
    }
    try {
      await pipeline(Readable.from(body(), { objectMode: false }), res);
    } catch {
      res.destroy();
      return;
    }
    for (const group of byStudy.values()) metrics.wadoStudies.inc({ verdict: worstVerdict(group.map((o) => o.verdict)) });
    log.info({ event: 'wado', status, instances: outcomes.length, withheld, flagged, bytes: length, ms: Math.round(performance.now() - t0) }, 'WADO-RS retrieve scanned');
  } catch (err) {
    metrics.errors.inc({ code: 'INTERNAL' });
    answer(500);
    log.error({ event: 'wado_failed', err: { message: (err as Error).message, stack: (err as Error).stack } }, 'WADO-RS scan failed');
    sendError(res, 500, 'INTERNAL', 'An unexpected internal error while scanning the retrieve.');
  } finally {
    ctx.activeWado--;
    res.off('close', onClose);
    abort.abort(); // releases the upstream connection if the body was not consumed
    await Promise.allSettled(processing);
    await Promise.allSettled(allStored.map((s) => s.dispose()));
  }
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function wadoWarnings(outcomes: PartOutcome[], withheld: number): string[] {
  const out: string[] = [];
  if (withheld > 0) out.push(`299 warden "${withheld} of ${outcomes.length} instances withheld by policy"`);
  const notable = outcomes.filter((o) => o.verdict !== 'forward');
  for (const o of notable.slice(0, 20)) {
    const who = o.identity?.sopInstanceUid ? `instance ${o.identity.sopInstanceUid}` : `part ${o.index + 1}`;
    const what = o.verdict === 'flag' ? readable(o) : `withheld: ${readable(o)}`;
    out.push(`299 warden "${sanitizeHeader(`${who}: ${what}`).replace(/"/g, "'")}"`);
  }
  if (notable.length > 20) out.push(`299 warden "${notable.length - 20} more instances flagged or withheld"`);
  return out;
}

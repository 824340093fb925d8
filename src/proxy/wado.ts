import type { Request, Response } from 'express';
import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { WardenError, isWardenError } from '../core/errors';
import { publish } from '../core/events';
import { formatReasons } from '../policy';
import { admitScan, refusalHeaders } from './admission';
import type { AppContext } from './context';
import { upstreamPath } from './paths';
import { sendError } from './http-errors';
import { ingestAndJudge, type JudgedBody } from './judge';
import { parseMediaType } from './multipart';
import { multipartBody, sanitizeHeader } from './multipart-writer';
import { handlePassThrough, forwardableRequestHeaders, copyResponseHeaders } from './passthrough';
import { principalOf } from './auth';
import { reportDecisions } from './report';
import type { StoredPart } from './spool';
import { partResults, readable, warningHeaders } from './stow-response';

/**
 * WADO-RS retrieve scanning (wado.scan: true), for AI endpoints that pull studies through Warden.
 *
 * Study, series and instance retrieves (GET {base}/studies/{study}[/series/{series}[/instances/{instance}]])
 * whose upstream answer is `multipart/related; type="application/dicom"` are judged part by part exactly as STOW-RS
 * parts are (src/proxy/judge.ts), and the client gets a new multipart/related body with the original bytes (and
 * original part headers) of the instances that were not blocked; flagged ones are marked (part header
 * `upstream.flagHeader`). Nothing is streamed to the client before every verdict is known (the study rule may
 * withhold instances already scanned).
 *
 * Status (PS3.18 §10.4.3 Table 10.4.3-1): 200 when every instance is returned; `wado.partialStatus` (206, or 200
 * for clients that follow CP-2418) with `Warning: 299 warden "…"` when some were withheld; 409 Conflict when every
 * instance was withheld (an empty multipart would read as "the study has no instances"). `X-Warden-Withheld` and
 * `X-Warden-Instances` carry the counts. Everything else (metadata, rendered, frames, bulk data, QIDO-RS, any
 * retrieve answered with an error or another media type) stays pass-through.
 */

const RETRIEVE_RE = /^\/studies\/([^/?]+)(?:\/series\/([^/?]+)(?:\/instances\/([^/?]+))?)?\/?(?:\?.*)?$/;

/** The study UID when `path` (below the base path) is a study/series/instance retrieve, else null. */
export function matchRetrieve(path: string): { study: string; series?: string; instance?: string } | null {
  const m = RETRIEVE_RE.exec(path);
  if (!m) return null;
  const dec = (s: string | undefined): string | undefined => (s === undefined ? undefined : decodeURIComponent(s));
  return { study: dec(m[1])!, series: dec(m[2]), instance: dec(m[3]) };
}

export async function handleWadoScan(ctx: AppContext, req: Request, res: Response): Promise<void> {
  const path = upstreamPath(req);
  const target = req.method === 'GET' ? matchRetrieve(path) : null;
  if (!target) return handlePassThrough(ctx, req, res);

  const t0 = performance.now();
  const requestId = randomBytes(6).toString('hex');
  const log = ctx.logger.child({ requestId, route: 'wado' });
  const answered = (status: number, extra: { code?: string; bodyBytes?: number; saturated?: boolean } = {}): void =>
    publish('requestAnswered', { scope: ctx.scope, route: 'wado', status, ...extra });
  const refuse = (err: WardenError): void => { answered(err.status, { code: err.code, saturated: err.code === 'GATEWAY_SATURATED' && !err.detail?.shuttingDown }); sendError(res, err, refusalHeaders(ctx, err, false)); };

  const refusal = admitScan(ctx, 'wado');
  if (refusal) return refuse(refusal);

  const abort = new AbortController();
  const onClose = (): void => { if (!res.writableFinished) abort.abort(); };
  res.on('close', onClose);
  ctx.activeWado++;
  const held = ctx.runtimes.acquire();
  const rt = held.runtime;
  const created: StoredPart[] = [];
  try {
    let upstream;
    try {
      // identity: Warden re-emits the body anyway, and the parser must see the multipart bytes, not gzip
      upstream = await ctx.upstream.request('GET', path, { ...forwardableRequestHeaders(req), 'accept-encoding': 'identity' }, null, abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return;
      return refuse(isWardenError(err) ? WardenError.fromSerialized(err) : new WardenError('UPSTREAM_UNAVAILABLE', (err as Error).message));
    }
    const ct = parseMediaType(firstHeader(upstream.headers['content-type']));
    const scannable = upstream.statusCode === 200 && ct?.mediaType === 'multipart/related'
      && (ct.params.type ?? '').toLowerCase() === 'application/dicom' && Boolean(ct.params.boundary);
    if (!scannable) {
      // an error, or a representation Warden does not scan: relayed as it came
      answered(upstream.statusCode);
      res.status(upstream.statusCode);
      copyResponseHeaders(upstream.headers, res, true);
      try { await pipeline(upstream.body, res); } catch { res.destroy(); }
      return;
    }
    const source = decodedBody(upstream.body, String(firstHeader(upstream.headers['content-encoding']) ?? 'identity'));
    if (source instanceof WardenError) {
      upstream.body.destroy();
      return refuse(source);
    }

    let judged: JudgedBody;
    try {
      judged = await ingestAndJudge(ctx, rt, source, { boundary: ct.params.boundary, study: target.study, created });
    } catch (err) {
      if (abort.signal.aborted) return;
      const e = isWardenError(err) ? err : new WardenError('MULTIPART_MALFORMED', (err as Error).message);
      log.warn({ event: 'wado_rejected', code: e.code, status: e.code === 'BODY_TOO_LARGE' ? 413 : 502 }, e.message);
      return refuse(e.code === 'BODY_TOO_LARGE'
        ? new WardenError('BODY_TOO_LARGE', `The upstream WADO-RS response exceeds limits.maxBodyBytes (${ctx.config.limits.maxBodyBytes}).`)
        : new WardenError('UPSTREAM_ERROR', `The upstream WADO-RS response could not be read as multipart/related: ${e.message}`));
    }
    if (abort.signal.aborted) return;

    const kept = judged.parts.filter((p) => p.decision.verdict !== 'block');
    const withheld = judged.parts.length - kept.length;
    const flagged = kept.filter((p) => p.decision.verdict === 'flag').length;
    await reportDecisions(ctx, rt, { route: 'wado', requestId, client: principalOf(res).name, log, upstreamStatus: upstream.statusCode }, judged.parts, judged.studies,
      (p) => ({ forwarded: p.decision.verdict !== 'block' }));
    const flagHeader = ctx.config.upstream.flagHeader;
    const counts = { 'X-Warden-Instances': String(judged.parts.length), 'X-Warden-Withheld': String(withheld), ...(rt.bundleSha256 ? { 'X-Warden-Bundle': rt.bundleSha256 } : {}), ...(flagged && flagHeader ? { [flagHeader]: `count=${flagged}` } : {}) };
    const results = partResults(judged.parts, new Map(kept.map((p) => [p.index, { stored: true as const }])));
    const warnings = warningHeaders(results, (r) => r.part.decision.verdict !== 'forward' || r.part.decision.wouldBe !== undefined,
      (r) => (r.part.decision.verdict === 'block' ? `withheld: ${readable(r)}` : readable(r)),
      withheld > 0 ? `${withheld} of ${judged.parts.length} instances withheld by policy` : undefined);

    if (judged.parts.length > 0 && kept.length === 0) {
      answered(409, { code: 'INSTANCES_WITHHELD', bodyBytes: judged.bodyBytes });
      res.status(409).set({ ...counts, 'Content-Type': 'application/json' });
      res.setHeader('Warning', warnings);
      res.end(JSON.stringify({
        error: { code: 'INSTANCES_WITHHELD', message: `Warden withheld all ${judged.parts.length} retrieved instance(s) under its policy; nothing is returned.` },
        withheld: results.map((r) => ({ part: r.part.index + 1, sopInstanceUid: r.part.header?.sopInstanceUid, reason: readable(r) })),
      }));
      log.warn({ event: 'wado', status: 409, instances: judged.parts.length, withheld, ms: Math.round(performance.now() - t0) }, 'WADO-RS retrieve withheld entirely');
      return;
    }

    const status = withheld > 0 ? ctx.config.wado.partialStatus : 200;
    const multipart = multipartBody(kept.map((p) => ({
      headers: {
        'Content-Type': sanitizeHeader(p.partHeaders['content-type'] || 'application/dicom'),
        ...(p.partHeaders['content-location'] ? { 'Content-Location': sanitizeHeader(p.partHeaders['content-location']) } : {}),
        'Content-Length': String(p.stored.size),
        ...(flagHeader && p.decision.verdict === 'flag' ? { [flagHeader]: sanitizeHeader(formatReasons(p.decision.reasons).join('; ') || 'flagged') } : {}),
      },
      size: p.stored.size,
      stream: () => p.stored.stream(),
      // the part's bytes are no longer needed: free memory or the temp file now, not at the end
      done: () => p.stored.dispose(),
    })));
    answered(status, { bodyBytes: judged.bodyBytes });
    res.status(status).set({ ...counts, 'Content-Type': multipart.contentType, 'Content-Length': String(multipart.length) });
    if (warnings.length) res.setHeader('Warning', warnings);
    try {
      await pipeline(multipart.body(), res);
    } catch {
      res.destroy();
      return;
    }
    log.info({ event: 'wado', status, instances: judged.parts.length, withheld, flagged, bytes: multipart.length, ms: Math.round(performance.now() - t0) }, 'WADO-RS retrieve scanned');
  } catch (err) {
    log.error({ event: 'wado_failed', err: { message: (err as Error).message, stack: (err as Error).stack } }, 'WADO-RS scan failed');
    refuse(new WardenError('INTERNAL', 'An unexpected internal error while scanning the retrieve.'));
  } finally {
    ctx.activeWado--;
    held.release();
    res.off('close', onClose);
    abort.abort(); // releases the upstream connection if the body was not consumed
    await Promise.allSettled(created.map((s) => s.dispose()));
  }
}

/** The upstream body with its Content-Encoding undone, or a typed error for an encoding Warden cannot read. */
function decodedBody(body: Readable, contentEncoding: string): Readable | WardenError {
  const encoding = contentEncoding.trim().toLowerCase();
  if (encoding === 'identity' || encoding === '') return body;
  const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? zlib.createGunzip() : encoding === 'deflate' ? zlib.createInflate() : encoding === 'br' ? zlib.createBrotliDecompress() : null;
  if (!decoder) return new WardenError('UPSTREAM_ERROR', `The upstream answered the retrieve with Content-Encoding ${encoding}, which Warden cannot decode to scan it.`);
  body.on('error', (err) => decoder.destroy(err));
  return body.pipe(decoder);
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

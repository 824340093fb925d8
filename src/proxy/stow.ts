import type { Request, Response } from 'express';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { WardenError, isWardenError } from '../core/errors';
import { publish } from '../core/events';
import { admitScan, refusalHeaders, stowBoundary } from './admission';
import type { AppContext } from './context';
import { forwardStow } from './forward';
import { closeAfterAnswer, sendError } from './http-errors';
import { ingestAndJudge, rejectDuplicateInstances, type JudgedBody } from './judge';
import { principalOf } from './auth';
import { reportDecisions, type RequestFacts } from './report';
import { quarantineBlocked } from './trail';
import type { StoredPart } from './spool';
import { partResults, readable, stowBody, stowStatus, warningHeaders, type PartResult } from './stow-response';
import { publicBaseUrl } from './urls';

/**
 * STOW-RS interception (PS3.18 §10.5): admit → ingest and judge every part → forward the accepted parts' original
 * bytes in one upstream STOW-RS request → the PS3.18 answer (200 / 202 / 409; 502/503/504 when the upstream fails).
 */
export async function handleStow(ctx: AppContext, req: Request, res: Response, studyFromUrl: string | undefined): Promise<void> {
  const t0 = performance.now();
  const requestId = randomBytes(6).toString('hex');
  const log = ctx.logger.child({ requestId, route: 'stow' });
  const answered = (status: number, extra: { code?: string; bodyBytes?: number; stages?: Record<string, number>; saturated?: boolean } = {}): void =>
    publish('requestAnswered', { scope: ctx.scope, route: 'stow', status, ...extra });
  const refuse = (err: WardenError): void => {
    answered(err.status, { code: err.code, saturated: err.code === 'GATEWAY_SATURATED' && !err.detail?.shuttingDown });
    if (err.code === 'GATEWAY_SATURATED' && !err.detail?.shuttingDown) {
      log.warn({ event: 'saturated', activeStow: ctx.activeStow, waitingScans: ctx.scans.waiting }, 'STOW-RS request refused: scan limits reached');
    }
    sendError(res, err, refusalHeaders(ctx, err, true));
    closeAfterAnswer(req, res);
  };

  const refusal = admitScan(ctx, 'stow');
  if (refusal) return refuse(refusal);
  const media = stowBoundary(ctx, req);
  if (media instanceof WardenError) return refuse(media);

  ctx.activeStow++;
  const held = ctx.runtimes.acquire();
  const rt = held.runtime;
  const created: StoredPart[] = [];
  try {
    let judged: JudgedBody;
    try {
      judged = await ingestAndJudge(ctx, rt, req, { boundary: media.boundary, study: studyFromUrl, created });
      judged = { ...judged, ...rejectDuplicateInstances(rt, judged) };
      if (judged.parts.length === 0) return refuse(new WardenError('MULTIPART_MALFORMED', 'The multipart/related body contains no parts.'));
    } catch (err) {
      const e = isWardenError(err) ? err : new WardenError('MULTIPART_MALFORMED', `The multipart/related body could not be read: ${(err as Error).message}.`);
      log.warn({ event: 'stow_rejected', code: e.code, status: e.status }, e.message);
      return refuse(e);
    }
    const tScanned = performance.now();

    // the blocked instances' bytes go to quarantine while the accepted ones go upstream; both are done before the answer
    const keeping = ctx.trail
      ? quarantineBlocked(ctx.trail, judged.parts, (p, err) => {
        publish('error', { scope: ctx.scope, code: 'QUARANTINE_WRITE_FAILED' });
        log.error({ event: 'quarantine_failed', partIndex: p.index, message: (err as Error).message }, 'a blocked instance could not be kept in quarantine');
      })
      : Promise.resolve(new Set<number>());
    const accepted = judged.parts.filter((p) => p.decision.verdict !== 'block');
    const tf = performance.now();
    let forwardMs = 0;
    const forwarding = accepted.length > 0 ? forwardStow(ctx, req, accepted).finally(() => { forwardMs = performance.now() - tf; }) : Promise.resolve(null);
    const [forwarded, kept] = await Promise.all([forwarding, keeping]);
    const stages = { ingest: (judged.ingestedAt - t0) / 1000, ...(forwarded ? { forward: forwardMs / 1000 } : {}) };
    const timing = (): string => serverTiming(t0, judged.ingestedAt, tScanned, forwardMs);
    const facts = (upstreamStatus: number | null): RequestFacts => ({ route: 'stow', requestId, client: principalOf(res).name, log, upstreamStatus });

    if (forwarded?.kind === 'unavailable') {
      const results = partResults(judged.parts, 'all_failed');
      const failure = new Map(results.map((r) => [r.part.index, r.failureReason]));
      await reportDecisions(ctx, rt, facts(forwarded.upstreamStatus ?? null), judged.parts, judged.studies, (p) => ({ forwarded: false, failureReason: failure.get(p.index) }), kept);
      answered(forwarded.status, { bodyBytes: judged.bodyBytes, stages });
      log.error({ event: 'upstream_unavailable', status: forwarded.status, upstreamStatus: forwarded.upstreamStatus, instances: results.length }, forwarded.message);
      res.setHeader('Server-Timing', timing());
      if (rt.bundleSha256) res.setHeader('X-Warden-Bundle', rt.bundleSha256);
      res.status(forwarded.status).set({ 'Content-Type': 'application/dicom+json', ...(forwarded.retryAfter ? { 'Retry-After': forwarded.retryAfter } : {}) });
      res.end(JSON.stringify(stowBody(results, publicBaseUrl(ctx, req), forwarded.message)));
      return;
    }

    const results: PartResult[] = partResults(judged.parts, forwarded?.outcomes ?? new Map());
    const storedIndex = new Set(results.filter((r) => r.stored).map((r) => r.part.index));
    const failure = new Map(results.map((r) => [r.part.index, r.failureReason]));
    await reportDecisions(ctx, rt, facts(forwarded?.status ?? null), judged.parts, judged.studies, (p) => ({ forwarded: storedIndex.has(p.index), failureReason: failure.get(p.index) }), kept);
    const status = stowStatus(results, ctx.config.stow.warningsAs202);
    answered(status, { bodyBytes: judged.bodyBytes, stages });
    const warnings = warningHeaders(results, (r) => r.part.decision.verdict !== 'forward' || r.part.decision.wouldBe !== undefined || !r.stored, readable);
    if (warnings.length) res.setHeader('Warning', warnings);
    res.setHeader('Server-Timing', timing());
    if (rt.bundleSha256) res.setHeader('X-Warden-Bundle', rt.bundleSha256);
    res.status(status).setHeader('Content-Type', 'application/dicom+json');
    res.end(JSON.stringify(stowBody(results, publicBaseUrl(ctx, req))));
    log.info({
      event: 'stow', status, upstreamStatus: forwarded?.status ?? null, instances: results.length, stored: storedIndex.size,
      flagged: results.filter((r) => r.stored && r.part.decision.verdict === 'flag').length,
      blocked: results.filter((r) => r.part.decision.verdict === 'block').length, studies: judged.studies.length, bytes: judged.bodyBytes,
      ms: Math.round(performance.now() - t0),
    }, 'STOW-RS answered');
  } catch (err) {
    log.error({ event: 'stow_failed', err: { message: (err as Error).message, stack: (err as Error).stack } }, 'STOW-RS failed');
    refuse(new WardenError('INTERNAL', 'An unexpected internal error; nothing was claimed stored.'));
  } finally {
    ctx.activeStow--;
    held.release();
    await Promise.allSettled(created.map((s) => s.dispose()));
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

import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import { WardenError, isWardenError } from '../core/errors';
import { publish } from '../core/events';
import { createReviewRouter } from '../review';
import type { WardenConfig } from '../config';
import { principalOf, requireRole } from './auth';
import { forwardInstance } from './forward';
import type { AppContext, AppDeps } from './context';
import { lingeringClose, sendError } from './http-errors';
import { handlePassThrough } from './passthrough';
import { canonicalPaths, isDicomwebResource } from './paths';
import { MemoryBudget } from './spool';
import { Semaphore } from './semaphore';
import { handleStow } from './stow';
import { handleWadoScan } from './wado';

export interface WardenApp {
  app: Express;
  ctx: AppContext;
}

/**
 * The app factory: the routes. Every singleton comes in through `deps`; the app is returned not yet listening
 * (src/proxy/server.ts creates the deps, listens and shuts down).
 */
export function buildApp(config: WardenConfig, deps: AppDeps): WardenApp {
  const ctx: AppContext = {
    ...deps,
    config,
    scans: new Semaphore(config.limits.maxConcurrentScans, config.limits.scanMemoryBytes),
    budget: new MemoryBudget(config.limits.memoryBudgetBytes),
    activeStow: 0,
    activeWado: 0,
    inflight: {},
    shuttingDown: false,
  };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(lingeringClose());
  app.use(helmet({ contentSecurityPolicy: false, crossOriginResourcePolicy: false }));
  app.use(canonicalPaths());

  const track = (route: string) => (req: Request, res: Response, next: NextFunction): void => {
    ctx.inflight[route] = (ctx.inflight[route] ?? 0) + 1;
    let done = false;
    const socket = req.socket;
    const end = (): void => { if (!done) { done = true; ctx.inflight[route]--; socket.off('close', end); } };
    res.on('finish', end);
    res.on('close', end);
    // a request pipelined behind one whose connection then closed never gets its response's 'close' (its response
    // was queued, never attached to the socket): the socket's own 'close' ends it (found by the fault suite)
    socket.once('close', end);
    next();
  };

  app.get('/healthz', (_req, res) => { res.json({ status: 'ok' }); });
  let readyCache: { at: number; upstream: boolean } | null = null;
  app.get('/readyz', async (_req, res) => {
    if (!readyCache || Date.now() - readyCache.at > 2000) readyCache = { at: Date.now(), upstream: await deps.upstream.ping() };
    const model = Boolean(deps.runtimes.current.scanner.modelSha256);
    const ready = model && readyCache.upstream && !ctx.shuttingDown;
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not ready', model, upstream: readyCache.upstream, shuttingDown: ctx.shuttingDown,
      ...(deps.securityWarnings.length ? { warnings: deps.securityWarnings } : {}),
    });
  });
  const role = (r: Parameters<typeof requireRole>[1], route: string, basic = false) => requireRole(deps.credentials, r, { scope: deps.scope, route, basic });
  app.get('/metrics', track('metrics'), role('metrics', 'metrics'), async (_req, res) => {
    const page = await deps.metricsPage();
    res.set('Content-Type', page.contentType).send(page.text);
  });

  if (deps.trail) {
    const trail = deps.trail;
    app.use('/ui', track('ui'), role('reviewer', 'ui', true), createReviewRouter({
      audit: trail.audit,
      quarantine: trail.quarantine,
      forward: (bytes) => forwardInstance(ctx, bytes),
      actor: (req) => principalOf(req.res!).name,
      calibration: (detector) => deps.runtimes.current.calibration?.(detector) ?? null,
      onError: (err) => deps.logger.error({ event: 'review_failed', message: (err as Error).message }, 'review page error'),
      onAction: (a) => {
        publish('reviewAction', { scope: deps.scope, action: a.action, recordId: a.id, actor: a.actor, outcome: a.outcome, upstreamStatus: a.upstreamStatus ?? null,
          ...(a.record ? { studyHash: a.record.studyHash, sopHash: a.record.sopHash } : {}) });
        deps.logger.warn({ event: `quarantine_${a.action}`, recordId: a.id, actor: a.actor, outcome: a.outcome, upstreamStatus: a.upstreamStatus ?? null }, `quarantined instance ${a.action === 'release' ? 'released' : 'discarded'}`);
      },
    }));
  }

  app.post('/admin/reload', track('admin'), role('admin', 'admin'), async (_req, res) => {
    if (!deps.reload) { sendError(res, new WardenError('NOT_FOUND', 'This gateway cannot reload.')); return; }
    try {
      res.json({ status: 'reloaded', ...(await deps.reload()) });
    } catch (err) {
      sendError(res, isWardenError(err) ? WardenError.fromSerialized(err) : new WardenError('INTERNAL', 'The reload failed.'));
    }
  });

  const base = config.server.basePath;
  const dicomweb = express.Router({ caseSensitive: true });
  dicomweb.use(role('sender', 'dicomweb'));
  dicomweb.post('/studies', track('stow'), (req, res) => handleStow(ctx, req, res, undefined));
  dicomweb.post('/studies/:study', track('stow'), (req, res) => handleStow(ctx, req, res, String(req.params.study)));
  dicomweb.use(track('qido_wado'), (req, res) => {
    if (!isDicomwebResource(req.url)) {
      // only DICOMweb resources reach the upstream, never the rest of its API (and never with upstream.headers)
      sendError(res, new WardenError('NOT_FOUND', `Not a DICOMweb resource; Warden passes on ${base}/studies, ${base}/series and ${base}/instances only.`));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(res, new WardenError('METHOD_NOT_ALLOWED', `${req.method} is not supported here; STOW-RS is POST ${base}/studies[/{study}], QIDO-RS and WADO-RS are GET.`), { Allow: 'GET, HEAD' });
      return;
    }
    return config.wado.scan ? handleWadoScan(ctx, req, res) : handlePassThrough(ctx, req, res);
  });
  app.use(base, dicomweb);

  app.use((_req: Request, res: Response) => { sendError(res, new WardenError('NOT_FOUND', `Not found; DICOMweb lives under ${base}.`)); });
  app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
    void _next;
    publish('error', { scope: deps.scope, code: 'INTERNAL' });
    deps.logger.error({ event: 'unhandled', err: { message: err.message, stack: err.stack } }, 'unhandled error');
    sendError(res, new WardenError('INTERNAL', 'An unexpected internal error.'));
  });
  return { app, ctx };
}

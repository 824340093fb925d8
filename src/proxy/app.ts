import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import type { WardenConfig } from '../config';
import { bearerAuth } from './auth';
import type { AppContext, AppDeps } from './context';
import { handlePassThrough } from './passthrough';
import { MemoryBudget, defaultSpoolDir } from './spool';
import { Semaphore } from './semaphore';
import { handleStow, sendError } from './stow';
import { handleWadoScan } from './wado';

export interface WardenApp {
  app: Express;
  ctx: AppContext;
}

/**
 * The app factory: every singleton comes in through `deps`; the app is returned not yet listening
 * (src/proxy/server.ts is the composition root that creates the deps and listens).
 */
export function buildApp(config: WardenConfig, deps: AppDeps): WardenApp {
  const ctx: AppContext = {
    ...deps,
    config,
    policy: deps.scanner.policy ?? config.policy,
    scans: new Semaphore(config.limits.maxConcurrentScans, config.limits.scanMemoryBytes),
    budget: new MemoryBudget(config.limits.memoryBudgetBytes),
    spoolDir: config.stow.spoolDir ?? defaultSpoolDir(),
    activeStow: 0,
    activeWado: 0,
    shuttingDown: false,
  };
  const { metrics } = deps;
  metrics.modelInfo.set({
    model_sha256: deps.scanner.modelSha256,
    provider: deps.scanner.provider,
    bundle_sha256: deps.bundleSha256 ?? (deps.scanner.bundle ? 'unknown' : 'none'),
    detectors: (deps.scanner.bundle?.names ?? []).join(','),
    version: '0.1.0',
  }, 1);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(helmet({ contentSecurityPolicy: false, crossOriginResourcePolicy: false }));

  const track = (route: string) => (req: Request, res: Response, next: NextFunction): void => {
    metrics.inflight.inc({ route });
    let done = false;
    const end = (): void => { if (!done) { done = true; metrics.inflight.dec({ route }); } };
    res.on('finish', end);
    res.on('close', end);
    next();
  };

  app.get('/healthz', (_req, res) => { res.json({ status: 'ok' }); });
  let readyCache: { at: number; upstream: boolean } | null = null;
  app.get('/readyz', async (_req, res) => {
    if (!readyCache || Date.now() - readyCache.at > 2000) readyCache = { at: Date.now(), upstream: await deps.upstream.ping() };
    const model = Boolean(deps.scanner.modelSha256);
    const ready = model && readyCache.upstream && !ctx.shuttingDown;
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', model, upstream: readyCache.upstream, shuttingDown: ctx.shuttingDown });
  });
  app.get('/metrics', track('metrics'), bearerAuth(config.auth.metricsToken, 'metrics'), async (_req, res) => {
    res.set('Content-Type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  const base = config.server.basePath;
  const dicomweb = express.Router();
  dicomweb.use(bearerAuth(config.auth.dicomwebToken, 'DICOMweb'));
  dicomweb.post('/studies', track('stow'), (req, res) => handleStow(ctx, req, res, undefined));
  dicomweb.post('/studies/:study', track('stow'), (req, res) => handleStow(ctx, req, res, String(req.params.study)));
  dicomweb.use(track('qido_wado'), (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.set('Allow', 'GET, HEAD');
      sendError(res, 405, 'USAGE', `${req.method} is not supported here; STOW-RS is POST ${base}/studies[/{study}], QIDO-RS and WADO-RS are GET.`);
      return;
    }
    return config.wado.scan ? handleWadoScan(ctx, req, res) : handlePassThrough(ctx, req, res);
  });
  app.use(base, dicomweb);

  app.use((_req: Request, res: Response) => { sendError(res, 404, 'USAGE', `Not found; DICOMweb lives under ${base}.`); });
  app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
    void _next;
    metrics.errors.inc({ code: 'INTERNAL' });
    deps.logger.error({ event: 'unhandled', err: { message: err.message, stack: err.stack } }, 'unhandled error');
    sendError(res, 500, 'INTERNAL', 'An unexpected internal error.');
  });
  return { app, ctx };
}

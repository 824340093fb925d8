import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import type pino from 'pino';
import type { WardenConfig } from '../config';
import { DEFAULT_BUNDLE_PATH, DEFAULT_MODEL_PATH } from '../core/defaults';
import { createMetrics, type WardenMetrics } from '../metrics';
import { ScanPipeline } from '../pipeline';
import { buildApp, type WardenApp } from './app';
import type { AppDeps, Scanner } from './context';
import { createLogger } from './logger';
import { createUpstreamClient } from './upstream';

/**
 * The composition root: builds every singleton (logger, metrics registry, scan pipeline, upstream pool),
 * hands them to buildApp, listens, and shuts down gracefully (in-flight requests finish) on close().
 */
export interface RunningServer {
  server: http.Server;
  url: string;
  port: number;
  wardenApp: WardenApp;
  deps: AppDeps;
  /** Stops accepting, lets in-flight requests finish (up to server.shutdownGraceMs), then releases everything. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Inject a scanner (tests); default: ScanPipeline.create from config.model. */
  scanner?: Scanner;
  logger?: pino.Logger;
  metrics?: WardenMetrics;
}

export async function startServer(config: WardenConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger(config.logging.level);
  let scanner = opts.scanner;
  let bundleSha256: string | undefined;
  if (!scanner) {
    const modelPath = config.model.path ?? DEFAULT_MODEL_PATH;
    const bundlePath = config.model.bundle ?? (config.model.path ? null : DEFAULT_BUNDLE_PATH);
    const pipeline = await ScanPipeline.create({
      modelPath,
      bundlePath: bundlePath && fs.existsSync(bundlePath) ? bundlePath : (config.model.bundle ?? null),
      providers: config.model.provider === 'auto' ? ['cuda', 'cpu'] : config.model.provider === 'cpu' ? ['cpu'] : [config.model.provider, 'cpu'],
      workers: config.model.workers,
      threadsPerWorker: config.model.threadsPerWorker ?? undefined,
      spinWait: config.model.spinWait,
      policy: config.policy,
      timeoutMs: config.limits.scanTimeoutMs,
      maxQueue: Math.max(config.limits.maxQueuedScans, config.limits.maxConcurrentScans),
      logger,
    });
    scanner = pipeline;
    if (pipeline.bundle && bundlePath) bundleSha256 = sha256File(bundlePath);
    logger.info({ event: 'model_loaded', modelSha256: pipeline.modelSha256, provider: pipeline.provider, detectors: pipeline.bundle?.names ?? [], bundleSha256 }, 'model and detector bundle loaded');
    if (!pipeline.bundle) logger.warn({ event: 'no_bundle' }, 'no detector bundle: instances are scanned but every verdict is forward');
  }
  const metrics = opts.metrics ?? createMetrics({ queueDepth: () => scanner!.queueDepth() });
  const upstream = createUpstreamClient(config.upstream, metrics);
  const deps: AppDeps = { scanner, metrics, logger, upstream, bundleSha256 };
  const wardenApp = buildApp(config, deps);
  const server = http.createServer({ keepAliveTimeout: config.server.keepAliveTimeoutMs, requestTimeout: 0 }, wardenApp.app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.server.port, config.server.host, () => { server.off('error', reject); resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  const url = `http://${host}:${port}`;
  logger.info({ event: 'listening', url, basePath: config.server.basePath, upstream: upstream.origin + upstream.basePath }, 'warden listening');

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      wardenApp.ctx.shuttingDown = true;
      logger.info({ event: 'shutdown', inflightStow: wardenApp.ctx.activeStow }, 'shutting down: finishing in-flight requests');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => { server.closeAllConnections(); }, config.server.shutdownGraceMs);
      timer.unref();
      const idle = setInterval(() => server.closeIdleConnections(), 200);
      idle.unref();
      await closed;
      clearTimeout(timer);
      clearInterval(idle);
      await upstream.close().catch(() => {});
      if (!opts.scanner) await scanner!.close().catch(() => {});
      logger.info({ event: 'stopped' }, 'warden stopped');
    })();
    return closing;
  };
  return { server, url, port, wardenApp, deps, close };
}

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

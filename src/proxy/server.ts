import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type pino from 'pino';
import { createScope, type EventScope } from '../core/events';
import { createLogger } from '../core/logger';
import type { WardenConfig } from '../config';
import { createMetrics, subscribeMetrics, type WardenMetrics } from '../metrics';
import { compose, runtimeOptionsFromConfig } from '../pipeline';
import { buildApp, type WardenApp } from './app';
import type { AppDeps, Scanner } from './context';
import { createUpstreamClient } from './upstream';

/**
 * The gateway's composition root: builds every singleton (logger, telemetry scope and metrics, the scan pipeline
 * through compose(), the upstream pool), hands them to buildApp, listens, and shuts down gracefully (in-flight
 * requests finish) on close().
 */
export interface RunningServer {
  server: http.Server;
  url: string;
  port: number;
  wardenApp: WardenApp;
  deps: AppDeps;
  metrics: WardenMetrics;
  /** Stops accepting, lets in-flight requests finish (up to server.shutdownGraceMs), then releases everything. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Inject a scanner (tests); default: compose() from config.model and config.policy. */
  scanner?: Scanner;
  logger?: pino.Logger;
}

export async function startServer(config: WardenConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger(config.logging.level);
  const scope: EventScope = createScope();
  let scanner: Scanner;
  let bundleSha256: string | undefined;
  if (opts.scanner) {
    scanner = opts.scanner;
  } else {
    const runtime = await compose({ ...runtimeOptionsFromConfig(config), logger, scope });
    scanner = runtime.pipeline;
    bundleSha256 = runtime.bundleSha256;
    logger.info({ event: 'model_loaded', modelSha256: runtime.model.sha256, provider: runtime.pipeline.provider, detectors: runtime.bundle?.names ?? [], bundleSha256 }, 'model and detector bundle loaded');
    if (!runtime.bundle) logger.warn({ event: 'no_bundle' }, 'no detector bundle: instances are scanned but every verdict is forward');
  }
  const upstream = createUpstreamClient(config.upstream, scope);
  let wardenApp: WardenApp | undefined;
  const metrics = createMetrics({
    queueDepth: () => scanner.queueDepth(),
    activeScans: () => (wardenApp ? wardenApp.ctx.scans.active + wardenApp.ctx.scans.waiting : 0),
    inflight: () => wardenApp?.ctx.inflight ?? {},
  });
  const unsubscribe = subscribeMetrics(metrics, scope);
  metrics.modelInfo.set({
    model_sha256: scanner.modelSha256,
    provider: scanner.provider,
    bundle_sha256: bundleSha256 ?? (scanner.bundle ? 'unknown' : 'none'),
    detectors: (scanner.bundle?.names ?? []).join(','),
    version: '0.1.0',
  }, 1);
  const deps: AppDeps = {
    scanner, logger, upstream, scope,
    metricsPage: async () => ({ contentType: metrics.registry.contentType, text: await metrics.registry.metrics() }),
  };
  wardenApp = buildApp(config, deps);
  const server = http.createServer({ keepAliveTimeout: config.server.keepAliveTimeoutMs, requestTimeout: 0 }, wardenApp.app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.server.port, config.server.host, () => { server.off('error', reject); resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  const url = `http://${host}:${port}`;
  logger.info({ event: 'listening', url, basePath: config.server.basePath, upstream: upstream.origin + upstream.basePath }, 'warden listening');

  const ctx = wardenApp.ctx;
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      ctx.shuttingDown = true;
      logger.info({ event: 'shutdown', inflightStow: ctx.activeStow }, 'shutting down: finishing in-flight requests');
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
      if (!opts.scanner) await scanner.close().catch(() => {});
      unsubscribe();
      logger.info({ event: 'stopped' }, 'warden stopped');
    })();
    return closing;
  };
  return { server, url, port, wardenApp, deps, metrics, close };
}

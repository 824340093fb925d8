import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type pino from 'pino';
import { WardenError, type ErrorCode } from '../core/errors';
import { createScope, type EventScope } from '../core/events';
import { createLogger } from '../core/logger';
import { resolveUidHashKey, type WardenConfig } from '../config';
import { setUidHashKey } from '../dicom';
import { createMetrics, subscribeMetrics, type WardenMetrics } from '../metrics';
import { compose, runtimeOptionsFromConfig } from '../pipeline';
import { buildApp, type WardenApp } from './app';
import type { AppDeps, Scanner } from './context';
import { prepareSpoolDir } from './spool';
import { createUpstreamClient } from './upstream';

/**
 * The gateway's composition root: builds every singleton (logger, telemetry scope and metrics, the scan pipeline
 * through compose(), the upstream pool, the spool directory), hands them to buildApp, listens, and shuts down
 * gracefully (in-flight requests finish, then the spool directory is removed) on close().
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

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export async function startServer(config: WardenConfig, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = opts.logger ?? createLogger(config.logging.level);
  const scope: EventScope = createScope();
  const options = runtimeOptionsFromConfig(config);
  setUidHashKey(options.uidHashKey!);
  const spool = prepareSpoolDir(config.stow.spoolDir ?? undefined);
  const removeSpoolAtExit = (): void => spool.cleanup();
  process.once('exit', removeSpoolAtExit);
  if (spool.removedStale) logger.warn({ event: 'spool_stale_removed', directories: spool.removedStale }, 'removed spool directories left by processes that are gone');

  let scanner: Scanner;
  let bundleSha256: string | undefined;
  if (opts.scanner) {
    scanner = opts.scanner;
  } else {
    const runtime = await compose({ ...options, logger, scope });
    scanner = runtime.pipeline;
    bundleSha256 = runtime.bundleSha256;
    logger.info({ event: 'model_loaded', modelSha256: runtime.model.sha256, provider: runtime.pipeline.provider, detectors: runtime.bundle?.names ?? [], bundleSha256 }, 'model and detector bundle loaded');
    if (!runtime.bundle) logger.warn({ event: 'no_bundle' }, 'no detector bundle: instances are scanned but every verdict is forward');
  }
  const securityWarnings: string[] = [];
  if (!LOOPBACK.test(config.server.host) && !config.auth.dicomwebToken) {
    securityWarnings.push(`listening on ${config.server.host} (beyond loopback) without auth.dicomwebToken: anyone who reaches the port can send and retrieve studies`);
  }
  if (!LOOPBACK.test(config.server.host) && !config.auth.metricsToken) {
    securityWarnings.push(`listening on ${config.server.host} (beyond loopback) without auth.metricsToken: /metrics is open`);
  }
  for (const w of securityWarnings) logger.warn({ event: 'security_warning' }, w);

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
  metrics.securityWarnings.set({ warning: 'no_dicomweb_auth_beyond_loopback' }, securityWarnings.some((w) => w.includes('dicomwebToken')) ? 1 : 0);
  metrics.securityWarnings.set({ warning: 'no_metrics_auth_beyond_loopback' }, securityWarnings.some((w) => w.includes('metricsToken')) ? 1 : 0);
  const deps: AppDeps = {
    scanner, logger, upstream, scope, spoolDir: spool.dir, securityWarnings,
    metricsPage: async () => ({ contentType: metrics.registry.contentType, text: await metrics.registry.metrics() }),
  };
  wardenApp = buildApp(config, deps);
  const server = http.createServer({
    keepAliveTimeout: config.server.keepAliveTimeoutMs,
    requestTimeout: config.server.requestTimeoutMs,
    headersTimeout: Math.min(config.server.headersTimeoutMs, config.server.requestTimeoutMs),
  }, wardenApp.app);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(err, socket));
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
      spool.cleanup();
      process.off('exit', removeSpoolAtExit);
      logger.info({ event: 'stopped' }, 'warden stopped');
    })();
    return closing;
  };
  return { server, url, port, wardenApp, deps, metrics, close };
}

/**
 * A request Node's HTTP parser cannot read (conflicting Content-Length and Transfer-Encoding, a Content-Length that
 * lies, bad header syntax) or that did not arrive in time: answered with Warden's JSON error body, then closed.
 */
const answeredSockets = new WeakSet<Socket>();

function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  // Node's parser reports the same error again for every later chunk the client sends: the answer is already going
  // out, and destroying the socket now would reset the connection before the client has read it.
  if (answeredSockets.has(socket)) return;
  if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return; }
  answeredSockets.add(socket);
  const code: ErrorCode = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : 'HTTP_MALFORMED';
  const e = new WardenError(code, code === 'REQUEST_TIMEOUT'
    ? 'The request did not arrive within server.requestTimeoutMs / server.headersTimeoutMs.'
    : 'The HTTP request is malformed (framing or headers); the connection is closed.');
  const body = JSON.stringify({ error: { code: e.code, message: e.message } });
  const reason = e.status === 408 ? 'Request Timeout' : 'Bad Request';
  socket.end(`HTTP/1.1 ${e.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  // what the client still sends is read and dropped for a moment (a lingering close), then the socket goes
  const timer = setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

const CLIENT_ERROR_LINGER_MS = 1000;

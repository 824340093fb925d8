import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type pino from 'pino';
import { WardenError, isWardenError, type ErrorCode } from '../core/errors';
import { createScope, type EventScope } from '../core/events';
import { createLogger } from '../core/logger';
import { resolveUidHashKey, type WardenConfig } from '../config';
import { setUidHashKey } from '../dicom';
import { DriftWatch, createMetrics, subscribeMetrics, type WardenMetrics } from '../metrics';
import { compose, runtimeOptionsFromConfig, type RuntimeOptions } from '../pipeline';
import { unreachableThresholds } from '../policy';
import { buildApp, type WardenApp } from './app';
import type { AppDeps, ReloadResult, ScanRuntime, Scanner } from './context';
import { RuntimeSlot } from './runtime-slot';
import { prepareSpoolDir } from './spool';
import { createUpstreamClient } from './upstream';
import { Credentials } from './auth';
import { openTrail } from './trail';
import { startAlerts } from '../alerts';
import { bundleCalibration } from '../review';

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
  /** Hot reload of the bundle and policy (what SIGHUP and POST /admin/reload do). @throws RELOAD_REFUSED */
  reload(): Promise<ReloadResult>;
}

export interface StartOptions {
  /** Inject a scanner (tests); default: compose() from config.model and config.policy. */
  scanner?: Scanner;
  logger?: pino.Logger;
  /** Run without the audit store and quarantine (tests of other parts); default false: the trail is on. */
  withoutTrail?: boolean;
  /** Where the JSON-lines security events go when alerts.events is on; default stdout, null = nowhere (tests). */
  eventStream?: NodeJS.WritableStream | null;
  /** Reads the configuration again for a hot reload (the CLI passes its file + environment); default: the same. */
  reloadConfig?: () => WardenConfig;
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

  const credentials = Credentials.fromConfig(config.auth);
  const initial = opts.scanner
    ? { scanner: opts.scanner, policy: opts.scanner.policy, close: async () => undefined }
    : await composeRuntime({ ...options, logger, scope }, logger);
  const runtimes = new RuntimeSlot(initial);
  const securityWarnings: string[] = [];
  if (!LOOPBACK.test(config.server.host) && !credentials.hasRole('sender')) {
    securityWarnings.push(`listening on ${config.server.host} (beyond loopback) without auth.dicomwebToken (or a sender token): anyone who reaches the port can send and retrieve studies`);
  }
  if (!LOOPBACK.test(config.server.host) && !credentials.hasRole('metrics')) {
    securityWarnings.push(`listening on ${config.server.host} (beyond loopback) without auth.metricsToken (or a metrics token): /metrics is open`);
  }
  for (const w of securityWarnings) logger.warn({ event: 'security_warning' }, w);

  const trail = opts.withoutTrail ? undefined : await openTrail(config, logger);
  if (trail) logger.info({ event: 'trail_open', audit: trail.location, quarantine: trail.quarantine.dir }, 'audit store and quarantine ready');
  const upstream = createUpstreamClient(config.upstream, scope);
  const w = config.alerts.webhook;
  const alerts = startAlerts({
    scope,
    lines: config.alerts.events ? (opts.eventStream === undefined ? process.stdout : opts.eventStream) : null,
    webhook: w.url ? { url: w.url, secret: w.secret, secretFile: w.secretFile, events: w.events, retries: w.retries, backoffMs: w.backoffMs, timeoutMs: w.timeoutMs } : null,
    deadLetter: async (event, target, attempts, lastError, lastStatus) => {
      metrics.deadLetters.inc();
      logger.error({ event: 'alert_undelivered', type: event.type, id: event.id, attempts, lastError, lastStatus }, 'a security event could not be delivered to the webhook');
      await trail?.audit.recordDeadLetter({ channel: 'webhook', eventType: event.type, target, payload: event, attempts, lastError, lastStatus, decisionId: event.recordId ?? null })
        .catch((err) => logger.error({ event: 'dead_letter_failed', message: (err as Error).message }, 'the dead letter could not be recorded'));
    },
  });
  let wardenApp: WardenApp | undefined;
  const drift = new DriftWatch(1000);
  // the quarantine walks its directory to measure it: once per few seconds is plenty for a scrape
  let usage: { at: number; value: Promise<{ bytes: number; count: number; freeBytes: number } | null> } | null = null;
  const quarantineUsage = () => {
    if (!trail) return Promise.resolve(null);
    if (!usage || Date.now() - usage.at > 5000) usage = { at: Date.now(), value: trail.quarantine.usage().catch(() => null) };
    return usage.value;
  };
  const metrics = createMetrics({
    drift: () => drift.readings(),
    quarantine: quarantineUsage,
    queueDepth: () => runtimes.current.scanner.queueDepth(),
    activeScans: () => (wardenApp ? wardenApp.ctx.scans.active + wardenApp.ctx.scans.waiting : 0),
    inflight: () => wardenApp?.ctx.inflight ?? {},
  });
  const unsubscribe = subscribeMetrics(metrics, scope, { drift, policy: () => runtimes.current.policy });
  const showModel = (rt: ScanRuntime): void => {
    metrics.modelInfo.reset();
    metrics.modelInfo.set({
      model_sha256: rt.scanner.modelSha256,
      provider: rt.scanner.provider,
      bundle_sha256: rt.bundleSha256 ?? (rt.scanner.bundle ? 'unknown' : 'none'),
      detectors: (rt.scanner.bundle?.names ?? []).join(','),
      version: '0.1.0',
    }, 1);
  };
  showModel(initial);
  metrics.securityWarnings.set({ warning: 'no_dicomweb_auth_beyond_loopback' }, securityWarnings.some((w) => w.includes('dicomwebToken')) ? 1 : 0);
  metrics.securityWarnings.set({ warning: 'no_metrics_auth_beyond_loopback' }, securityWarnings.some((w) => w.includes('metricsToken')) ? 1 : 0);
  /**
   * Hot reload: a new runtime from the configuration (re-read when the server was given a way to), checked (the
   * bundle binds to the model and can reach the policy's thresholds) before it is swapped in; requests in flight
   * finish with the old one, which is closed once they have. On any failure the old one stays and the error says why.
   */
  let reloading: Promise<ReloadResult> | null = null;
  const reload = (): Promise<ReloadResult> => {
    reloading ??= (async () => {
      const fresh = opts.reloadConfig ? opts.reloadConfig() : config;
      let next: ScanRuntime & { close(): Promise<void> };
      try {
        next = await composeRuntime({ ...runtimeOptionsFromConfig(fresh), logger, scope }, logger, { strict: true });
      } catch (err) {
        logger.error({ event: 'reload_refused', code: isWardenError(err) ? err.code : 'INTERNAL', message: (err as Error).message }, 'reload refused: the runtime in use stays');
        throw new WardenError('RELOAD_REFUSED', `The new bundle or policy was refused; the one in use stays. ${(err as Error).message}`, { cause: err });
      }
      const previous = runtimes.current;
      // the old runtime's pool closes once the last request holding it has finished
      void runtimes.swap(next).then((old) => (old as typeof next).close?.()).catch(() => undefined);
      showModel(next);
      logger.info({ event: 'reloaded', bundleSha256: next.bundleSha256 ?? null, previousBundleSha256: previous.bundleSha256 ?? null }, 'bundle and policy reloaded');
      return { bundleSha256: next.bundleSha256 ?? null, modelSha256: next.scanner.modelSha256, detectors: next.scanner.bundle?.names ?? [] };
    })().finally(() => { reloading = null; });
    return reloading;
  };
  const deps: AppDeps = {
    runtimes, logger, upstream, scope, spoolDir: spool.dir, securityWarnings, credentials, trail, reload,
    metricsPage: async () => ({ contentType: metrics.registry.contentType, text: await metrics.registry.metrics() }),
  };
  wardenApp = buildApp(config, deps);
  const serverOptions = {
    keepAliveTimeout: config.server.keepAliveTimeoutMs,
    requestTimeout: config.server.requestTimeoutMs,
    headersTimeout: Math.min(config.server.headersTimeoutMs, config.server.requestTimeoutMs),
  };
  const { cert, key } = config.server.tls;
  const server: http.Server = cert && key
    ? https.createServer({ ...serverOptions, cert: readPem(cert, 'server.tls.cert'), key: readPem(key, 'server.tls.key') }, wardenApp.app)
    : http.createServer(serverOptions, wardenApp.app);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => answerClientError(err, socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.server.port, config.server.host, () => { server.off('error', reject); resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  const url = `${cert ? 'https' : 'http'}://${host}:${port}`;
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
      await (runtimes.current as ScanRuntime & { close?: () => Promise<void> }).close?.().catch(() => {});
      await alerts.close().catch(() => {});
      await trail?.close().catch(() => {});
      unsubscribe();
      spool.cleanup();
      process.off('exit', removeSpoolAtExit);
      logger.info({ event: 'stopped' }, 'warden stopped');
    })();
    return closing;
  };
  return { server, url, port, wardenApp, deps, metrics, close, reload };
}

/** A runtime from compose(), as the gateway holds it. `strict` (reloads): thresholds the bundle cannot reach refuse it. */
async function composeRuntime(options: RuntimeOptions, logger: pino.Logger, { strict = false } = {}): Promise<ScanRuntime & { close(): Promise<void> }> {
  const runtime = await compose(options);
  const { pipeline, bundle, bundleSha256 } = runtime;
  if (strict && bundle?.detectors) {
    const m = runtime.model.manifest;
    const floors = Object.fromEntries(m.classes.map((label, c) => [label, Object.fromEntries(Object.entries(bundle.detectors!).filter(([, d]) => d.calibrated).map(([id, d]) => [id, d.pValueFloor(c)]))]));
    const problems = unreachableThresholds(runtime.policy, floors);
    if (problems.length) {
      await runtime.close();
      throw new WardenError('BUNDLE_INVALID', problems.join(' '));
    }
  }
  logger.info({ event: 'model_loaded', modelSha256: runtime.model.sha256, provider: pipeline.provider, detectors: bundle?.names ?? [], bundleSha256 }, 'model and detector bundle loaded');
  if (!bundle) logger.warn({ event: 'no_bundle' }, 'no detector bundle: instances are scanned but every verdict is forward');
  return {
    scanner: pipeline, policy: runtime.policy, bundleSha256, ...(bundle ? { calibration: bundleCalibration(bundle) } : {}),
    close: () => runtime.close(),
  };
}

function readPem(file: string, key: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new WardenError('CONFIG_INVALID', `${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
  }
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

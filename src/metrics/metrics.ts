import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DriftReading } from './drift';

/**
 * Every metric the gateway exports, on its own Registry (never prom-client's global one). Label values are
 * drawn from small closed sets (routes, verdicts, stage names, detector names, HTTP methods and statuses, error
 * codes); no label ever carries a UID, a patient attribute or a free-form string. docs/metrics.md lists them.
 * Nothing outside src/metrics updates a metric: ./subscribe.ts turns the stages' events into observations, and the
 * gauges read their values at scrape time.
 */
export interface WardenMetrics {
  readonly registry: Registry;
  /** Instances by route (stow, wado) and final verdict (after the study rule). */
  instances: Counter<'route' | 'verdict'>;
  /** Instances not scanned, by reason (out_of_scope | not_an_image). Also counted in instances{verdict="forward"}. */
  unscanned: Counter<'reason'>;
  /** Instances scanned although their tags put them out of scope, because their pixels fit the model (policy.scanByPixels). */
  scannedByPixels: Counter;
  /** Studies by route and their worst instance verdict. */
  studies: Counter<'route' | 'verdict'>;
  /** Flagged instances, by signal (adversarial, domain, error) and the detector(s) that flagged them. */
  flagged: Counter<'signal' | 'detector'>;
  /** Observe mode: instances forwarded that enforce mode would have flagged or blocked, by route and that verdict. */
  observed: Counter<'route' | 'verdict'>;
  stageDuration: Histogram<'stage'>;
  detectorScore: Histogram<'detector'>;
  detectorPValue: Histogram<'detector'>;
  upstreamRequests: Counter<'method' | 'status'>;
  upstreamDuration: Histogram<'method'>;
  /** Requests answered, by route and HTTP status. */
  requests: Counter<'route' | 'status'>;
  /** Bytes of multipart bodies read (STOW-RS requests, scanned WADO-RS responses), by route. */
  receivedBytes: Counter<'route'>;
  spooledParts: Counter;
  queueDepth: Gauge;
  inflight: Gauge<'route'>;
  activeScans: Gauge;
  saturated: Counter;
  modelInfo: Gauge<'model_sha256' | 'provider' | 'bundle_sha256' | 'detectors' | 'version'>;
  errors: Counter<'code'>;
  /** 1 while a security warning about the running configuration holds (e.g. no auth beyond loopback). */
  securityWarnings: Gauge<'warning'>;
  /** Requests refused for their credentials, by route and status (401, 403). */
  authFailures: Counter<'route' | 'status'>;
  /** Security events that could not be delivered to the webhook and were kept as dead letters. */
  deadLetters: Counter;
  /** Quarantine volume: bytes and files kept, free bytes on its file system. */
  quarantineBytes: Gauge;
  quarantineFiles: Gauge;
  quarantineFreeBytes: Gauge;
  /** Rolling rate of live instances at or below a signal's flag rate, per signal and detector (drift watch). */
  flagRate: Gauge<'signal' | 'detector'>;
  /** Binomial upper-tail probability of that rate under the nominal one; tiny = the calibration has drifted. */
  driftTail: Gauge<'signal' | 'detector'>;
}

export const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
export const UPSTREAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
export const P_VALUE_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1];
export const SCORE_BUCKETS = [-10, -5, -2, -1, 0, 0.5, 1, 2, 5, 10, 20, 50, 100, 1000];

/** Values the gauges read at scrape time from the running gateway. */
export interface MetricsProbes {
  drift?: () => DriftReading[];
  /** The quarantine's disk usage (read at scrape time; cached by the caller). */
  quarantine?: () => Promise<{ bytes: number; count: number; freeBytes: number } | null>;
  queueDepth?: () => number;
  activeScans?: () => number;
  inflight?: () => Record<string, number>;
}

export interface MetricsOptions extends MetricsProbes {
  /** Also export prom-client's default process metrics (CPU, RSS, event-loop lag, GC) with the `warden_` prefix. */
  processMetrics?: boolean;
}

export function createMetrics(options: MetricsOptions = {}): WardenMetrics {
  const registry = new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'warden_' });
  const registers = [registry];
  const { queueDepth, activeScans, inflight, drift, quarantine } = options;
  return {
    registry,
    instances: new Counter({ name: 'warden_instances_total', help: 'DICOM instances judged, by route (stow, wado) and final verdict (forward, flag, block).', labelNames: ['route', 'verdict'] as const, registers }),
    unscanned: new Counter({ name: 'warden_instances_unscanned_total', help: 'Instances passed on without a scan, by reason (out_of_scope, not_an_image).', labelNames: ['reason'] as const, registers }),
    scannedByPixels: new Counter({ name: 'warden_instances_scanned_by_pixels_total', help: 'Instances scanned although their tags put them out of scope, because their pixels fit the model (policy.scanByPixels).', registers }),
    studies: new Counter({ name: 'warden_studies_total', help: 'Studies judged, by route and their worst instance verdict.', labelNames: ['route', 'verdict'] as const, registers }),
    flagged: new Counter({ name: 'warden_flagged_instances_total', help: 'Instances passed on with a flag, by signal (adversarial, domain, error) and the detector(s) that flagged them.', labelNames: ['signal', 'detector'] as const, registers }),
    observed: new Counter({ name: 'warden_instances_observed_total', help: 'Observe mode: instances forwarded that enforce mode would have flagged or blocked, by route and that verdict.', labelNames: ['route', 'verdict'] as const, registers }),
    stageDuration: new Histogram({ name: 'warden_stage_duration_seconds', help: 'Time spent per pipeline stage (ingest, decode, preprocess, inference, detect, total, forward).', labelNames: ['stage'] as const, buckets: STAGE_BUCKETS, registers }),
    detectorScore: new Histogram({ name: 'warden_detector_score', help: 'Detector scores (higher = more anomalous), by detector.', labelNames: ['detector'] as const, buckets: SCORE_BUCKETS, registers }),
    detectorPValue: new Histogram({ name: 'warden_detector_p_value', help: 'Conformal p-values against clean calibration scores, by detector.', labelNames: ['detector'] as const, buckets: P_VALUE_BUCKETS, registers }),
    upstreamRequests: new Counter({ name: 'warden_upstream_requests_total', help: 'Requests to the upstream DICOMweb server, by method and HTTP status ("error" when no response).', labelNames: ['method', 'status'] as const, registers }),
    upstreamDuration: new Histogram({ name: 'warden_upstream_request_duration_seconds', help: 'Upstream request latency until the response headers, by method.', labelNames: ['method'] as const, buckets: UPSTREAM_BUCKETS, registers }),
    requests: new Counter({ name: 'warden_requests_total', help: 'STOW-RS requests and scanned WADO-RS retrieves answered, by route and HTTP status.', labelNames: ['route', 'status'] as const, registers }),
    receivedBytes: new Counter({ name: 'warden_received_bytes_total', help: 'Bytes of multipart bodies read (STOW-RS requests, scanned WADO-RS responses), by route.', labelNames: ['route'] as const, registers }),
    spooledParts: new Counter({ name: 'warden_spooled_parts_total', help: 'Instance parts spooled to a temporary file because they exceeded the in-memory limit.', registers }),
    queueDepth: new Gauge({
      name: 'warden_inference_queue_depth', help: 'Instances waiting for inference in the scan pipeline.', registers,
      collect() { if (queueDepth) this.set(queueDepth()); },
    }),
    inflight: new Gauge({
      name: 'warden_inflight_requests', help: 'HTTP requests in progress, by route (stow, qido_wado, metrics).', labelNames: ['route'] as const, registers,
      collect() { if (inflight) for (const [route, n] of Object.entries(inflight())) this.set({ route }, n); },
    }),
    activeScans: new Gauge({
      name: 'warden_active_scans', help: 'Instance scans admitted by the gateway and not yet finished (running or waiting for a scan slot).', registers,
      collect() { if (activeScans) this.set(activeScans()); },
    }),
    saturated: new Counter({ name: 'warden_saturated_rejections_total', help: 'Requests answered 503 because the scan limits were reached.', registers }),
    modelInfo: new Gauge({ name: 'warden_model_info', help: 'The loaded model and detector bundle (value 1).', labelNames: ['model_sha256', 'provider', 'bundle_sha256', 'detectors', 'version'] as const, registers }),
    errors: new Counter({ name: 'warden_errors_total', help: 'Errors by stable Warden error code (see docs/errors.md).', labelNames: ['code'] as const, registers }),
    authFailures: new Counter({ name: 'warden_auth_failures_total', help: 'Requests refused for their credentials, by route and HTTP status (401 none or invalid, 403 another role).', labelNames: ['route', 'status'] as const, registers }),
    deadLetters: new Counter({ name: 'warden_webhook_dead_letters_total', help: 'Security events the webhook could not deliver after its retries (kept as dead letters in the audit store).', registers }),
    quarantineBytes: new Gauge({
      name: 'warden_quarantine_bytes', help: 'Bytes of original instances kept in quarantine.', registers,
      async collect() { const u = await quarantine?.(); if (u) this.set(u.bytes); },
    }),
    quarantineFiles: new Gauge({
      name: 'warden_quarantine_files', help: 'Instances (content-addressed files) kept in quarantine.', registers,
      async collect() { const u = await quarantine?.(); if (u) this.set(u.count); },
    }),
    quarantineFreeBytes: new Gauge({
      name: 'warden_quarantine_free_bytes', help: 'Free bytes on the file system that holds the quarantine.', registers,
      async collect() { const u = await quarantine?.(); if (u) this.set(u.freeBytes); },
    }),
    flagRate: new Gauge({
      name: 'warden_flag_rate', help: 'Rolling fraction of the last scanned instances at or below the signal\'s flag rate, by signal and detector (drift watch).', labelNames: ['signal', 'detector'] as const, registers,
      collect() { if (drift) for (const r of drift()) this.set({ signal: r.signal, detector: r.detector }, r.rate); },
    }),
    driftTail: new Gauge({
      name: 'warden_drift_tail_probability', help: 'P(at least the observed number of flags | the nominal rate) over the drift window, by signal and detector; tiny = calibration drift.', labelNames: ['signal', 'detector'] as const, registers,
      collect() { if (drift) for (const r of drift()) this.set({ signal: r.signal, detector: r.detector }, r.tailProbability); },
    }),
    securityWarnings: new Gauge({ name: 'warden_security_warning', help: 'A security warning about the running configuration holds (1) or not (0), by warning.', labelNames: ['warning'] as const, registers }),
  };
}

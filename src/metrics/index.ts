import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every metric the gateway exports, on its own Registry (never prom-client's global one). Label values are
 * drawn from small closed sets (verdicts, stage names, detector names, HTTP methods and statuses, error
 * codes); no label ever carries a UID, a patient attribute or a free-form string. docs/metrics.md lists them.
 */
export interface WardenMetrics {
  readonly registry: Registry;
  /** Instances by final verdict (after the study rule); `out_of_scope` and `skipped` count forwarded ones not scanned. */
  instances: Counter<'verdict'>;
  /** Instances not scanned, by reason (out_of_scope | not_an_image). Also counted in instances{verdict="forward"}. */
  unscanned: Counter<'reason'>;
  /** Studies by their worst instance verdict. */
  studies: Counter<'verdict'>;
  /** Flagged instances forwarded with a mark. */
  flagged: Counter<'detector'>;
  stageDuration: Histogram<'stage'>;
  detectorScore: Histogram<'detector'>;
  detectorPValue: Histogram<'detector'>;
  upstreamRequests: Counter<'method' | 'status'>;
  upstreamDuration: Histogram<'method'>;
  stowRequests: Counter<'status'>;
  /** WADO-RS retrieves scanned (wado.scan), by the status Warden answered. */
  wadoRequests: Counter<'status'>;
  /** Retrieved instances scanned, by final verdict (block = withheld from the client). */
  wadoInstances: Counter<'verdict'>;
  /** Retrieved studies, by their worst instance verdict. */
  wadoStudies: Counter<'verdict'>;
  stowBytes: Counter;
  spooledParts: Counter;
  queueDepth: Gauge;
  inflight: Gauge<'route'>;
  activeScans: Gauge;
  saturated: Counter;
  modelInfo: Gauge<'model_sha256' | 'provider' | 'bundle_sha256' | 'detectors' | 'version'>;
  errors: Counter<'code'>;
}

export const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
export const UPSTREAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
export const P_VALUE_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1];
export const SCORE_BUCKETS = [-10, -5, -2, -1, 0, 0.5, 1, 2, 5, 10, 20, 50, 100, 1000];

export interface MetricsOptions {
  /** Also export prom-client's default process metrics (CPU, RSS, event-loop lag, GC) with the `warden_` prefix. */
  processMetrics?: boolean;
  queueDepth?: () => number;
}

export function createMetrics(options: MetricsOptions = {}): WardenMetrics {
  const registry = new Registry();
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'warden_' });
  const registers = [registry];
  const queueDepthFn = options.queueDepth;
  return {
    registry,
    instances: new Counter({ name: 'warden_instances_total', help: 'DICOM instances received over STOW-RS, by final verdict (forward, flag, block).', labelNames: ['verdict'] as const, registers }),
    unscanned: new Counter({ name: 'warden_instances_unscanned_total', help: 'Instances forwarded without a scan, by reason (out_of_scope, not_an_image).', labelNames: ['reason'] as const, registers }),
    studies: new Counter({ name: 'warden_studies_total', help: 'Studies received over STOW-RS, by their worst instance verdict.', labelNames: ['verdict'] as const, registers }),
    flagged: new Counter({ name: 'warden_flagged_instances_total', help: 'Instances forwarded with a flag, by the detector(s) that flagged them.', labelNames: ['detector'] as const, registers }),
    stageDuration: new Histogram({ name: 'warden_stage_duration_seconds', help: 'Time spent per pipeline stage (ingest, decode, preprocess, extract, detect, scan, forward).', labelNames: ['stage'] as const, buckets: STAGE_BUCKETS, registers }),
    detectorScore: new Histogram({ name: 'warden_detector_score', help: 'Detector scores (higher = more anomalous), by detector.', labelNames: ['detector'] as const, buckets: SCORE_BUCKETS, registers }),
    detectorPValue: new Histogram({ name: 'warden_detector_p_value', help: 'Conformal p-values against clean calibration scores, by detector.', labelNames: ['detector'] as const, buckets: P_VALUE_BUCKETS, registers }),
    upstreamRequests: new Counter({ name: 'warden_upstream_requests_total', help: 'Requests to the upstream DICOMweb server, by method and HTTP status ("error" when no response).', labelNames: ['method', 'status'] as const, registers }),
    upstreamDuration: new Histogram({ name: 'warden_upstream_request_duration_seconds', help: 'Upstream request latency until the response headers, by method.', labelNames: ['method'] as const, buckets: UPSTREAM_BUCKETS, registers }),
    stowRequests: new Counter({ name: 'warden_stow_requests_total', help: 'STOW-RS requests answered, by HTTP status.', labelNames: ['status'] as const, registers }),
    wadoRequests: new Counter({ name: 'warden_wado_requests_total', help: 'WADO-RS retrieves scanned (wado.scan), by HTTP status answered (upstream status when relayed unscanned).', labelNames: ['status'] as const, registers }),
    wadoInstances: new Counter({ name: 'warden_wado_instances_total', help: 'Instances in scanned WADO-RS retrieves, by final verdict (block = withheld from the client).', labelNames: ['verdict'] as const, registers }),
    wadoStudies: new Counter({ name: 'warden_wado_studies_total', help: 'Studies in scanned WADO-RS retrieves, by their worst instance verdict.', labelNames: ['verdict'] as const, registers }),
    stowBytes: new Counter({ name: 'warden_stow_received_bytes_total', help: 'Bytes of instance parts received over STOW-RS.', registers }),
    spooledParts: new Counter({ name: 'warden_spooled_parts_total', help: 'Instance parts spooled to a temporary file because they exceeded the in-memory limit.', registers }),
    queueDepth: new Gauge({
      name: 'warden_inference_queue_depth', help: 'Instances waiting for inference in the scan pipeline.', registers,
      collect() { if (queueDepthFn) this.set(queueDepthFn()); },
    }),
    inflight: new Gauge({ name: 'warden_inflight_requests', help: 'HTTP requests in progress, by route (stow, qido_wado, metrics, health).', labelNames: ['route'] as const, registers }),
    activeScans: new Gauge({ name: 'warden_active_scans', help: 'Instance scans admitted by the gateway and not yet finished (running or queued in the pipeline).', registers }),
    saturated: new Counter({ name: 'warden_saturated_rejections_total', help: 'Requests answered 503 because the scan limits were reached.', registers }),
    modelInfo: new Gauge({ name: 'warden_model_info', help: 'The loaded model and detector bundle (value 1).', labelNames: ['model_sha256', 'provider', 'bundle_sha256', 'detectors', 'version'] as const, registers }),
    errors: new Counter({ name: 'warden_errors_total', help: 'Errors by stable Warden error code (see src/core/errors.ts).', labelNames: ['code'] as const, registers }),
  };
}

/** Records one pipeline verdict record's timings and detector scores. */
export function observeRecord(m: WardenMetrics, record: { timings?: Record<string, number>; scores?: Record<string, { score: number; pValue: number }> }): void {
  for (const [stage, ms] of Object.entries(record.timings ?? {})) {
    if (Number.isFinite(ms) && /^[a-z_]{1,32}$/.test(stage)) m.stageDuration.observe({ stage }, ms / 1000);
  }
  for (const [detector, s] of Object.entries(record.scores ?? {})) {
    if (!/^[a-z0-9_]{1,32}$/.test(detector)) continue;
    if (Number.isFinite(s.score)) m.detectorScore.observe({ detector }, s.score);
    if (Number.isFinite(s.pValue)) m.detectorPValue.observe({ detector }, s.pValue);
  }
}

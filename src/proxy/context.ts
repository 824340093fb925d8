import type pino from 'pino';
import type { EventScope } from '../core/events';
import type { WardenConfig } from '../config';
import type { Policy } from '../policy';
import type { ScanMeta, ScanResult } from '../pipeline';
import type { MemoryBudget } from './spool';
import type { Semaphore } from './semaphore';
import type { UpstreamClient } from './upstream';
import type { Credentials } from './auth';
import type { Trail } from './trail';
import type { RuntimeSlot } from './runtime-slot';

/** What the proxy needs from the scan pipeline (src/pipeline ScanPipeline satisfies it; tests may fake it). */
export interface Scanner {
  scan(bytes: Uint8Array, meta: ScanMeta): Promise<ScanResult>;
  queueDepth(): number;
  close(): Promise<void>;
  readonly provider: string;
  readonly modelSha256: string;
  readonly policy: Policy;
  readonly bundle?: { names: string[] };
}

/** What scores and judges instances: swapped as one on a hot reload (src/proxy/runtime-slot.ts). */
export interface ScanRuntime {
  readonly scanner: Scanner;
  readonly policy: Policy;
  /** sha256 of the detector bundle in use (responses, audit records, warden_model_info). */
  readonly bundleSha256?: string;
  /** A detector's clean calibration scores, for the review page's plots. */
  readonly calibration?: (detector: string) => ArrayLike<number> | null;
}

export interface AppDeps {
  /** The scan runtime, current and swappable. */
  runtimes: RuntimeSlot;
  logger: pino.Logger;
  upstream: UpstreamClient;
  /** The telemetry scope this gateway publishes its events under (src/metrics subscribes to it). */
  scope: EventScope;
  /** Renders the /metrics page (the registry's content type and text). */
  metricsPage: () => Promise<{ contentType: string; text: string }>;
  /** This process's own spool directory (src/proxy/spool.ts prepareSpoolDir). */
  spoolDir: string;
  /** Security warnings about the running configuration (also logged and exported), shown by /readyz. */
  securityWarnings: string[];
  /** Who may do what (auth.tokens and the shorthands). */
  credentials: Credentials;
  /** The audit store and quarantine; absent when the gateway runs without them (tests). */
  trail?: Trail;
  /** Hot reload (POST /admin/reload, SIGHUP): a new runtime from the configuration, validated, then swapped in. */
  reload?: () => Promise<ReloadResult>;
}

export interface ReloadResult {
  bundleSha256: string | null;
  modelSha256: string;
  detectors: string[];
}

/** Per-app mutable state shared by the routes (no module-level globals). */
export interface AppContext extends AppDeps {
  config: WardenConfig;
  scans: Semaphore;
  budget: MemoryBudget;
  activeStow: number;
  /** WADO-RS retrieves being scanned (wado.scan). */
  activeWado: number;
  /** HTTP requests in progress, by route (read by the metrics at scrape time). */
  inflight: Record<string, number>;
  shuttingDown: boolean;
}

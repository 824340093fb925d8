import type pino from 'pino';
import type { EventScope } from '../core/events';
import type { WardenConfig } from '../config';
import type { Policy } from '../policy';
import type { ScanMeta, ScanResult } from '../pipeline';
import type { MemoryBudget } from './spool';
import type { Semaphore } from './semaphore';
import type { UpstreamClient } from './upstream';

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

export interface AppDeps {
  scanner: Scanner;
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
}

/** Per-app mutable state shared by the routes (no module-level globals). */
export interface AppContext extends AppDeps {
  config: WardenConfig;
  policy: Policy;
  scans: Semaphore;
  budget: MemoryBudget;
  activeStow: number;
  /** WADO-RS retrieves being scanned (wado.scan). */
  activeWado: number;
  /** HTTP requests in progress, by route (read by the metrics at scrape time). */
  inflight: Record<string, number>;
  shuttingDown: boolean;
}

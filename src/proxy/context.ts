import type pino from 'pino';
import type { VerdictRecord } from '../core/types';
import type { WardenConfig } from '../config';
import type { WardenMetrics } from '../metrics';
import type { Policy } from '../policy';
import { MemoryBudget } from './spool';
import { Semaphore } from './semaphore';
import type { UpstreamClient } from './upstream';

/** What the proxy needs from the scan pipeline (src/pipeline ScanPipeline satisfies it; tests may fake it). */
export interface Scanner {
  scan(bytes: Uint8Array, meta: { partIndex?: number }): Promise<VerdictRecord>;
  queueDepth(): number;
  close(): Promise<void>;
  readonly provider: string;
  readonly modelSha256: string;
  readonly policy?: Policy;
  readonly bundle?: { names: string[]; header?: unknown };
}

export interface AppDeps {
  scanner: Scanner;
  metrics: WardenMetrics;
  logger: pino.Logger;
  upstream: UpstreamClient;
  /** sha256 of the detector bundle file, for warden_model_info (first 16 hex chars suffice). */
  bundleSha256?: string;
}

/** Per-app mutable state shared by the routes (no module-level globals). */
export interface AppContext extends AppDeps {
  config: WardenConfig;
  policy: Policy;
  scans: Semaphore;
  budget: MemoryBudget;
  spoolDir: string;
  activeStow: number;
  /** WADO-RS retrieves being scanned (wado.scan). */
  activeWado: number;
  shuttingDown: boolean;
}

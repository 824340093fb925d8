import { WardenError } from '../core/errors';
import { loadRuntimeConfig } from '../config';
import { compose, runtimeOptionsFromConfig, type Runtime, type RuntimeOptions } from '../pipeline';

/**
 * How every offline command gets its pipeline: the same configuration file and WARDEN_* overrides as
 * `warden serve` (so both judge a file alike), then the command's own flags on top, then compose().
 */
export interface ModelFlags {
  config?: string;
  model?: string;
  bundle?: string;
  /** commander's `--no-detectors` */
  detectors?: boolean;
  providers?: string;
  workers?: string;
  threads?: string;
  frame?: string;
  timeout?: string;
}

export function positiveInt(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new WardenError('USAGE', `${name} must be a positive integer (got ${value}).`);
  return n;
}

/** Configuration (file + environment) with the command's flags applied, as pipeline options. */
export function runtimeOptionsFromFlags(flags: ModelFlags): RuntimeOptions {
  if (flags.frame !== undefined && flags.frame !== 'first' && flags.frame !== 'middle') {
    throw new WardenError('USAGE', `--frame must be 'first' or 'middle' (got ${flags.frame}).`);
  }
  const config = loadRuntimeConfig(flags.config);
  if (flags.model !== undefined) config.model.path = flags.model;
  if (flags.bundle !== undefined) config.model.bundle = flags.bundle;
  const workers = positiveInt(flags.workers, '--workers');
  if (workers !== undefined) config.model.workers = workers;
  const threads = positiveInt(flags.threads, '--threads');
  if (threads !== undefined) config.model.threadsPerWorker = threads;
  if (flags.frame !== undefined) config.model.frame = flags.frame as 'first' | 'middle';
  const timeout = positiveInt(flags.timeout, '--timeout');
  if (timeout !== undefined) config.limits.scanTimeoutMs = timeout;
  const options = runtimeOptionsFromConfig(config);
  if (flags.providers !== undefined) options.providers = flags.providers.split(',').map((s) => s.trim()).filter(Boolean);
  if (flags.detectors === false) options.bundlePath = null;
  return options;
}

/** compose() for a CLI command; `extra` are the command's fixed choices (e.g. no detectors for feature extraction). */
export function cliRuntime(flags: ModelFlags, extra: Partial<RuntimeOptions> = {}): Promise<Runtime> {
  return compose({ ...runtimeOptionsFromFlags(flags), ...extra });
}

/** Feature extraction for fit / features / eval: no detectors, no deadline, a deep queue. */
export const EXTRACT_ONLY: Partial<RuntimeOptions> = { bundlePath: null, timeoutMs: 0, maxQueue: 1024 };

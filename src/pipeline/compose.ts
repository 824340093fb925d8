import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type pino from 'pino';
import { WardenError } from '../core/errors';
import { DEFAULT_BUNDLE_PATH, DEFAULT_MODEL_PATH } from '../core/defaults';
import type { EventScope } from '../core/events';
import { cliLogger } from '../core/logger';
import { resolveUidHashKey, type WardenConfig } from '../config';
import { setUidHashKey, type DecodeLimits } from '../dicom';
import { loadBundle, type DetectorBundle } from '../detectors';
import { InferencePool, loadModelManifest, viewFunction, viewsOf, type FrameChoice, type LoadedModel } from '../models';
import { DEFAULT_POLICY, policySignalProblems, unreachableThresholds, type Policy } from '../policy';
import { ScanPipeline } from './scan-pipeline';

/**
 * The composition root of the scan side: resolves the model and its detector bundle (one default-bundle rule),
 * checks that they belong together and that the policy's thresholds can be reached, builds the inference pool
 * and hands back a ScanPipeline. `warden serve` and every CLI command build their pipeline here, from the same
 * configuration mapping (runtimeOptionsFromConfig).
 */

export interface RuntimeOptions {
  /** ONNX model; absent or null = the embedded model (DEFAULT_MODEL_PATH). */
  modelPath?: string | null;
  /**
   * Detector bundle: absent = the default rule (the embedded bundle when the model is the embedded model, else
   * none); null = no detectors (predictions only); a path = that bundle (it must fit the model).
   */
  bundlePath?: string | null;
  /** An already loaded bundle (wins over bundlePath); it must have been fitted for this model. */
  bundle?: DetectorBundle;
  /** Execution providers in order, e.g. ['cuda', 'cpu']. Default ['cpu']. GPU failure falls back to cpu. */
  providers?: string[];
  workers?: number;
  threadsPerWorker?: number;
  spinWait?: boolean;
  limits?: Partial<DecodeLimits>;
  policy?: Policy;
  /** Per-instance inference deadline (queue wait included), ms; 0 = none. Default 30000. */
  timeoutMs?: number;
  /** Instances allowed to wait for an inference worker before WORKER_OVERLOADED. Default 64. */
  maxQueue?: number;
  frame?: FrameChoice;
  logger?: pino.Logger;
  /** Telemetry scope the pipeline publishes its events under. */
  scope?: EventScope;
  /** The install's secret for hashing UIDs (process-wide; see src/dicom/hash.ts). */
  uidHashKey?: string;
  /** Views to run besides those the bundle needs (feature extraction for fitting view-reading detectors). */
  views?: string[];
}

export interface Runtime {
  readonly pipeline: ScanPipeline;
  readonly model: LoadedModel;
  readonly bundle?: DetectorBundle;
  /** Where the bundle came from and its file's sha256, when it was read from a file. */
  readonly bundlePath?: string;
  readonly bundleSha256?: string;
  readonly policy: Policy;
  close(): Promise<void>;
}

/** The configuration sections the scan side reads. */
export type RuntimeConfig = Pick<WardenConfig, 'model' | 'policy' | 'limits' | 'server' | 'security'>;

/** Execution providers for a configured `model.provider`: cuda/tensorrt always with an explicit cpu fallback. */
export function providersFor(setting: RuntimeConfig['model']['provider']): string[] {
  if (setting === 'auto') return ['cuda', 'cpu'];
  if (setting === 'cpu') return ['cpu'];
  return [setting, 'cpu'];
}

/** The one mapping from configuration to pipeline options (serve and CLI alike). */
export function runtimeOptionsFromConfig(config: RuntimeConfig): RuntimeOptions {
  return {
    modelPath: config.model.path,
    // configured null = the default rule
    ...(config.model.bundle !== null ? { bundlePath: config.model.bundle } : {}),
    providers: providersFor(config.model.provider),
    workers: config.model.workers,
    threadsPerWorker: config.model.threadsPerWorker ?? undefined,
    spinWait: config.model.spinWait,
    frame: config.model.frame,
    policy: config.policy,
    timeoutMs: config.limits.scanTimeoutMs,
    maxQueue: Math.max(config.limits.maxQueuedScans, config.limits.maxConcurrentScans),
    uidHashKey: resolveUidHashKey(config),
  };
}

/** The default-bundle rule: the embedded bundle goes with the embedded model only. */
export function resolveBundlePath(modelPath: string, bundlePath: string | null | undefined): string | null {
  if (bundlePath !== undefined) return bundlePath === null ? null : path.resolve(bundlePath);
  return modelPath === path.resolve(DEFAULT_MODEL_PATH) && fs.existsSync(DEFAULT_BUNDLE_PATH) ? DEFAULT_BUNDLE_PATH : null;
}

/** @throws MODEL_LOAD_FAILED, MODEL_MANIFEST_INVALID, BUNDLE_INVALID, BUNDLE_MODEL_MISMATCH, CONFIG_INVALID (the policy names detectors of the wrong signal, or none of the bundle's) */
export async function compose(opts: RuntimeOptions = {}): Promise<Runtime> {
  const modelPath = path.resolve(opts.modelPath ?? DEFAULT_MODEL_PATH);
  const logger = opts.logger ?? cliLogger();
  if (opts.uidHashKey) setUidHashKey(opts.uidHashKey);
  const model = await loadModelManifest(modelPath);
  const m = model.manifest;

  let bundle = opts.bundle;
  let bundlePath: string | undefined;
  let bundleSha256: string | undefined;
  if (bundle) {
    if (bundle.modelSha256 !== model.sha256) {
      throw new WardenError('BUNDLE_MODEL_MISMATCH',
        `The detector bundle was fitted for model sha256 ${bundle.modelSha256.slice(0, 12)}…, not ${model.sha256.slice(0, 12)}… (${modelPath}).`);
    }
  } else {
    const resolved = resolveBundlePath(modelPath, opts.bundlePath);
    if (resolved !== null) {
      bundle = await loadBundle(resolved, model.sha256);
      bundlePath = resolved;
      bundleSha256 = createHash('sha256').update(fs.readFileSync(resolved)).digest('hex');
    }
  }
  const views = [...new Set([...viewsOf(bundle?.requiredLayers ?? []), ...(opts.views ?? [])])].sort();
  for (const v of views) viewFunction(v);
  if (bundle) {
    const provided = (name: string): boolean => {
      const base = name.includes('/') ? name.slice(name.indexOf('/') + 1) : name;
      return base === 'logits' || m.outputs.features.includes(base);
    };
    const missing = bundle.requiredLayers.filter((l) => !provided(l));
    if (missing.length) {
      throw new WardenError('BUNDLE_INVALID', `The bundle needs feature layers ${missing.join(', ')} that the model manifest does not declare.`);
    }
  }

  const policy = opts.policy ?? DEFAULT_POLICY;
  if (bundle?.detectors) {
    const signals = Object.fromEntries(Object.entries(bundle.detectors).map(([id, d]) => [id, d.signal]));
    const { errors, warnings } = policySignalProblems(policy, signals);
    if (errors.length) throw new WardenError('CONFIG_INVALID', `The policy does not fit the detector bundle${bundlePath ? ` ${bundlePath}` : ''}: ${errors.join(' ')}`);
    for (const w of warnings) logger.warn({ event: 'policy_signal' }, w);
  }

  const pool = await InferencePool.create({
    modelPath,
    inputName: m.input.name,
    outputs: [m.outputs.logits, ...m.outputs.features],
    providers: opts.providers,
    workers: opts.workers,
    threadsPerWorker: opts.threadsPerWorker,
    spinWait: opts.spinWait,
    maxQueue: opts.maxQueue,
    timeoutMs: opts.timeoutMs,
    logger,
  });
  if (bundle?.detectors) {
    const calibrated = Object.entries(bundle.detectors).filter(([, d]) => d.calibrated);
    const floors = Object.fromEntries(m.classes.map((label, c) => [label, Object.fromEntries(calibrated.map(([id, d]) => [id, d.pValueFloor(c)]))]));
    // A threshold below what the calibration set can resolve would silently never fire: say so at start-up.
    for (const problem of unreachableThresholds(policy, floors)) logger.warn({ event: 'policy_unreachable' }, problem);
  }
  const pipeline = new ScanPipeline({ model, pool, policy, bundle, limits: opts.limits, frame: opts.frame, scope: opts.scope, views });
  return {
    pipeline, model, bundle, bundlePath, bundleSha256, policy,
    close: () => pipeline.close(),
  };
}

import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type pino from 'pino';
import type { DecodedInstance, ModelInput, ModelOutput, SkippedInstance, VerdictRecord } from '../core/types';
import { WardenError, toWardenError, ERROR_CATALOGUE } from '../core/errors';
import { DEFAULT_BUNDLE_PATH, DEFAULT_MODEL_PATH } from '../core/defaults';
import { decodeInstance, isSkipped, type DecodeLimits } from '../dicom';
import { loadBundle, type DetectorBundle } from '../detectors';
import { DEFAULT_POLICY, decide, isApplicable, unreachableThresholds, type ErrorClass, type InstanceOutcome, type Policy } from '../policy';
import { loadModelManifest, type LoadedModel, type ModelManifest } from '../models/manifest';
import { preprocess, type FrameChoice } from '../models/preprocess';
import { InferencePool, defaultLogger, type InferenceResult } from '../models/pool';

/**
 * The one place the stages compose: decode → applicability → preprocess → extract → detect → decide.
 * `warden scan`, `warden fit/features/eval` and the proxy all go through ScanPipeline; none re-implements a stage.
 */

export interface PipelineOptions {
  /** ONNX model; default the embedded model (DEFAULT_MODEL_PATH). */
  modelPath?: string;
  /**
   * Detector bundle. undefined = DEFAULT_BUNDLE_PATH when it exists and the model is the default model;
   * null = no detectors (predictions only, no verdict for scanned instances).
   */
  bundlePath?: string | null;
  /** An already loaded bundle (wins over bundlePath); it must have been fitted for this model. */
  bundle?: DetectorBundle;
  /** Execution providers in order, e.g. ['cuda', 'cpu']. Default ['cpu']. GPU failure falls back to cpu. */
  providers?: string[];
  /** Inference worker threads. Default 1. */
  workers?: number;
  /** ONNX Runtime intra-op threads per worker. Default cpus / workers. */
  threadsPerWorker?: number;
  /** Let ONNX Runtime's threads spin-wait between runs. Default false. */
  spinWait?: boolean;
  limits?: Partial<DecodeLimits>;
  policy?: Policy;
  /** Per-instance inference deadline (queue wait included), ms. Default 30000. */
  timeoutMs?: number;
  /** Instances allowed to wait for an inference worker before WORKER_OVERLOADED. Default 64. */
  maxQueue?: number;
  /** Which frame of a multi-frame instance is scanned. Default 'first'. */
  frame?: FrameChoice;
  logger?: pino.Logger;
}

export interface ScanMeta {
  file?: string;
  partIndex?: number;
}

/** A VerdictRecord plus `scannedFrame` (present for multi-frame instances: the frame that was scanned). */
export type ScanRecord = VerdictRecord & { scannedFrame?: number };

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

export function errorClassOf(code: string): ErrorClass {
  if (code === 'MODEL_TIMEOUT') return 'timeout';
  const entry = (ERROR_CATALOGUE as Record<string, { kind: string }>)[code];
  return entry && entry.kind === 'input' ? 'decode' : 'model';
}

export class ScanPipeline {
  readonly model: LoadedModel;
  readonly manifest: ModelManifest;
  readonly modelSha256: string;
  readonly provider: string;
  readonly bundle?: DetectorBundle;
  readonly policy: Policy;
  readonly pool: InferencePool;
  readonly #limits?: Partial<DecodeLimits>;
  readonly #frame: FrameChoice;

  private constructor(model: LoadedModel, pool: InferencePool, policy: Policy, bundle: DetectorBundle | undefined, opts: PipelineOptions) {
    this.model = model;
    this.manifest = model.manifest;
    this.modelSha256 = model.sha256;
    this.pool = pool;
    this.provider = pool.provider;
    this.policy = policy;
    this.bundle = bundle;
    this.#limits = opts.limits;
    this.#frame = opts.frame ?? 'first';
  }

  /** @throws MODEL_LOAD_FAILED, MODEL_MANIFEST_INVALID, BUNDLE_INVALID, BUNDLE_MODEL_MISMATCH */
  static async create(opts: PipelineOptions = {}): Promise<ScanPipeline> {
    const modelPath = path.resolve(opts.modelPath ?? DEFAULT_MODEL_PATH);
    const logger = opts.logger ?? defaultLogger();
    const model = await loadModelManifest(modelPath);
    const m = model.manifest;

    let bundlePath: string | null = null;
    if (opts.bundle) bundlePath = null;
    else if (opts.bundlePath === undefined) {
      if (modelPath === path.resolve(DEFAULT_MODEL_PATH) && fs.existsSync(DEFAULT_BUNDLE_PATH)) bundlePath = DEFAULT_BUNDLE_PATH;
    } else bundlePath = opts.bundlePath;
    let bundle: DetectorBundle | undefined = opts.bundle;
    if (bundle && bundle.modelSha256 !== model.sha256) {
      throw new WardenError('BUNDLE_MODEL_MISMATCH',
        `The detector bundle was fitted for model sha256 ${bundle.modelSha256.slice(0, 12)}…, not ${model.sha256.slice(0, 12)}… (${modelPath}).`);
    }
    if (bundlePath !== null) bundle = await loadBundle(bundlePath, model.sha256);
    if (bundle) {
      const missing = bundle.requiredLayers.filter((l) => !m.outputs.features.includes(l));
      if (missing.length) {
        throw new WardenError('BUNDLE_INVALID', `The bundle needs feature layers ${missing.join(', ')} that the model manifest does not declare.`);
      }
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
    const policy = opts.policy ?? DEFAULT_POLICY;
    if (bundle?.detectors) {
      const calibrated = Object.entries(bundle.detectors).filter(([, d]) => d.calibrated);
      const floors = Object.fromEntries(m.classes.map((label, c) => [label, Object.fromEntries(calibrated.map(([id, d]) => [id, d.pValueFloor(c)]))]));
      // A threshold below what the calibration set can resolve would silently never fire: say so at start-up.
      for (const problem of unreachableThresholds(policy, floors)) logger.warn({ event: 'policy_unreachable' }, problem);
    }
    return new ScanPipeline(model, pool, policy, bundle, opts);
  }

  /** Instances waiting for or inside inference. */
  queueDepth(): number {
    return this.pool.queueDepth();
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Runs the model on a preprocessed input (transfers the tensor). */
  infer(input: ModelInput, options?: { timeoutMs?: number; transfer?: boolean }): Promise<InferenceResult> {
    return this.pool.run(input.tensor, input.shape, options);
  }

  /** Scans one instance. Never throws for bad input: the record says status 'error' with error.code. */
  async scan(bytes: Uint8Array, meta: ScanMeta = {}): Promise<ScanRecord> {
    const res = await this.#run(bytes, meta, true);
    return res.record;
  }

  /** decode → preprocess → extract, without scope rules, detectors or verdict (for fit / features / eval). */
  async extract(bytes: Uint8Array, meta: ScanMeta = {}): Promise<{ record: ScanRecord; output?: ModelOutput }> {
    return this.#run(bytes, meta, false);
  }

  async #run(bytes: Uint8Array, meta: ScanMeta, full: boolean): Promise<{ record: ScanRecord; output?: ModelOutput }> {
    const t0 = performance.now();
    const timings: Record<string, number> = {};
    const record: ScanRecord = { ...(meta.file !== undefined ? { file: meta.file } : {}), ...(meta.partIndex !== undefined ? { partIndex: meta.partIndex } : {}), status: 'scanned', timings };
    const finish = (outcome: InstanceOutcome | undefined): ScanRecord => {
      if (outcome && full) {
        const d = decide(outcome, this.policy);
        record.verdict = d.verdict;
        record.reasons = d.reasons;
      }
      timings.total = round(performance.now() - t0);
      return canonical(record);
    };
    const fail = (err: WardenError): ScanRecord => {
      record.status = 'error';
      record.error = { code: err.code, message: err.message };
      return finish({ kind: 'error', errorClass: errorClassOf(err.code), code: err.code });
    };

    // decode
    let decoded: DecodedInstance | SkippedInstance;
    let t = performance.now();
    try {
      decoded = await decodeInstance(bytes, this.#limits);
    } catch (err) {
      timings.decode = round(performance.now() - t);
      return { record: fail(toWardenError(err, 'DICOM_MALFORMED', `Decoding failed: ${err instanceof Error ? err.message : String(err)}`)) };
    }
    timings.decode = round(performance.now() - t);
    if (isSkipped(decoded)) {
      Object.assign(record, dropUndefined({
        sopInstanceUidHash: decoded.sopInstanceUidHash, sopClassUid: decoded.sopClassUid,
        modality: decoded.modality, transferSyntaxUid: decoded.transferSyntaxUid,
      }));
      record.status = 'skipped';
      record.skipReason = decoded.reason;
      return { record: finish({ kind: 'skipped' }) };
    }
    Object.assign(record, dropUndefined({
      sopInstanceUidHash: decoded.sopInstanceUidHash, sopClassUid: decoded.sopClassUid, modality: decoded.modality,
      transferSyntaxUid: decoded.transferSyntaxUid, rows: decoded.rows, columns: decoded.columns, frames: decoded.numberOfFrames,
    }));

    // applicability
    if (full && !isApplicable(decoded, this.policy.applicability)) {
      record.status = 'skipped';
      record.skipReason = 'out_of_scope';
      return { record: finish({ kind: 'out_of_scope' }) };
    }

    // preprocess
    t = performance.now();
    let input: ModelInput & { frameIndex: number };
    try {
      input = preprocess(decoded, this.manifest, { frame: this.#frame, consumeFrame: true });
    } catch (err) {
      timings.preprocess = round(performance.now() - t);
      return { record: fail(toWardenError(err, 'UNSUPPORTED_PIXEL_FORMAT', `Preprocessing failed: ${err instanceof Error ? err.message : String(err)}`)) };
    }
    timings.preprocess = round(performance.now() - t);
    if (decoded.numberOfFrames > 1) record.scannedFrame = input.frameIndex;
    // The tensor is all inference needs: let the decoded frames (often the largest allocation) go now.
    decoded.frames = [];

    // extract
    t = performance.now();
    let output: ModelOutput;
    try {
      const res = await this.pool.run(input.tensor, input.shape);
      output = this.#toOutput(res);
    } catch (err) {
      timings.inference = round(performance.now() - t);
      return { record: fail(toWardenError(err, 'MODEL_INFERENCE_FAILED', `Inference failed: ${err instanceof Error ? err.message : String(err)}`)) };
    }
    timings.inference = round(performance.now() - t);
    record.prediction = predictionOf(output.logits, this.manifest.classes);
    record.featureDims = Object.fromEntries(Object.entries(output.features).map(([k, v]) => [k, v.length]));

    if (!full) return { record: finish(undefined), output };
    if (!this.bundle) return { record: finish(undefined), output };

    // detect
    t = performance.now();
    try {
      record.scores = this.bundle.score(output.features, record.prediction.index);
    } catch (err) {
      timings.detect = round(performance.now() - t);
      return { record: fail(toWardenError(err, 'INTERNAL', `Detector scoring failed: ${err instanceof Error ? err.message : String(err)}`)), output };
    }
    timings.detect = round(performance.now() - t);
    return { record: finish({ kind: 'scanned', scores: record.scores }), output };
  }

  #toOutput(res: InferenceResult): ModelOutput {
    const outs = this.manifest.outputs;
    const logits = res.outputs[outs.logits];
    if (!logits || logits.length !== this.manifest.classes.length) {
      throw new WardenError('MODEL_MANIFEST_INVALID',
        `Output ${outs.logits} has ${logits ? logits.length : 0} values; the manifest lists ${this.manifest.classes.length} classes.`);
    }
    const features: Record<string, Float32Array> = {};
    for (const name of outs.features) features[name] = res.outputs[name];
    return { logits, features };
  }
}

/** Softmax (max-shifted) and argmax. */
export function predictionOf(logits: Float32Array, classes: string[]): { index: number; label: string; probability: number } {
  let index = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[index]) index = i;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - logits[index]);
  return { index, label: classes[index] ?? String(index), probability: 1 / sum };
}

const FIELD_ORDER: (keyof ScanRecord)[] = [
  'file', 'partIndex', 'sopInstanceUidHash', 'sopClassUid', 'modality', 'transferSyntaxUid', 'rows', 'columns', 'frames',
  'scannedFrame', 'status', 'skipReason', 'error', 'prediction', 'featureDims', 'scores', 'verdict', 'reasons', 'timings',
];

/** Same record, keys in one stable order (JSONL readers and diffs like that). */
function canonical(r: ScanRecord): ScanRecord {
  const out: Record<string, unknown> = {};
  for (const k of FIELD_ORDER) if (r[k] !== undefined) out[k] = r[k];
  return out as unknown as ScanRecord;
}

function dropUndefined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

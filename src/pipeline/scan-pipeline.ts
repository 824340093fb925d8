import { performance } from 'node:perf_hooks';
import type { Decision, DecodedInstance, ModelInput, ModelOutput, VerdictRecord } from '../core/types';
import { WardenError, toWardenError, type ErrorCode } from '../core/errors';
import { publish, type EventScope } from '../core/events';
import { decodeInstance, isSkipped, type DecodeLimits } from '../dicom';
import type { DetectorBundle } from '../detectors';
import { decide, fitsModelInput, isApplicable, outOfScopeAction, type InstanceOutcome, type Policy } from '../policy';
import { batchWithViews, preprocess, type FrameChoice, type InferencePool, type InferenceResult, type LoadedModel, type ModelManifest } from '../models';

/**
 * The one place the stages compose: decode → scope → preprocess → extract → detect → decide. A scan and an
 * extraction are two short lists of steps run by one timed, error-wrapping runner; the gateway and every CLI command
 * go through here (built by compose()), none re-implements a stage.
 */

export interface ScanMeta {
  file?: string;
  partIndex?: number;
}

/** A VerdictRecord plus `scannedFrame` (present for multi-frame instances: the frame that was scanned). */
export type ScanRecord = VerdictRecord & { scannedFrame?: number };

/** What a scan ends with: the printable record and the policy's Decision (always present). */
export interface ScanResult {
  record: ScanRecord;
  decision: Decision;
}

export interface ExtractResult {
  record: ScanRecord;
  /** Present when the instance was decoded and run through the model. */
  output?: ModelOutput;
}

export interface ScanPipelineParts {
  model: LoadedModel;
  pool: InferencePool;
  policy: Policy;
  bundle?: DetectorBundle;
  limits?: Partial<DecodeLimits>;
  frame?: FrameChoice;
  scope?: EventScope;
  /**
   * Views run in the same batch as the image (src/models/views.ts): those the bundle's detectors read, plus any
   * asked for feature extraction. Their outputs reach detectors as `<view>/<output>`.
   */
  views?: string[];
}

/** Mutable state a scan carries from step to step. */
interface StepState {
  bytes: Uint8Array;
  record: ScanRecord;
  decoded?: DecodedInstance;
  input?: ModelInput & { frameIndex: number };
  output?: ModelOutput;
  /** Scanned although its tags put it out of scope (its pixels fit the model). */
  byPixels?: boolean;
}

interface Step {
  /** Key in record.timings; untimed steps have none. */
  timing?: string;
  /** Code and sentence prefix for an unexpected failure inside the step (typed errors keep their own). */
  failure: { code: ErrorCode; sentence: string };
  /** Returns an outcome to end the scan there, or nothing to go on. */
  run(state: StepState): Promise<InstanceOutcome | void> | InstanceOutcome | void;
}

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

export class ScanPipeline {
  readonly model: LoadedModel;
  readonly manifest: ModelManifest;
  readonly modelSha256: string;
  readonly provider: string;
  readonly bundle?: DetectorBundle;
  readonly policy: Policy;
  readonly pool: InferencePool;
  /** The views each instance is also run as (one batch). */
  readonly views: string[];
  readonly #scope?: EventScope;
  readonly #scanSteps: Step[];
  readonly #extractSteps: Step[];

  constructor(parts: ScanPipelineParts) {
    this.model = parts.model;
    this.manifest = parts.model.manifest;
    this.modelSha256 = parts.model.sha256;
    this.pool = parts.pool;
    this.provider = parts.pool.provider;
    this.policy = parts.policy;
    this.bundle = parts.bundle;
    this.#scope = parts.scope;
    const decode = decodeStep(parts.limits);
    const pre = preprocessStep(this.manifest, parts.frame ?? 'first');
    this.views = parts.views ?? [];
    const infer = inferStep(this.pool, this.manifest, this.views);
    this.#scanSteps = [decode, scopeStep(this.policy, this.manifest), pre, infer, detectStep(this.bundle)];
    this.#extractSteps = [decode, pre, infer];
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

  /**
   * Scans one instance and asks the policy. Never throws for bad input: the record says status 'error' with
   * error.code and the Decision applies policy.onError. The record shows the verdict and reasons whenever the policy
   * judged the instance (not for a scan without detectors).
   */
  async scan(bytes: Uint8Array, meta: ScanMeta = {}): Promise<ScanResult> {
    const { state, outcome } = await this.#run(this.#scanSteps, bytes, meta);
    const decision = decide(outcome ?? { kind: 'unjudged' }, this.policy);
    if (outcome && outcome.kind !== 'unjudged') {
      state.record.verdict = decision.verdict;
      state.record.reasons = decision.reasons;
    }
    const record = this.#finish(state);
    return { record, decision };
  }

  /** decode → preprocess → extract, without scope rules, detectors or verdict (for fit / features / eval). */
  async extract(bytes: Uint8Array, meta: ScanMeta = {}): Promise<ExtractResult> {
    const { state } = await this.#run(this.#extractSteps, bytes, meta);
    return { record: this.#finish(state), output: state.output };
  }

  async #run(steps: Step[], bytes: Uint8Array, meta: ScanMeta): Promise<{ state: StepState; outcome?: InstanceOutcome }> {
    const t0 = performance.now();
    const record: ScanRecord = {
      ...(meta.file !== undefined ? { file: meta.file } : {}), ...(meta.partIndex !== undefined ? { partIndex: meta.partIndex } : {}),
      status: 'scanned', timings: {},
    };
    const state: StepState = { bytes, record };
    let outcome: InstanceOutcome | undefined;
    for (const step of steps) {
      const t = performance.now();
      try {
        outcome = (await step.run(state)) ?? undefined;
      } catch (err) {
        const e = toWardenError(err, step.failure.code, `${step.failure.sentence}: ${err instanceof Error ? err.message : String(err)}`);
        record.status = 'error';
        record.error = { code: e.code, message: e.message };
        outcome = { kind: 'error', code: e.code };
      }
      if (step.timing) record.timings[step.timing] = round(performance.now() - t);
      if (outcome) break;
    }
    record.timings.total = round(performance.now() - t0);
    return { state, outcome };
  }

  #finish(state: StepState): ScanRecord {
    const record = canonical(state.record);
    if (this.#scope) {
      const scope = this.#scope;
      publish('instanceScanned', () => ({ scope, status: record.status, errorCode: record.error?.code, timings: record.timings, scores: record.scores }));
    }
    return record;
  }
}

function decodeStep(limits: Partial<DecodeLimits> | undefined): Step {
  return {
    timing: 'decode',
    failure: { code: 'DICOM_MALFORMED', sentence: 'Decoding failed' },
    async run(s) {
      const decoded = await decodeInstance(s.bytes, limits);
      const common = { sopInstanceUidHash: decoded.sopInstanceUidHash, sopClassUid: decoded.sopClassUid, modality: decoded.modality, transferSyntaxUid: decoded.transferSyntaxUid };
      if (isSkipped(decoded)) {
        Object.assign(s.record, dropUndefined(common), { status: 'skipped', skipReason: decoded.reason });
        return { kind: 'skipped' };
      }
      Object.assign(s.record, dropUndefined({ ...common, rows: decoded.rows, columns: decoded.columns, frames: decoded.numberOfFrames }));
      s.decoded = decoded;
    },
  };
}

/**
 * In scope by its tags, or by its pixels when the tags say otherwise (policy.scanByPixels: a sender who edits
 * Modality does not skip the detectors); else out of scope, with the policy's action for it.
 */
function scopeStep(policy: Policy, manifest: ModelManifest): Step {
  const [, , height, width] = manifest.input.shape;
  return {
    failure: { code: 'INTERNAL', sentence: 'The scope check failed' },
    run(s) {
      const decoded = s.decoded!;
      if (isApplicable(decoded, policy.applicability)) return;
      if (policy.scanByPixels !== false && fitsModelInput(decoded, { height, width })) {
        s.byPixels = true;
        return;
      }
      s.record.status = 'skipped';
      s.record.skipReason = 'out_of_scope';
      return { kind: 'out_of_scope', action: outOfScopeAction(decoded, policy) };
    },
  };
}

function preprocessStep(manifest: ModelManifest, frame: FrameChoice): Step {
  return {
    timing: 'preprocess',
    failure: { code: 'UNSUPPORTED_PIXEL_FORMAT', sentence: 'Preprocessing failed' },
    run(s) {
      const decoded = s.decoded!;
      s.input = preprocess(decoded, manifest, { frame, consumeFrame: true });
      if (decoded.numberOfFrames > 1) s.record.scannedFrame = s.input.frameIndex;
      // The tensor is all inference needs: let the decoded frames (often the largest allocation) go now.
      decoded.frames = [];
    },
  };
}

function inferStep(pool: InferencePool, manifest: ModelManifest, views: string[]): Step {
  const dynamicBatch = manifest.input.shape[0] === -1;
  return {
    timing: 'inference',
    failure: { code: 'MODEL_INFERENCE_FAILED', sentence: 'Inference failed' },
    async run(s) {
      const { tensor, shape } = s.input!;
      let results: InferenceResult[];
      if (views.length === 0) results = [await pool.run(tensor, shape)];
      else {
        // one batch [image, view₁, …, viewₖ] when the model takes any batch size, else one run each
        const batch = batchWithViews(tensor, shape, views, manifest);
        if (dynamicBatch) results = [await pool.run(batch.tensor, batch.shape)];
        else {
          const one = tensor.length;
          results = [];
          for (let r = 0; r <= views.length; r++) results.push(await pool.run(batch.tensor.slice(r * one, (r + 1) * one), shape));
        }
      }
      s.output = toOutput(results, manifest, views);
      s.record.prediction = predictionOf(s.output.logits, manifest.classes);
      s.record.featureDims = Object.fromEntries(Object.entries(s.output.features).map(([k, v]) => [k, v.length]));
    },
  };
}

function detectStep(bundle: DetectorBundle | undefined): Step {
  return {
    timing: 'detect',
    failure: { code: 'INTERNAL', sentence: 'Detector scoring failed' },
    run(s) {
      const byPixels = s.byPixels ? { byPixels: true } : {};
      if (!bundle) return { kind: 'unjudged', ...byPixels };
      s.record.scores = bundle.score(s.output!.features, s.record.prediction!.index);
      return { kind: 'scanned', scores: s.record.scores, ...byPixels };
    },
  };
}

/**
 * The image's logits, and its features as detectors read them: every feature output, `logits`, and each view's
 * (`<view>/<name>`), split out of the batch rows (or the one-per-run results of a fixed-batch model).
 */
function toOutput(results: InferenceResult[], manifest: ModelManifest, views: string[]): ModelOutput {
  const outs = manifest.outputs;
  const rows = views.length + 1;
  const row = (name: string, r: number): Float32Array => {
    const res = results.length === 1 ? results[0] : results[r];
    const all = res.outputs[name];
    if (!all) throw new WardenError('MODEL_MANIFEST_INVALID', `The model did not return output ${name}.`);
    if (results.length > 1 || rows === 1) return all;
    const width = all.length / rows;
    return all.subarray(r * width, (r + 1) * width);
  };
  const logits = row(outs.logits, 0);
  if (logits.length !== manifest.classes.length) {
    throw new WardenError('MODEL_MANIFEST_INVALID', `Output ${outs.logits} has ${logits.length} values; the manifest lists ${manifest.classes.length} classes.`);
  }
  const features: Record<string, Float32Array> = { logits };
  for (const name of outs.features) features[name] = row(name, 0);
  views.forEach((v, i) => {
    features[`${v}/logits`] = row(outs.logits, i + 1);
    for (const name of outs.features) features[`${v}/${name}`] = row(name, i + 1);
  });
  return { logits, features };
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

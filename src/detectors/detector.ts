/**
 * The one detector contract (alibi-detect / PyOD shape): construct with hyper-parameters only → fit on clean
 * training features → calibrate on clean calibration scores → score / pValue; save/load through a state object
 * the bundle writes as a JSON header plus binary arrays.
 *
 * Scores always point one way: higher = more anomalous. P-values are split-conformal:
 *   p(s) = (1 + #{calibration scores ≥ s}) / (n + 1),
 * valid (P[p ≤ α] ≤ α for a clean instance exchangeable with the calibration set) whatever the detector.
 */

import { WardenError } from '../core/errors';
import type { Signal } from '../core/types';
import type { LayerMatrix } from './linalg';

export type { LayerMatrix } from './linalg';

/** Features of n instances: one matrix per layer plus the model's predicted class per instance. */
export interface FeatureTable {
  n: number;
  layers: Record<string, LayerMatrix>;
  predicted: Int32Array;
  /** Number of classes of the model (logit count). */
  numClasses: number;
}

/** One instance's features. */
export type FeatureVector = Record<string, Float32Array>;

export type StateArray = Float32Array | Float64Array | Int32Array;

/** Everything needed to rebuild a fitted, calibrated detector. `meta` is small JSON; `arrays` go binary. */
export interface DetectorState {
  name: string;
  version: number;
  params: Record<string, unknown>;
  /** Layer name → dimension the detector was fitted on. */
  layers: Record<string, number>;
  meta: Record<string, unknown>;
  arrays: Record<string, StateArray>;
}

export interface Detector {
  /** Registry name ('kd', 'lid', 'mgm', 'uad', …). */
  readonly name: string;
  /** Version of the detector's state layout; a bundle with another version refuses to load. */
  readonly version: number;
  /**
   * Which question the detector answers: `adversarial` (evidence of structure that flips the model's decision; may
   * block) or `domain` (the image is unlike the clean training data; only ever flags). See src/policy.
   */
  readonly signal: Signal;
  readonly params: Readonly<Record<string, unknown>>;
  /** Feature layers the detector reads (known after fit for detectors that take "all"). */
  readonly requiredLayers: string[];
  /** The layers fitting would read from features that offer `available` (known before fitting). */
  neededLayers?(available: string[]): string[];
  readonly fitted: boolean;
  readonly calibrated: boolean;
  /** Fits on clean training features (with the model's predicted classes). */
  fit(train: FeatureTable): void;
  /**
   * Optional: a detector that needs clean held-out data for an internal step (UAD's per-layer p-values) takes
   * its part of the calibration split here and returns the rest, on which the final scores are calibrated.
   */
  splitCalibration?(calibration: FeatureTable): FeatureTable;
  /** Higher = more anomalous. @throws DETECTOR_NOT_FITTED, FEATURE_SHAPE_MISMATCH */
  score(features: FeatureVector, predictedClass: number): number;
  /**
   * Stores clean calibration scores (any order) and, for class-conditional (Mondrian) calibration
   * (`params.calibrateBy = 'class'`), the model's predicted class of each.
   */
  calibrate(cleanScores: ArrayLike<number>, classes?: ArrayLike<number>): void;
  /**
   * Conformal p-value of a score against the calibration scores (of the same predicted class when calibrated
   * by class). @throws DETECTOR_NOT_FITTED
   */
  pValue(score: number, predictedClass?: number): number;
  /** Score threshold at a target false-positive rate: pValue(score) ≤ fpr ⇔ score > threshold(fpr). */
  threshold(fpr: number, predictedClass?: number): number;
  /**
   * The smallest p-value the detector can give an instance of this predicted class: 1 / (n + 1) for the n
   * calibration scores it is compared with (its class's when calibrated by class). An FPR below it is never reached.
   */
  pValueFloor(predictedClass?: number): number;
  save(): DetectorState;
}

/** Conformal calibrator over a sorted copy of the clean calibration scores. */
export class ConformalCalibrator {
  readonly sorted: Float64Array;

  constructor(scores: ArrayLike<number>) {
    this.sorted = Float64Array.from(scores).sort();
    if (this.sorted.length === 0) throw new WardenError('USAGE', 'Calibration needs at least one clean score.');
    for (const s of this.sorted) {
      if (Number.isNaN(s)) throw new WardenError('USAGE', 'Calibration scores contain NaN.');
    }
  }

  get n(): number {
    return this.sorted.length;
  }

  /** (1 + #{cal ≥ s}) / (n + 1). */
  pValue(score: number): number {
    if (Number.isNaN(score)) return 1 / (this.n + 1); // an unscorable instance is treated as most anomalous
    // first index with sorted[i] >= score
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.sorted[mid] < score) lo = mid + 1;
      else hi = mid;
    }
    return (1 + (this.n - lo)) / (this.n + 1);
  }

  /**
   * Score threshold t at a target FPR: pValue(s) ≤ fpr exactly when s > t. t is the (m+1)-th largest calibration
   * score with m = ⌊fpr·(n+1)⌋ − 1; +Infinity when fpr < 1/(n+1) (no score can reach that p-value).
   */
  threshold(fpr: number): number {
    const m = Math.floor(fpr * (this.n + 1)) - 1; // #{cal ≥ s} allowed
    if (m < 0) return Infinity;
    if (m >= this.n) return -Infinity;
    return this.sorted[this.n - m - 1];
  }
}

/**
 * Shared lifecycle: parameter storage, fitted/calibrated checks, calibration and p-values, feature checks.
 * A subclass implements fitImpl, scoreImpl, saveImpl and a static `fromState`.
 */
export abstract class BaseDetector implements Detector {
  abstract readonly name: string;
  abstract readonly version: number;
  abstract readonly signal: Signal;
  readonly params: Readonly<Record<string, unknown>>;
  protected layerDims: Record<string, number> = {};
  protected isFitted = false;
  protected calibrator?: ConformalCalibrator;
  /** Per predicted class (Mondrian calibration), when params.calibrateBy = 'class'. */
  protected classCalibrators: (ConformalCalibrator | undefined)[] = [];

  protected constructor(params: Record<string, unknown>) {
    const calibrateBy = params.calibrateBy ?? 'marginal';
    if (calibrateBy !== 'marginal' && calibrateBy !== 'class') {
      throw new WardenError('USAGE', `Detector parameter calibrateBy must be 'marginal' or 'class' (got ${String(calibrateBy)}).`);
    }
    this.params = Object.freeze({ ...params, calibrateBy });
  }

  /** 'class': p-values against the calibration scores of the same predicted class (valid per class). */
  get calibrateBy(): 'marginal' | 'class' {
    return this.params.calibrateBy as 'marginal' | 'class';
  }

  get requiredLayers(): string[] {
    return Object.keys(this.layerDims);
  }

  /** The layers fitting would read from features that offer `available` (before fitting; for `warden fit`'s choice). */
  neededLayers(available: string[]): string[] {
    const layers = Object.fromEntries(available.map((n) => [n, { dim: 0, data: new Float32Array(0) }]));
    return this.layersToFit({ n: 0, layers, predicted: new Int32Array(0), numClasses: 0 });
  }

  get fitted(): boolean {
    return this.isFitted;
  }

  get calibrated(): boolean {
    return this.calibrator !== undefined;
  }

  get calibrationScores(): Float64Array | undefined {
    return this.calibrator?.sorted;
  }

  fit(train: FeatureTable): void {
    const layers = this.layersToFit(train);
    const dims: Record<string, number> = {};
    for (const l of layers) {
      const m = train.layers[l];
      if (!m) throw new WardenError('FEATURE_SHAPE_MISMATCH', `Detector ${this.name} needs feature layer '${l}', which the training features lack.`);
      dims[l] = m.dim;
    }
    if (train.n < 2) throw new WardenError('USAGE', `Detector ${this.name} needs at least 2 clean training instances (got ${train.n}).`);
    this.layerDims = dims;
    this.calibrator = undefined;
    this.fitImpl(train);
    this.isFitted = true;
  }

  calibrate(cleanScores: ArrayLike<number>, classes?: ArrayLike<number>): void {
    this.assertFitted();
    this.calibrator = new ConformalCalibrator(cleanScores);
    this.classCalibrators = [];
    if (this.calibrateBy === 'class') {
      if (!classes || classes.length !== cleanScores.length) {
        throw new WardenError('USAGE', `Detector ${this.name} is calibrated by class: calibrate() needs the predicted class of every calibration score.`);
      }
      const by: number[][] = [];
      for (let i = 0; i < cleanScores.length; i++) (by[classes[i]] ??= []).push(cleanScores[i]);
      this.classCalibrators = Array.from(by, (v) => (v && v.length ? new ConformalCalibrator(v) : undefined));
    }
  }

  /** The calibrator a p-value of this class is taken against (the marginal one when the class has none). */
  protected calibratorFor(predictedClass?: number): ConformalCalibrator {
    if (!this.calibrator) {
      throw new WardenError('DETECTOR_NOT_FITTED', `Detector ${this.name} has no calibration scores: call calibrate() with clean calibration scores first.`);
    }
    if (predictedClass !== undefined && this.classCalibrators[predictedClass]) return this.classCalibrators[predictedClass] as ConformalCalibrator;
    return this.calibrator;
  }

  score(features: FeatureVector, predictedClass: number): number {
    this.assertFitted();
    this.checkFeatures(features);
    return this.scoreImpl(features, predictedClass);
  }

  pValue(score: number, predictedClass?: number): number {
    return this.calibratorFor(predictedClass).pValue(score);
  }

  threshold(fpr: number, predictedClass?: number): number {
    return this.calibratorFor(predictedClass).threshold(fpr);
  }

  pValueFloor(predictedClass?: number): number {
    return 1 / (this.calibratorFor(predictedClass).n + 1);
  }

  save(): DetectorState {
    this.assertFitted();
    const state = this.saveImpl();
    if (this.calibrator) state.arrays.calibration_scores = this.calibrator.sorted;
    this.classCalibrators.forEach((c, k) => {
      if (c) state.arrays[`calibration_scores_class_${k}`] = c.sorted;
    });
    return { name: this.name, version: this.version, params: { ...this.params }, layers: { ...this.layerDims }, meta: state.meta, arrays: state.arrays };
  }

  /** Subclasses call this from their static fromState after restoring their own fields. */
  protected restoreCommon(state: DetectorState): void {
    if (state.version !== this.version) {
      throw new WardenError('BUNDLE_INVALID', `Detector ${this.name} state has version ${state.version}; this build reads version ${this.version}. Refit the bundle with \`warden fit\`.`);
    }
    this.layerDims = { ...state.layers };
    const cal = state.arrays.calibration_scores;
    if (cal && cal.length > 0) this.calibrator = new ConformalCalibrator(cal);
    this.classCalibrators = [];
    for (const [name, arr] of Object.entries(state.arrays)) {
      const m = /^calibration_scores_class_(\d+)$/.exec(name);
      if (m && arr.length > 0) this.classCalibrators[Number(m[1])] = new ConformalCalibrator(arr);
    }
    this.isFitted = true;
  }

  protected assertFitted(): void {
    if (!this.isFitted) {
      throw new WardenError('DETECTOR_NOT_FITTED', `Detector ${this.name} is not fitted: call fit() on clean training features (or load a fitted bundle) first.`);
    }
  }

  protected checkFeatures(features: FeatureVector): void {
    for (const [layer, dim] of Object.entries(this.layerDims)) {
      const v = features[layer];
      if (!v) throw new WardenError('FEATURE_SHAPE_MISMATCH', `Detector ${this.name} needs feature layer '${layer}', which the extractor did not provide.`);
      if (v.length !== dim) {
        throw new WardenError('FEATURE_SHAPE_MISMATCH', `Detector ${this.name}: layer '${layer}' has ${v.length} values, the detector was fitted on ${dim}.`);
      }
    }
  }

  /** Which layers to fit on; default: params.layers (string[]) or params.layer (string). */
  protected layersToFit(train: FeatureTable): string[] {
    const p = this.params as { layers?: unknown; layer?: unknown };
    if (p.layers === 'all') return Object.keys(train.layers).filter(isBaseFeatureLayer).sort();
    if (Array.isArray(p.layers)) return p.layers as string[];
    if (typeof p.layer === 'string') return [p.layer];
    throw new WardenError('USAGE', `Detector ${this.name} has no layer parameter.`);
  }

  protected abstract fitImpl(train: FeatureTable): void;
  protected abstract scoreImpl(features: FeatureVector, predictedClass: number): number;
  protected abstract saveImpl(): { meta: Record<string, unknown>; arrays: Record<string, StateArray> };
}

/**
 * A pooled feature layer of the image itself: not the logits (also handed to detectors, as `logits`) and not a
 * view's output (`<view>/<output>`, e.g. `median2/logits`). What `layers: 'all'` means.
 */
export function isBaseFeatureLayer(name: string): boolean {
  return name !== 'logits' && !name.includes('/');
}

/** Row i of a layer as a view (no copy). */
export function rowOf(m: LayerMatrix, i: number): Float32Array {
  return m.data.subarray(i * m.dim, (i + 1) * m.dim);
}

/** Instance i of a table as a FeatureVector of views. */
export function instanceOf(t: FeatureTable, i: number): FeatureVector {
  const out: FeatureVector = {};
  for (const [name, m] of Object.entries(t.layers)) out[name] = rowOf(m, i);
  return out;
}

/** Rows `idx` of a table as a new table (copies). */
export function selectRows(t: FeatureTable, idx: ArrayLike<number>): FeatureTable {
  const layers: Record<string, LayerMatrix> = {};
  for (const [name, m] of Object.entries(t.layers)) {
    const data = new Float32Array(idx.length * m.dim);
    for (let r = 0; r < idx.length; r++) data.set(rowOf(m, idx[r]), r * m.dim);
    layers[name] = { dim: m.dim, data };
  }
  const predicted = new Int32Array(idx.length);
  for (let r = 0; r < idx.length; r++) predicted[r] = t.predicted[idx[r]];
  return { n: idx.length, layers, predicted, numClasses: t.numClasses };
}

/** Scores every instance of a table. */
export function scoreTable(d: Detector, t: FeatureTable): Float64Array {
  const out = new Float64Array(t.n);
  for (let i = 0; i < t.n; i++) out[i] = d.score(instanceOf(t, i), t.predicted[i]);
  return out;
}

/** fit → calibrate: the one way every detector is fitted. */
export function fitAndCalibrate(d: Detector, train: FeatureTable, calibration: FeatureTable): void {
  d.fit(train);
  recalibrate(d, calibration);
}

/**
 * (The detector's own share of the clean calibration data, e.g. UAD's per-layer p-values) → conformal calibration on
 * the rest. Also how a fitted detector is recalibrated on a site's own clean studies (`warden calibrate`).
 */
export function recalibrate(d: Detector, calibration: FeatureTable): void {
  const rest = d.splitCalibration ? d.splitCalibration(calibration) : calibration;
  d.calibrate(scoreTable(d, rest), rest.predicted);
}

/** Validates a hyper-parameter is a finite number in a range. */
export function numberParam(name: string, detector: string, v: unknown, min: number, max: number, integer = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new WardenError('USAGE', `Detector ${detector}: parameter ${name} must be ${integer ? 'an integer' : 'a number'} in [${min}, ${max}] (got ${String(v)}).`);
  }
  return v;
}

import * as fs from 'node:fs';
import { WardenError } from '../core/errors';
import { hashUid } from '../dicom';

/**
 * The resume state of a DICOMweb pull (`warden calibrate --state <file>`): JSON lines, one header line binding the
 * file to the pull (model, feature names and dimensions, source, modality filter, the install's UID-hash key), then one
 * line per finished study — its keyed hash and the features of its instances — appended and fsynced when the study is
 * done. The header is written with the first study (the dimensions are known once an instance was extracted).
 * An interrupted run (killed, server gone) continues with the studies not yet in the file; a last line cut by the
 * interruption is dropped. No UIDs: studies and instances appear as keyed hashes only.
 */

export interface StateBinding {
  modelSha256: string;
  /** Feature names, in storage order. */
  names: string[];
  /** The DICOMweb base URL (no credentials). */
  source: string;
  /** Per-instance modality filter (empty = any). */
  modalities: string[];
}

export interface StoredInstance {
  /** Keyed hash of the SOP Instance UID. */
  sop: string;
  pred: number;
  features: Record<string, Float32Array>;
}

export interface StoredStudy {
  /** Keyed hash of the Study Instance UID. */
  study: string;
  instances: StoredInstance[];
  /** Instances of the study left out, by reason. */
  skipped: Record<string, number>;
}

interface HeaderLine extends Omit<StateBinding, 'names'> {
  /** Feature names and dimensions, in storage order. */
  layers: Record<string, number>;
  format: 'warden-calibrate-state';
  version: 1;
  /** hashUid of a fixed string: the same install key, or the stored hashes mean nothing. */
  keyCheck: string;
  createdAt: string;
}

interface StudyLine {
  study: string;
  skipped: Record<string, number>;
  instances: { sop: string; pred: number; f: string }[];
}

const KEY_CHECK = 'warden-calibrate-state';

export class PullState {
  readonly studies = new Map<string, StoredStudy>();
  readonly #file: string;
  readonly #binding: StateBinding;
  /** Name → dimension, once known (from the file, or from the first study appended). */
  #layers: [string, number][] | null = null;

  private constructor(file: string, binding: StateBinding) {
    this.#file = file;
    this.#binding = binding;
  }

  /**
   * Opens the state file for this pull, or prepares a new one (written with the first study). @throws
   * CALIBRATION_STATE_MISMATCH when it was written for another model, feature set, source, modality filter or install
   * key, or is not a state file.
   */
  static open(file: string, binding: StateBinding): PullState {
    const state = new PullState(file, binding);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new WardenError('USAGE', `Cannot read the state file ${file}: ${(err as Error).message}.`, { cause: err });
      text = '';
    }
    // a line without its newline was cut by an interruption: drop it (and cut it off the file before appending)
    const complete = text.slice(0, text.lastIndexOf('\n') + 1);
    const lines = complete.split('\n').filter(Boolean);
    if (lines.length === 0) {
      if (text.length) fs.truncateSync(file, 0);
      return state;
    }
    const mismatch = (why: string) => new WardenError('CALIBRATION_STATE_MISMATCH', `The state file ${file} ${why}; give a new --state file or the arguments of the run that wrote it.`);
    let stored: HeaderLine;
    try {
      stored = JSON.parse(lines[0]) as HeaderLine;
    } catch {
      throw mismatch('is not a warden calibrate state file');
    }
    if (stored?.format !== 'warden-calibrate-state' || stored.version !== 1) throw mismatch('is not a warden calibrate state file (version 1)');
    if (stored.keyCheck !== hashUid(KEY_CHECK)) throw mismatch("was written under another install's UID-hash key");
    if (stored.modelSha256 !== binding.modelSha256) throw mismatch(`was written for model sha256 ${String(stored.modelSha256).slice(0, 12)}…`);
    if (JSON.stringify(Object.keys(stored.layers ?? {})) !== JSON.stringify(binding.names)) throw mismatch('holds other feature layers (another model manifest or other views)');
    if (stored.source !== binding.source) throw mismatch(`was written for another source (${stored.source})`);
    if (JSON.stringify(stored.modalities) !== JSON.stringify(binding.modalities)) throw mismatch(`was written with another modality filter (${stored.modalities.join(',') || 'any'})`);
    state.#layers = Object.entries(stored.layers);
    lines.slice(1).forEach((line, i) => {
      let parsed: StudyLine;
      try {
        parsed = JSON.parse(line) as StudyLine;
      } catch {
        throw mismatch(`has a damaged line ${i + 2}`);
      }
      state.studies.set(parsed.study, { study: parsed.study, skipped: parsed.skipped ?? {}, instances: parsed.instances.map((x) => ({ sop: x.sop, pred: x.pred, features: state.#unpack(x.f) })) });
    });
    if (complete.length !== text.length) fs.truncateSync(file, Buffer.byteLength(complete, 'utf8'));
    return state;
  }

  /** Records a finished study (fsynced before returning). */
  append(study: StoredStudy): void {
    let text = '';
    if (!this.#layers) {
      const sample = study.instances[0]?.features;
      if (!sample) return; // nothing to store yet: the study is redone on resume (it holds no instance anyway)
      this.#layers = this.#binding.names.map((name) => [name, sample[name]?.length ?? 0]);
      const header: HeaderLine = {
        format: 'warden-calibrate-state', version: 1, modelSha256: this.#binding.modelSha256, layers: Object.fromEntries(this.#layers),
        source: this.#binding.source, modalities: this.#binding.modalities, keyCheck: hashUid(KEY_CHECK), createdAt: new Date().toISOString(),
      };
      text += `${JSON.stringify(header)}\n`;
    }
    const line: StudyLine = { study: study.study, skipped: study.skipped, instances: study.instances.map((x) => ({ sop: x.sop, pred: x.pred, f: this.#pack(x.features) })) };
    text += `${JSON.stringify(line)}\n`;
    this.#write(text, 'a');
    this.studies.set(study.study, study);
  }

  #write(text: string, flag: 'a'): void {
    const fd = fs.openSync(this.#file, flag, 0o600);
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  #pack(features: Record<string, Float32Array>): string {
    const layers = this.#layers ?? [];
    const total = layers.reduce((n, [, dim]) => n + dim, 0);
    const all = new Float32Array(total);
    let at = 0;
    for (const [name, dim] of layers) {
      const v = features[name];
      if (!v || v.length !== dim) throw new WardenError('FEATURE_SHAPE_MISMATCH', `Feature '${name}' has ${v?.length ?? 0} values, the state file stores ${dim}.`);
      all.set(v, at);
      at += dim;
    }
    return Buffer.from(all.buffer).toString('base64');
  }

  #unpack(base64: string): Record<string, Float32Array> {
    const bytes = Buffer.from(base64, 'base64');
    const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    const out: Record<string, Float32Array> = {};
    let at = 0;
    for (const [name, dim] of this.#layers ?? []) {
      out[name] = all.slice(at, at + dim);
      at += dim;
    }
    if (at !== all.length) throw new WardenError('CALIBRATION_STATE_MISMATCH', `The state file ${this.#file} holds features of another size (${all.length} values, ${at} expected).`);
    return out;
  }
}

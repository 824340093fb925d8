import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { WardenError } from '../core/errors';
import { hashUid, readHeader, supportedTransferSyntaxes } from '../dicom';
import { getDetectorFactory, mulberry32, type DetectorSpec } from '../detectors';
import type { ScanRecord } from '../pipeline';
import type { InputItem } from './features';
import { collectFiles } from './scan';

/**
 * What `warden fit` needs beyond the feature extraction it shares with `warden features`: one folder of clean
 * studies split into training and calibration by study (so no study straddles the two), the detectors a model's
 * outputs can feed, and the summary of what was used and what was skipped.
 */

export interface StudySplit {
  train: InputItem[];
  calibration: InputItem[];
  studies: { train: number; calibration: number };
  /** Files left out before extraction, with the reason. */
  skipped: { file: string; reason: string }[];
  files: number;
}

/** The readable DICOM files under a folder, grouped by study, and those left out with the reason. */
export interface FolderStudies {
  /** Plain digest of the StudyInstanceUID (memory only; never written) → its instances. */
  byStudy: Map<string, InputItem[]>;
  skipped: { file: string; reason: string }[];
  files: number;
}

/**
 * The files under `dir` grouped by StudyInstanceUID. Files without a readable Part-10 header or StudyInstanceUID are
 * skipped (and reported). Item meta: file, kind 'clean', study (keyed hash), sop (keyed hash), modality.
 */
export async function studiesOf(dir: string): Promise<FolderStudies> {
  const files = await collectFiles([dir]);
  const byStudy = new Map<string, InputItem[]>();
  const skipped: FolderStudies['skipped'] = [];
  for (const file of files) {
    const rel = path.relative(process.cwd(), file);
    const id = readHeader(await fsp.readFile(file));
    if (!id?.studyInstanceUid) {
      skipped.push({ file: rel, reason: id === null ? 'not a DICOM Part-10 file' : 'no StudyInstanceUID' });
      continue;
    }
    // the split depends on the seed only, never on the install's UID-hash key: studies are ordered by a plain
    // digest of their UID (kept in memory), and the records carry the keyed hash
    const key = createHash('sha256').update(id.studyInstanceUid).digest('hex');
    const meta: Record<string, string> = { file: rel, kind: 'clean', study: hashUid(id.studyInstanceUid) };
    if (id.sopInstanceUid) meta.sop = hashUid(id.sopInstanceUid);
    if (id.modality) meta.modality = id.modality;
    byStudy.set(key, [...(byStudy.get(key) ?? []), { absPath: file, meta }]);
  }
  return { byStudy, skipped, files: files.length };
}

/**
 * Whole groups (studies) in a seeded random order go to calibration until it holds `fraction` of the members; the
 * rest train. Group keys must not depend on anything but the data (they are sorted before the shuffle). @throws USAGE
 */
export function assignStudies<T>(groups: Map<string, T[]>, fraction: number, seed: number): { train: T[]; calibration: T[]; studies: { train: number; calibration: number } } {
  if (!(fraction > 0 && fraction < 1)) throw new WardenError('USAGE', `--calibration-fraction must be in (0, 1) (got ${fraction}).`);
  if (!Number.isInteger(seed)) throw new WardenError('USAGE', `--seed must be an integer (got ${seed}).`);
  const keys = [...groups.keys()].sort();
  const rnd = mulberry32(seed);
  for (let i = keys.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [keys[i], keys[j]] = [keys[j], keys[i]];
  }
  const total = keys.reduce((n, k) => n + groups.get(k)!.length, 0);
  const target = fraction * total;
  const out = { train: [] as T[], calibration: [] as T[], studies: { train: 0, calibration: 0 } };
  for (const k of keys) {
    const side = out.calibration.length < target && out.studies.calibration < keys.length - 1 ? 'calibration' : 'train';
    out[side].push(...groups.get(k)!);
    out.studies[side]++;
  }
  return out;
}

/**
 * Splits the files under `dir` by StudyInstanceUID: studies in a seeded random order go to calibration until it
 * holds `fraction` of the instances; the rest train (see assignStudies). @throws USAGE
 */
export async function splitByStudy(dir: string, fraction: number, seed: number): Promise<StudySplit> {
  if (!(fraction > 0 && fraction < 1)) throw new WardenError('USAGE', `--calibration-fraction must be in (0, 1) (got ${fraction}).`);
  if (!Number.isInteger(seed)) throw new WardenError('USAGE', `--seed must be an integer (got ${seed}).`);
  const { byStudy, skipped, files } = await studiesOf(dir);
  if (byStudy.size < 2) {
    throw new WardenError('USAGE', `${dir} holds ${byStudy.size} stud${byStudy.size === 1 ? 'y' : 'ies'} with readable DICOM files: a split by study needs at least 2 (or give --train and --calibration).`);
  }
  return { ...assignStudies(byStudy, fraction, seed), skipped, files };
}

/**
 * The detectors whose input layers the model provides. Explicitly requested detectors are all kept (fitting one
 * without its layer fails with FEATURE_SHAPE_MISMATCH, naming it); from the defaults, those that need a layer the
 * model does not output (e.g. nrd's residual_stats on a vendor model) are left out and reported.
 */
export function applicableSpecs(specs: DetectorSpec[], layers: string[], explicit: boolean): { specs: DetectorSpec[]; leftOut: string[] } {
  if (explicit) return { specs, leftOut: [] };
  const keep: DetectorSpec[] = [];
  const leftOut: string[] = [];
  for (const s of specs) {
    const det = getDetectorFactory(s.kind).create(s.params ?? {});
    const params = det.params as { layer?: unknown; layers?: unknown };
    const need = det.neededLayers ? det.neededLayers(layers)
      : typeof params.layer === 'string' ? [params.layer] : Array.isArray(params.layers) ? (params.layers as string[]) : [];
    // every model has logits, and the pipeline computes the views' outputs itself
    const missing = need.filter((l) => l !== 'logits' && !l.includes('/') && !layers.includes(l));
    if (missing.length) leftOut.push(`${s.id} (needs feature layer ${missing.join(', ')}, which this model does not output)`);
    else keep.push(s);
  }
  return { specs: keep, leftOut };
}

/** Why extraction left an instance out (undefined when it was scanned): not an image, or an error code. */
export function skipReasonOf(r: ScanRecord): string | undefined {
  if (r.status === 'scanned') return undefined;
  if (r.status === 'skipped') return `not an image (${r.skipReason ?? 'skipped'})`;
  return `error ${r.error?.code ?? 'INTERNAL'}`;
}

/** Counts what extraction used and skipped, by reason and transfer syntax. */
export class FitSummary {
  readonly used: Record<'train' | 'calibration', number> = { train: 0, calibration: 0 };
  readonly skipped = new Map<string, number>();
  readonly syntaxes = new Map<string, number>();

  skip(reason: string): void {
    this.skipped.set(reason, (this.skipped.get(reason) ?? 0) + 1);
  }

  record(side: 'train' | 'calibration', r: ScanRecord): void {
    const why = skipReasonOf(r);
    if (why === undefined) {
      this.used[side]++;
      if (r.transferSyntaxUid) this.syntaxes.set(r.transferSyntaxUid, (this.syntaxes.get(r.transferSyntaxUid) ?? 0) + 1);
    } else this.skip(why);
  }

  lines(extra: { source: string; studies?: StudySplit['studies']; detectors: string[]; leftOut: string[]; bundle: string; bundleBytes: number; modelSha256: string }): string[] {
    const keyword = new Map(supportedTransferSyntaxes().map((e) => [e.uid, e.keyword]));
    const skippedTotal = [...this.skipped.values()].reduce((a, b) => a + b, 0);
    const st = (side: 'train' | 'calibration') => (extra.studies ? ` from ${extra.studies[side]} studies` : '');
    return [
      'summary',
      `  source       ${extra.source}`,
      `  train        ${this.used.train} instances${st('train')}`,
      `  calibration  ${this.used.calibration} instances${st('calibration')}`,
      `  skipped      ${skippedTotal}${skippedTotal ? `: ${[...this.skipped].map(([why, n]) => `${n} × ${why}`).join(', ')}` : ''}`,
      `  syntaxes     ${[...this.syntaxes].map(([uid, n]) => `${keyword.get(uid) ?? uid} ${n}`).join(', ') || 'none'}`,
      `  detectors    ${extra.detectors.join(', ')}${extra.leftOut.length ? `; left out: ${extra.leftOut.join('; ')}` : ''}`,
      `  bundle       ${extra.bundle} (${(extra.bundleBytes / 1e6).toFixed(2)} MB), bound to model sha256 ${extra.modelSha256.slice(0, 12)}…`,
    ];
  }
}

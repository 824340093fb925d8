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

/**
 * Splits the files under `dir` by StudyInstanceUID: studies in a seeded random order go to calibration until it
 * holds `fraction` of the instances; the rest train. Files without a readable Part-10 header or StudyInstanceUID
 * are skipped (and reported). @throws USAGE
 */
export async function splitByStudy(dir: string, fraction: number, seed: number): Promise<StudySplit> {
  if (!(fraction > 0 && fraction < 1)) throw new WardenError('USAGE', `--calibration-fraction must be in (0, 1) (got ${fraction}).`);
  if (!Number.isInteger(seed)) throw new WardenError('USAGE', `--seed must be an integer (got ${seed}).`);
  const files = await collectFiles([dir]);
  const byStudy = new Map<string, InputItem[]>();
  const skipped: StudySplit['skipped'] = [];
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
    byStudy.set(key, [...(byStudy.get(key) ?? []), { absPath: file, meta: { file: rel, kind: 'clean', study: hashUid(id.studyInstanceUid) } }]);
  }
  const keys = [...byStudy.keys()].sort();
  if (keys.length < 2) {
    throw new WardenError('USAGE', `${dir} holds ${keys.length} stud${keys.length === 1 ? 'y' : 'ies'} with readable DICOM files: a split by study needs at least 2 (or give --train and --calibration).`);
  }
  const rnd = mulberry32(seed);
  for (let i = keys.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [keys[i], keys[j]] = [keys[j], keys[i]];
  }
  const total = keys.reduce((n, k) => n + byStudy.get(k)!.length, 0);
  const target = fraction * total;
  const split: StudySplit = { train: [], calibration: [], studies: { train: 0, calibration: 0 }, skipped, files: files.length };
  for (const k of keys) {
    const side = split.calibration.length < target && split.studies.calibration < keys.length - 1 ? 'calibration' : 'train';
    split[side].push(...byStudy.get(k)!);
    split.studies[side]++;
  }
  return split;
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
    const params = getDetectorFactory(s.kind).create(s.params ?? {}).params as { layer?: unknown; layers?: unknown };
    const need = typeof params.layer === 'string' ? [params.layer] : Array.isArray(params.layers) ? (params.layers as string[]) : [];
    const missing = need.filter((l) => !layers.includes(l));
    if (missing.length) leftOut.push(`${s.id} (needs feature layer ${missing.join(', ')}, which this model does not output)`);
    else keep.push(s);
  }
  return { specs: keep, leftOut };
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
    if (r.status === 'scanned') {
      this.used[side]++;
      if (r.transferSyntaxUid) this.syntaxes.set(r.transferSyntaxUid, (this.syntaxes.get(r.transferSyntaxUid) ?? 0) + 1);
    } else if (r.status === 'skipped') this.skip(`not an image (${r.skipReason ?? 'skipped'})`);
    else this.skip(`error ${r.error?.code ?? 'INTERNAL'}`);
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

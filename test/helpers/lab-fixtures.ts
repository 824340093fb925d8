import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_BUNDLE_PATH, DEFAULT_MODEL_PATH } from '../../src/core/defaults';
import { parseCsv } from '../../src/eval/dataset';

/** The committed lab fixture studies (test/fixtures/lab/manifest.csv: file, study_uid, sop_uid, kind, attack, eps, success, …). */
export const LAB_DIR = path.resolve(__dirname, '..', 'fixtures', 'lab');
export const LAB_MANIFEST = path.join(LAB_DIR, 'manifest.csv');

export interface LabRow { file: string; path: string; study_uid: string; sop_uid: string; kind: string; attack: string; norm: string; eps: string; success: string }

export function labArtefactsPresent(): { ok: boolean; missing: string[] } {
  const missing = [DEFAULT_MODEL_PATH, DEFAULT_BUNDLE_PATH, LAB_MANIFEST].filter((p) => !fs.existsSync(p));
  return { ok: missing.length === 0, missing };
}

export function readLabManifest(manifest = LAB_MANIFEST): LabRow[] {
  return parseCsv(fs.readFileSync(manifest, 'utf8')).map((r) => ({ ...r, path: path.resolve(path.dirname(manifest), r.file) }) as unknown as LabRow);
}

/** Rows grouped by study, in manifest order. */
export function studies(rows: LabRow[]): Map<string, LabRow[]> {
  const m = new Map<string, LabRow[]>();
  for (const r of rows) {
    if (!m.has(r.study_uid)) m.set(r.study_uid, []);
    m.get(r.study_uid)!.push(r);
  }
  return m;
}

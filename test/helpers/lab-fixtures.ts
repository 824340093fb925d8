import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_BUNDLE_PATH, DEFAULT_MODEL_PATH } from '../../src/core/defaults';

/** The committed lab fixture studies (test/fixtures/lab/manifest.csv: file, study_uid, sop_uid, kind, attack, eps, success, …). */
export const LAB_DIR = path.resolve(__dirname, '..', 'fixtures', 'lab');
export const LAB_MANIFEST = path.join(LAB_DIR, 'manifest.csv');

export interface LabRow { file: string; path: string; study_uid: string; sop_uid: string; kind: string; attack: string; norm: string; eps: string; success: string }

export function labArtefactsPresent(): { ok: boolean; missing: string[] } {
  const missing = [DEFAULT_MODEL_PATH, DEFAULT_BUNDLE_PATH, LAB_MANIFEST].filter((p) => !fs.existsSync(p));
  return { ok: missing.length === 0, missing };
}

function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (c === '"') quoted = false; else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { out.push(cur); cur = ''; } else cur += c;
  }
  out.push(cur);
  return out;
}

export function readLabManifest(manifest = LAB_MANIFEST): LabRow[] {
  const [header, ...lines] = fs.readFileSync(manifest, 'utf8').split(/\r?\n/).filter((l) => l.trim());
  const cols = parseCsvLine(header);
  return lines.map((l) => {
    const v = parseCsvLine(l);
    const row = Object.fromEntries(cols.map((c, i) => [c, v[i] ?? ''])) as unknown as LabRow;
    row.path = path.resolve(path.dirname(manifest), row.file);
    return row;
  });
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

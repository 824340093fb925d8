/** Shared helpers for the DICOM conformance tests: corpus location, manifests, decoding to an outcome. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeInstance, isSkipped } from '../../src/dicom';
import { isWardenError } from '../../src/core/errors';
import type { DecodedInstance } from '../../src/core/types';

/** shared/ sits beside the repository root, locally and in CI. */
export const CORPUS = path.resolve(__dirname, '../../../shared/corpus/dicom');
export const SOURCES = ['cornerstone-dicomParser', 'cornerstone-wadoimageloader', 'fo-dicom', 'pydicom', 'pydicom-data'];

export function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p));
    else if (e.name !== 'SOURCES.md' && e.name !== 'manifest.csv') out.push(p);
  }
  return out.sort();
}

/** Minimal RFC 4180 CSV reader (quoted fields, doubled quotes, commas inside quotes). */
export function readCsv(file: string): Record<string, string>[] {
  const text = fs.readFileSync(file, 'utf8');
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') q = false;
      else field += c;
    } else if (c === '"') q = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field); field = '';
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
    } else field += c;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  const [head, ...body] = rows;
  return body.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i] ?? ''])));
}

export type Outcome =
  | { kind: 'decoded'; value: DecodedInstance; ms: number }
  | { kind: 'skipped'; reason: string; ms: number }
  | { kind: 'error'; code: string; message: string; ms: number }
  | { kind: 'untyped'; error: unknown; ms: number };

export async function outcomeOf(bytes: Uint8Array, limits?: Parameters<typeof decodeInstance>[1]): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const r = await decodeInstance(bytes, limits);
    const ms = performance.now() - t0;
    return isSkipped(r) ? { kind: 'skipped', reason: r.reason, ms } : { kind: 'decoded', value: r, ms };
  } catch (err) {
    const ms = performance.now() - t0;
    if (isWardenError(err) && err instanceof Error) return { kind: 'error', code: (err as { code: string }).code, message: err.message, ms };
    return { kind: 'untyped', error: err, ms };
  }
}

export function readCorpusFile(rel: string): Uint8Array {
  return fs.readFileSync(path.join(CORPUS, rel));
}

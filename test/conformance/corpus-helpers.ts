/** Shared helpers for the DICOM conformance tests: corpus location, manifests, decoding to an outcome. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeInstance, isSkipped } from '../../src/dicom';
import { isWardenError } from '../../src/core/errors';
import { parseCsv } from '../../src/eval/dataset';
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

/** A manifest.csv as rows keyed by its header (the same RFC 4180 reader `warden fit` uses). */
export function readCsv(file: string): Record<string, string>[] {
  return parseCsv(fs.readFileSync(file, 'utf8'));
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

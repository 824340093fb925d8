/**
 * Data sources for `warden fit / features / eval`: a folder of DICOM files, a lab manifest.csv (optionally
 * restricted to some splits), or a feature dump written by `warden features` (same split syntax).
 *
 * Syntax: `<path>[:<value>,<value>…]` — the values select rows whose split column (default `split`, see
 * `--split-column`) is one of them, e.g. `data/manifest.csv:model_train,detector_fit`. For fitting and
 * calibration only rows with kind = clean are used.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { WardenError } from '../core/errors';

export type SourceKind = 'folder' | 'manifest' | 'features';

export interface SourceSpec {
  kind: SourceKind;
  path: string;
  /** Allowed values of the split column; empty = all. */
  values: string[];
}

/** Parses `<path>[:v1,v2]`; the suffix is taken as a value list only when the whole string is not a path. */
export function parseSourceSpec(spec: string): SourceSpec {
  let p = spec;
  let values: string[] = [];
  const i = spec.lastIndexOf(':');
  if (i > 0 && !fs.existsSync(spec)) {
    const suffix = spec.slice(i + 1);
    if (!suffix.includes('/') && !suffix.includes('\\')) {
      p = spec.slice(0, i);
      values = suffix.split(',').map((s) => s.trim()).filter(Boolean);
    }
  }
  if (!fs.existsSync(p)) throw new WardenError('USAGE', `Data source ${p} does not exist.`);
  const st = fs.statSync(p);
  let kind: SourceKind;
  if (st.isDirectory()) kind = fs.existsSync(path.join(p, 'features.json')) ? 'features' : 'folder';
  else if (p.toLowerCase().endsWith('.csv')) kind = 'manifest';
  else if (path.basename(p) === 'features.json') {
    kind = 'features';
    p = path.dirname(p);
  } else throw new WardenError('USAGE', `Data source ${p} is neither a folder, a manifest .csv nor a feature dump.`);
  if (kind === 'folder' && values.length) throw new WardenError('USAGE', `Split values (${values.join(',')}) only apply to a manifest or a feature dump, not to the folder ${p}.`);
  return { kind, path: p, values };
}

/** Minimal RFC 4180 CSV parser (quoted fields, doubled quotes, CRLF). */
export function parseCsv(text: string): Record<string, string>[] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else q = false;
      } else field += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      field = '';
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
    } else field += ch;
  }
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  if (rows.length === 0) return [];
  const head = rows[0];
  return rows.slice(1).map((r) => Object.fromEntries(head.map((h, j) => [h, r[j] ?? ''])));
}

export function toCsv(rows: Record<string, unknown>[], columns?: string[]): string {
  const cols = columns ?? [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const esc = (v: unknown): string => {
    const s = v === undefined || v === null ? '' : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [cols.join(','), ...rows.map((r) => cols.map((c) => esc(r[c])).join(','))].join('\n') + '\n';
}

export interface ManifestRow extends Record<string, string> {
  /** Absolute path of the DICOM file. */
  absPath: string;
}

/** Reads a lab manifest; `file` is resolved relative to the manifest's folder. */
export function readManifest(csvPath: string): ManifestRow[] {
  const text = fs.readFileSync(csvPath, 'utf8');
  const rows = parseCsv(text);
  if (rows.length && !('file' in rows[0])) throw new WardenError('USAGE', `Manifest ${csvPath} has no 'file' column.`);
  const base = path.dirname(path.resolve(csvPath));
  return rows.map((r) => ({ ...r, absPath: path.resolve(base, r.file) }));
}

/** Rows selected by a split list (empty = all) and, when given, a kind. */
export function selectRows<T extends Record<string, string>>(rows: T[], values: string[], splitColumn: string, kind?: string): T[] {
  return rows.filter((r) => (values.length === 0 || values.includes(r[splitColumn] ?? '')) && (kind === undefined || (r.kind ?? 'clean') === kind));
}

/** All files under a folder (recursively), sorted, skipping dot-files. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

export function truthy(v: string | undefined): boolean {
  return v !== undefined && ['1', 'true', 'True', 'TRUE', 'yes'].includes(v.trim());
}

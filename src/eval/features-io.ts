/**
 * Feature dump written by `warden features` (read by `warden fit/eval --… <dump>` and by the lab's Python):
 *
 *   <dir>/features.json   header: format, version, model sha256, classes, n, layers {name: dim}, created
 *   <dir>/<layer>.npy     float32 [n, dim] per feature layer (numpy .npy v1.0, little-endian, C order)
 *   <dir>/logits.npy      float32 [n, classes]
 *   <dir>/meta.csv        one row per instance in the same order: index, predicted, + the manifest's columns
 *
 * Python: `np.load(f'{dir}/penultimate.npy')`, `csv.DictReader(open(f'{dir}/meta.csv'))`.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { WardenError } from '../core/errors';
import type { FeatureTable } from '../detectors';
import { parseCsv, toCsv } from './dataset';

export interface FeatureDumpHeader {
  format: 'warden-features';
  version: 1;
  createdAt: string;
  modelSha256: string;
  model?: string;
  classes: string[];
  n: number;
  layers: Record<string, number>;
  source?: string;
  errors?: number;
}

export interface FeatureDump {
  header: FeatureDumpHeader;
  table: FeatureTable;
  logits: Float32Array;
  meta: Record<string, string>[];
}

export function writeNpy(file: string, data: Float32Array, shape: number[]): void {
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const preLen = 10;
  let hlen = dict.length + 1;
  hlen += (64 - ((preLen + hlen) % 64)) % 64;
  const header = Buffer.alloc(preLen + hlen, 0x20);
  header[0] = 0x93;
  header.write('NUMPY', 1, 'latin1');
  header[6] = 1;
  header[7] = 0;
  header.writeUInt16LE(hlen, 8);
  header.write(dict, preLen, 'latin1');
  header[preLen + hlen - 1] = 0x0a;
  fs.writeFileSync(file, Buffer.concat([header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

export function readNpy(file: string): { data: Float32Array; shape: number[] } {
  const buf = fs.readFileSync(file);
  if (buf[0] !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') throw new WardenError('USAGE', `${file} is not a .npy file.`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const dict = buf.toString('latin1', start, start + hlen);
  if (!dict.includes("'<f4'") || dict.includes("'fortran_order': True")) throw new WardenError('USAGE', `${file}: only little-endian float32 C-order .npy files are read.`);
  const m = /'shape': \(([^)]*)\)/.exec(dict);
  const shape = (m?.[1] ?? '').split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const body = buf.subarray(start + hlen);
  const copy = new Uint8Array(body.length);
  copy.set(body);
  return { data: new Float32Array(copy.buffer, 0, body.length / 4), shape };
}

export function writeFeatureDump(dir: string, dump: FeatureDump): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, m] of Object.entries(dump.table.layers)) {
    // a view's layers (`median2/logits`) go to a folder per view
    fs.mkdirSync(path.dirname(path.join(dir, `${name}.npy`)), { recursive: true });
    writeNpy(path.join(dir, `${name}.npy`), m.data, [dump.table.n, m.dim]);
  }
  writeNpy(path.join(dir, 'logits.npy'), dump.logits, [dump.table.n, dump.header.classes.length]);
  const meta = dump.meta.map((r, i) => ({ index: i, predicted: dump.table.predicted[i], ...r }));
  fs.writeFileSync(path.join(dir, 'meta.csv'), toCsv(meta));
  fs.writeFileSync(path.join(dir, 'features.json'), JSON.stringify(dump.header, null, 2) + '\n');
}

export function readFeatureDump(dir: string): FeatureDump {
  let header: FeatureDumpHeader;
  try {
    header = JSON.parse(fs.readFileSync(path.join(dir, 'features.json'), 'utf8'));
  } catch (err) {
    throw new WardenError('USAGE', `${dir} is not a feature dump (features.json unreadable).`, { cause: err });
  }
  if (header.format !== 'warden-features' || header.version !== 1) throw new WardenError('USAGE', `${dir}: unknown feature dump format.`);
  const layers: FeatureTable['layers'] = {};
  for (const [name, dim] of Object.entries(header.layers)) {
    const { data, shape } = readNpy(path.join(dir, `${name}.npy`));
    if (shape[0] !== header.n || shape[1] !== dim) throw new WardenError('USAGE', `${dir}/${name}.npy has shape [${shape}], expected [${header.n}, ${dim}].`);
    layers[name] = { dim, data };
  }
  const logits = readNpy(path.join(dir, 'logits.npy')).data;
  // dumps written before detectors read the logits as a feature have them only as logits.npy
  if (!layers.logits) layers.logits = { dim: header.classes.length, data: logits };
  const metaRows = parseCsv(fs.readFileSync(path.join(dir, 'meta.csv'), 'utf8'));
  const predicted = Int32Array.from(metaRows, (r) => Number(r.predicted));
  const meta = metaRows.map(({ index: _i, predicted: _p, ...rest }) => rest);
  return { header, table: { n: header.n, layers, predicted, numClasses: header.classes.length }, logits, meta };
}

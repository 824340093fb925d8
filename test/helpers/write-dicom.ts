import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import { decodeInstance, isSkipped } from '../../src/dicom';

/**
 * A minimal Part-10 writer for tests: 8-bit MONOCHROME2 Secondary Capture instances (DX, CHEST, no window, no
 * rescale, like the lab's DICOMs) in four native transfer syntaxes, and a JPEG-baseline encapsulation used only to
 * decode the Kermany JPEGs with Warden's own codec. Synthetic UIDs `2.25.<hash>`, no patient identifiers.
 */

export const KERMANY_DIR = path.resolve(__dirname, '..', '..', '..', 'shared', 'datasets', 'kermany-chest-xray-224');
export const SPLITS_CSV = path.resolve(__dirname, '..', '..', 'lab', 'splits.csv');

export const SYNTAX = {
  explicitLittle: '1.2.840.10008.1.2.1',
  implicitLittle: '1.2.840.10008.1.2',
  deflated: '1.2.840.10008.1.2.1.99',
  explicitBig: '1.2.840.10008.1.2.2',
  jpegBaseline: '1.2.840.10008.1.2.4.50',
} as const;
export type NativeSyntax = Exclude<(typeof SYNTAX)[keyof typeof SYNTAX], typeof SYNTAX.jpegBaseline>;

const SC_CLASS = '1.2.840.10008.5.1.4.1.1.7';

export function syntheticUid(...parts: string[]): string {
  return `2.25.${BigInt(`0x${createHash('sha256').update(parts.join('|')).digest('hex').slice(0, 32)}`).toString()}`;
}

type Value = { vr: string; bytes: Buffer };

function pad(s: string, vr: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return b.length % 2 ? Buffer.concat([b, Buffer.from(vr === 'UI' || vr === 'OB' ? [0] : [0x20])]) : b;
}

function us(v: number, little: boolean): Buffer {
  const b = Buffer.alloc(2);
  if (little) b.writeUInt16LE(v);
  else b.writeUInt16BE(v);
  return b;
}

const LONG_VR = new Set(['OB', 'OW', 'SQ', 'UN', 'UT', 'UC', 'UR']);

function element(tag: number, v: Value, explicit: boolean, little: boolean, undefinedLength = false): Buffer {
  const head: Buffer[] = [us(tag >>> 16, little), us(tag & 0xffff, little)];
  const len = undefinedLength ? 0xffffffff : v.bytes.length;
  const u32 = Buffer.alloc(4);
  if (little) u32.writeUInt32LE(len);
  else u32.writeUInt32BE(len);
  if (!explicit) return Buffer.concat([...head, u32, v.bytes]);
  if (LONG_VR.has(v.vr)) return Buffer.concat([...head, Buffer.from(v.vr, 'latin1'), Buffer.alloc(2), u32, v.bytes]);
  return Buffer.concat([...head, Buffer.from(v.vr, 'latin1'), us(v.bytes.length, little), v.bytes]);
}

export interface InstanceSpec {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  instanceNumber: number;
  rows: number;
  columns: number;
}

function part10(syntax: string, spec: InstanceSpec, pixelElements: (explicit: boolean, little: boolean) => Buffer, image: { samples: number; photometric: string }): Buffer {
  const meta = Buffer.concat([
    element(0x00020001, { vr: 'OB', bytes: Buffer.from([0, 1]) }, true, true),
    element(0x00020002, { vr: 'UI', bytes: pad(SC_CLASS, 'UI') }, true, true),
    element(0x00020003, { vr: 'UI', bytes: pad(spec.sopUid, 'UI') }, true, true),
    element(0x00020010, { vr: 'UI', bytes: pad(syntax, 'UI') }, true, true),
    element(0x00020012, { vr: 'UI', bytes: pad(syntheticUid('warden-test-writer'), 'UI') }, true, true),
  ]);
  const groupLength = element(0x00020000, { vr: 'UL', bytes: Buffer.from(Uint32Array.of(meta.length).buffer) }, true, true);
  const explicit = syntax !== SYNTAX.implicitLittle;
  const little = syntax !== SYNTAX.explicitBig;
  const s = (tag: number, vr: string, text: string) => element(tag, { vr, bytes: pad(text, vr) }, explicit, little);
  const u = (tag: number, v: number) => element(tag, { vr: 'US', bytes: us(v, little) }, explicit, little);
  let dataset = Buffer.concat([
    s(0x00080016, 'UI', SC_CLASS), s(0x00080018, 'UI', spec.sopUid), s(0x00080060, 'CS', 'DX'), s(0x00080064, 'CS', 'WSD'),
    s(0x00180015, 'CS', 'CHEST'), s(0x0020000d, 'UI', spec.studyUid), s(0x0020000e, 'UI', spec.seriesUid),
    s(0x00200013, 'IS', String(spec.instanceNumber)),
    u(0x00280002, image.samples), s(0x00280004, 'CS', image.photometric),
    ...(image.samples === 3 ? [u(0x00280006, 0)] : []),
    u(0x00280010, spec.rows), u(0x00280011, spec.columns), u(0x00280100, 8), u(0x00280101, 8), u(0x00280102, 7), u(0x00280103, 0),
    pixelElements(explicit, little),
  ]);
  if (syntax === SYNTAX.deflated) dataset = zlib.deflateRawSync(dataset);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), groupLength, meta, dataset]);
}

/** An 8-bit MONOCHROME2 instance in one of the native syntaxes (deflated = Explicit VR LE dataset, deflated). */
export function grey8Dicom(pixels: Uint8Array, spec: InstanceSpec, syntax: NativeSyntax = SYNTAX.explicitLittle): Buffer {
  const data = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  const even = data.length % 2 ? Buffer.concat([data, Buffer.alloc(1)]) : data;
  return part10(syntax, spec, (explicit, little) => element(0x7fe00010, { vr: 'OB', bytes: even }, explicit, little), { samples: 1, photometric: 'MONOCHROME2' });
}

/** A baseline JPEG (colour, as the Kermany files are) encapsulated in one frame. */
function jpegDicom(jpeg: Buffer, rows: number, columns: number): Buffer {
  const item = (tag: number, body: Buffer) => Buffer.concat([us(0xfffe, true), us(tag, true), Buffer.from(Uint32Array.of(body.length).buffer), body]);
  const frame = jpeg.length % 2 ? Buffer.concat([jpeg, Buffer.alloc(1)]) : jpeg;
  const spec = { studyUid: syntheticUid('jpeg'), seriesUid: syntheticUid('jpeg-series'), sopUid: syntheticUid('jpeg', String(jpeg.length)), instanceNumber: 1, rows, columns };
  return part10(SYNTAX.jpegBaseline, spec, (explicit, little) => Buffer.concat([
    element(0x7fe00010, { vr: 'OB', bytes: Buffer.alloc(0) }, explicit, little, true),
    item(0xe000, Buffer.alloc(0)), item(0xe000, frame), Buffer.concat([us(0xfffe, true), us(0xe0dd, true), Buffer.alloc(4)]),
  ]), { samples: 3, photometric: 'YBR_FULL_422' });
}

/**
 * The lab's pixels for a Kermany image: channel 0 of the decoded RGB JPEG (lab/common.py load_gray_u8), decoded
 * here with Warden's JPEG codec (measured identical to PIL's decode on the dataset).
 */
export async function kermanyGrey(relPath: string): Promise<Uint8Array> {
  const jpeg = fs.readFileSync(path.join(KERMANY_DIR, relPath));
  const decoded = await decodeInstance(jpegDicom(jpeg, 224, 224));
  if (isSkipped(decoded) || decoded.samplesPerPixel !== 3) throw new Error(`cannot decode ${relPath}`);
  const rgb = decoded.frames[0];
  const out = new Uint8Array(decoded.rows * decoded.columns);
  for (let i = 0; i < out.length; i++) out[i] = rgb[i * 3];
  return out;
}

export interface WrittenInstance { file: string; source: string; syntax: string; study: string }

/**
 * Writes Kermany images of the given splits (lab/splits.csv order) as studies of `perStudy` instances under dir,
 * cycling through `syntaxes`. Returns what was written.
 */
export async function writeKermanyStudies(dir: string, sources: string[], opts: { group: string; perStudy?: number; syntaxes?: NativeSyntax[] }): Promise<WrittenInstance[]> {
  const perStudy = opts.perStudy ?? 10;
  const syntaxes = opts.syntaxes ?? [SYNTAX.explicitLittle];
  const out: WrittenInstance[] = [];
  for (let i = 0; i < sources.length; i++) {
    const s = Math.floor(i / perStudy);
    const studyUid = syntheticUid('study', opts.group, String(s));
    const spec = { studyUid, seriesUid: syntheticUid('series', opts.group, String(s)), sopUid: syntheticUid('sop', opts.group, sources[i]), instanceNumber: (i % perStudy) + 1, rows: 224, columns: 224 };
    const syntax = syntaxes[i % syntaxes.length];
    const file = path.join(dir, `study${String(s + 1).padStart(4, '0')}`, `IM${String((i % perStudy) + 1).padStart(2, '0')}.dcm`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, grey8Dicom(await kermanyGrey(sources[i]), spec, syntax));
    out.push({ file, source: sources[i], syntax, study: studyUid });
  }
  return out;
}

/** Paths of lab/splits.csv rows of one split, in file order. */
export function splitPaths(split: string): string[] {
  return fs.readFileSync(SPLITS_CSV, 'utf8').split(/\r?\n/).slice(1).filter(Boolean).map((l) => l.split(',')).filter((c) => c[1] === split).map((c) => c[0]);
}

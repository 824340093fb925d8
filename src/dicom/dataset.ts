/**
 * Part-10 / raw dataset parsing with dcmjs. We read the File Meta group ourselves (so a missing preamble, a
 * missing group length or a missing Transfer Syntax UID are handled), inflate Deflated Explicit VR LE with a
 * size cap, and hand the dataset to dcmjs' element reader.
 */
import * as zlib from 'node:zlib';
import dcmjs from 'dcmjs';
import { WardenError } from '../core/errors';
import type { DecodeLimits } from './limits';
import { TooManyElementsError, withElementBudget } from './dcmjs-bounds';
import { MAX_ITEM_NESTING, itemNestingDepth } from './nesting';

dcmjs.log.setLevel('error');
// "Invalid vr type ox - using OW" and friends: expected on implicit-VR pixel data, not actionable.
dcmjs.log.getLogger('validation.dcmjs').setLevel('silent');

export const UID = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
} as const;

export const MEDIA_STORAGE_DIRECTORY = '1.2.840.10008.1.3.10';

/**
 * A deflated dataset may inflate to at most INFLATE_MAX_RATIO times its compressed size (or INFLATE_FLOOR_BYTES,
 * whichever is larger), within maxBytes. Real deflated DICOM compresses 1.5–4× (the corpus); a decompression bomb
 * compresses ~1000× and, as millions of empty elements, costs dcmjs seconds of main-thread CPU per inflated 10 MB
 * (found by `npm run fuzz`: a 49 KB upload inflating to 48 MiB took 12 s to refuse).
 */
export const INFLATE_MAX_RATIO = 64;
export const INFLATE_FLOOR_BYTES = 4 * 1024 * 1024;

export interface Element {
  vr: string;
  Value?: unknown[];
}
export type Dict = Record<string, Element>;

export interface ParsedDataset {
  /** Transfer syntax as declared in the File Meta, or the one guessed for a raw dataset. */
  transferSyntaxUid: string;
  /** Whether the syntax was guessed (no File Meta, or File Meta without (0002,0010)). */
  guessedSyntax: boolean;
  /** Dataset byte order (pixel data of native syntaxes follows it). */
  littleEndian: boolean;
  dict: Dict;
  /** The last element claimed more bytes than the file holds. */
  truncated: boolean;
  /** Media Storage SOP Class UID from the File Meta, when present. */
  mediaStorageSopClassUid?: string;
  /** The dataset was read as implicit VR although the File Meta declares an explicit-VR syntax. */
  vrMismatch?: boolean;
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

function ascii(u8: Uint8Array, start: number, len: number): string {
  let s = '';
  for (let i = start; i < start + len && i < u8.length; i++) s += String.fromCharCode(u8[i]);
  return s;
}

function isVr(u8: Uint8Array, p: number): boolean {
  if (p + 2 > u8.length) return false;
  const a = u8[p];
  const b = u8[p + 1];
  return a >= 0x41 && a <= 0x5a && b >= 0x41 && b <= 0x5a;
}

interface MetaInfo {
  end: number;
  transferSyntaxUid?: string;
  mediaStorageSopClassUid?: string;
  mediaStorageSopInstanceUid?: string;
}

/** Reads the explicit-VR-LE group 0002 elements starting at `start`. Never trusts (0002,0000). */
function readFileMeta(u8: Uint8Array, start: number): MetaInfo {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  let p = start;
  let ts: string | undefined;
  let sop: string | undefined;
  let instance: string | undefined;
  while (p + 8 <= u8.length) {
    const group = dv.getUint16(p, true);
    if (group !== 0x0002) break;
    const elem = dv.getUint16(p + 2, true);
    if (!isVr(u8, p + 4)) {
      throw new WardenError('DICOM_MALFORMED', 'A File Meta Information element has no explicit VR.');
    }
    const vr = ascii(u8, p + 4, 2);
    let len: number;
    let hdr: number;
    if (LONG_VRS.has(vr)) {
      if (p + 12 > u8.length) throw new WardenError('DICOM_TRUNCATED', 'The file ends inside the File Meta Information.');
      len = dv.getUint32(p + 8, true);
      hdr = 12;
    } else {
      len = dv.getUint16(p + 6, true);
      hdr = 8;
    }
    if (len === 0xffffffff) {
      throw new WardenError('DICOM_MALFORMED', 'A File Meta Information element has an undefined length.');
    }
    if (p + hdr + len > u8.length) {
      throw new WardenError('DICOM_TRUNCATED', 'The file ends inside the File Meta Information.');
    }
    if (elem === 0x0010) ts = ascii(u8, p + hdr, len).replace(/[\0 ]+$/, '').trim();
    if (elem === 0x0002) sop = ascii(u8, p + hdr, len).replace(/[\0 ]+$/, '').trim();
    if (elem === 0x0003) instance = ascii(u8, p + hdr, len).replace(/[\0 ]+$/, '').trim();
    p += hdr + len;
  }
  return { end: p, transferSyntaxUid: ts || undefined, mediaStorageSopClassUid: sop || undefined, mediaStorageSopInstanceUid: instance || undefined };
}

/** Guesses the encoding of a dataset that starts at `p` (no File Meta, or no Transfer Syntax UID in it). */
function guessSyntax(u8: Uint8Array, p: number): string | undefined {
  if (p + 8 > u8.length) return undefined;
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const groupLE = dv.getUint16(p, true);
  const groupBE = dv.getUint16(p, false);
  // A dataset starts with a low group (command 0000, 0001-0008 identification); allow up to 0x0028.
  if (groupLE <= 0x0028 && isVr(u8, p + 4)) return UID.ExplicitVRLittleEndian;
  if (groupLE <= 0x0028 && groupLE !== 0) {
    // implicit: a 32-bit length that fits the file
    const len = dv.getUint32(p + 4, true);
    if (len === 0xffffffff || p + 8 + len <= u8.length) return UID.ImplicitVRLittleEndian;
    return undefined;
  }
  if (groupLE === 0 && !isVr(u8, p + 4)) {
    const len = dv.getUint32(p + 4, true);
    if (len <= u8.length) return UID.ImplicitVRLittleEndian;
  }
  if (groupBE > 0 && groupBE <= 0x0028 && isVr(u8, p + 4)) return UID.ExplicitVRBigEndian;
  return undefined;
}

/** Classifies an exception thrown by dcmjs while reading elements. */
function parseError(err: unknown, truncatedHint: boolean): WardenError {
  if (err instanceof WardenError) return err;
  if (err instanceof TooManyElementsError) {
    return new WardenError('IMAGE_TOO_LARGE', `The dataset holds more than ${err.limit} elements (the decoder's maxElements).`, { cause: err });
  }
  const msg = err instanceof Error ? err.message : String(err);
  if (truncatedHint || err instanceof RangeError
    || /outside the bounds|out of range|beyond|end of|past end|more than currently allocated/i.test(msg)) {
    return new WardenError('DICOM_TRUNCATED', 'The DICOM dataset ends before its declared content.', { cause: err });
  }
  return new WardenError('DICOM_MALFORMED', 'The DICOM dataset could not be parsed.', { cause: err });
}

/** The dataset's bytes, ready for dcmjs: File Meta read, syntax known (or guessed), inflated, nesting checked. */
interface OpenedDataset {
  transferSyntaxUid: string;
  guessedSyntax: boolean;
  littleEndian: boolean;
  /** The syntax dcmjs reads the body with. */
  readSyntax: string;
  vrMismatch: boolean;
  body: ArrayBuffer;
  meta?: MetaInfo;
  /** A DICOMDIR: the body is not read (see parseDataset). */
  directory?: true;
}

/**
 * Reads the File Meta, settles the transfer syntax and hands back the dataset's bytes (inflated for Deflated
 * Explicit VR LE, within maxBytes and INFLATE_MAX_RATIO). `prefix`: the bytes may be the first part of a longer file
 * (the header reader), so a deflate stream may stop short. The one way into a dataset for both the decoder and the
 * header reader, so both read the same bytes the same way.
 * @throws WardenError NOT_DICOM, DICOM_TRUNCATED, DICOM_MALFORMED, IMAGE_TOO_LARGE
 */
function openDataset(bytes: Uint8Array, limits: DecodeLimits, prefix: boolean): OpenedDataset {
  const u8 = bytes;
  let p: number;
  let meta: MetaInfo | undefined;
  if (u8.length >= 132 && ascii(u8, 128, 4) === 'DICM') {
    meta = readFileMeta(u8, 132);
    p = meta.end;
  } else if (u8.length >= 4 && ascii(u8, 0, 4) === 'DICM') {
    meta = readFileMeta(u8, 4);
    p = meta.end;
  } else {
    p = 0;
    // File Meta without preamble (starts with group 0002)
    if (u8.length >= 8 && u8[0] === 0x02 && u8[1] === 0x00 && isVr(u8, 4)) {
      meta = readFileMeta(u8, 0);
      p = meta.end;
    }
  }
  let ts = meta?.transferSyntaxUid;
  if (meta?.mediaStorageSopClassUid === MEDIA_STORAGE_DIRECTORY && !prefix) {
    return { transferSyntaxUid: ts ?? '', guessedSyntax: false, littleEndian: true, readSyntax: UID.ExplicitVRLittleEndian, vrMismatch: false,
      body: new ArrayBuffer(0), meta, directory: true };
  }
  let guessed = false;
  if (!ts) {
    ts = guessSyntax(u8, p);
    guessed = true;
    if (!ts) {
      throw new WardenError(
        'NOT_DICOM',
        meta ? 'The File Meta has no Transfer Syntax UID and the dataset encoding cannot be recognised.'
          : 'The bytes are neither a DICOM Part-10 file nor a recognisable DICOM dataset.',
      );
    }
  }
  if (p >= u8.length) {
    throw new WardenError('DICOM_TRUNCATED', 'The DICOM file ends after its File Meta Information.');
  }

  let body: ArrayBuffer;
  if (ts === UID.DeflatedExplicitVRLittleEndian) {
    let inflated: Buffer;
    const compressed = u8.subarray(p);
    const maxInflated = Math.min(limits.maxBytes, Math.max(INFLATE_FLOOR_BYTES, INFLATE_MAX_RATIO * compressed.length));
    try {
      inflated = zlib.inflateRawSync(compressed, { maxOutputLength: maxInflated, ...(prefix ? { finishFlush: zlib.constants.Z_SYNC_FLUSH } : {}) });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        throw new WardenError('IMAGE_TOO_LARGE', `The deflated dataset inflates to more than ${maxInflated} bytes (the decoder's maxBytes, or ${INFLATE_MAX_RATIO} times its compressed size).`, { cause: err });
      }
      throw new WardenError('DICOM_MALFORMED', 'The deflated dataset could not be inflated.', { cause: err });
    }
    body = inflated.buffer.slice(inflated.byteOffset, inflated.byteOffset + inflated.byteLength) as ArrayBuffer;
  } else {
    body = u8.buffer.slice(u8.byteOffset + p, u8.byteOffset + u8.byteLength) as ArrayBuffer;
  }

  const littleEndian = ts !== UID.ExplicitVRBigEndian;
  if (itemNestingDepth(new Uint8Array(body), littleEndian) > MAX_ITEM_NESTING) {
    throw new WardenError('DICOM_MALFORMED', `The dataset nests sequence items more than ${MAX_ITEM_NESTING} levels deep.`);
  }
  // Everything that is not implicit LE or explicit BE is read as explicit LE (encapsulated syntaxes too).
  let readSyntax: string = ts === UID.ImplicitVRLittleEndian || ts === UID.ExplicitVRBigEndian ? ts : UID.ExplicitVRLittleEndian;
  // pydicom's rule: a dataset declared explicit whose first element has no VR letters is read as implicit LE.
  let vrMismatch = false;
  const head = new Uint8Array(body, 0, Math.min(8, body.byteLength));
  if (readSyntax === UID.ExplicitVRLittleEndian && head.length === 8 && !isVr(head, 4)) {
    readSyntax = UID.ImplicitVRLittleEndian;
    vrMismatch = true;
  }
  return { transferSyntaxUid: ts, guessedSyntax: guessed, littleEndian, readSyntax, vrMismatch, body, ...(meta ? { meta } : {}) };
}

/**
 * The elements of a dataset up to and including `untilTag` (and nothing past a greater tag), read leniently from
 * what `bytes` holds (a prefix of the file is fine): for the header reader. The File Meta's own values come back
 * with it.
 * @throws WardenError as openDataset (the caller treats any as "no header")
 */
export function readDatasetHead(bytes: Uint8Array, untilTag: string, limits: DecodeLimits): { dict: Dict; meta: { transferSyntaxUid?: string; mediaStorageSopClassUid?: string; mediaStorageSopInstanceUid?: string } } {
  const opened = openDataset(bytes, limits, true);
  const stream = new dcmjs.data.ReadBufferStream(opened.body, opened.littleEndian, { start: null, stop: null, noCopy: true });
  const dict = withElementBudget(limits.maxElements, () => dcmjs.data.DicomMessage._read(stream, opened.readSyntax, { ignoreErrors: true, untilTag, includeUntilTagValue: true, stopOnGreaterTag: true }) as Dict);
  const m = opened.meta;
  return {
    dict,
    meta: {
      ...(m?.transferSyntaxUid ? { transferSyntaxUid: m.transferSyntaxUid } : {}),
      ...(m?.mediaStorageSopClassUid ? { mediaStorageSopClassUid: m.mediaStorageSopClassUid } : {}),
      ...(m?.mediaStorageSopInstanceUid ? { mediaStorageSopInstanceUid: m.mediaStorageSopInstanceUid } : {}),
    },
  };
}

/** Parses Part-10 bytes (or a raw dataset) into a dcmjs element dictionary. */
export function parseDataset(bytes: Uint8Array, limits: DecodeLimits): ParsedDataset {
  const opened = openDataset(bytes, limits, false);
  const { meta, transferSyntaxUid: ts, guessedSyntax: guessed, littleEndian, readSyntax, vrMismatch, body } = opened;
  if (opened.directory) {
    // DICOMDIR: nothing to scan; do not parse its (often large, offset-laden) record sequence
    return { transferSyntaxUid: ts, guessedSyntax: false, littleEndian: true, dict: {}, truncated: false,
      mediaStorageSopClassUid: MEDIA_STORAGE_DIRECTORY };
  }
  const read = (ignoreErrors: boolean) => {
    const stream = new dcmjs.data.ReadBufferStream(body, littleEndian, { start: null, stop: null, noCopy: false });
    try {
      const dict = withElementBudget(limits.maxElements, () => dcmjs.data.DicomMessage._read(stream, readSyntax, {
        ignoreErrors,
        untilTag: null,
        includeUntilTagValue: false,
        stopOnGreaterTag: false,
      }) as Dict);
      return { dict, stream };
    } catch (err) {
      throw parseError(err, stream.offset >= body.byteLength);
    }
  };
  let dict: Dict;
  let stream: { offset: number; size: number };
  try {
    ({ dict, stream } = read(false));
  } catch (err) {
    // dcmjs refuses multi-valued Specific Character Set (ISO 2022 code extensions); text decoding does not
    // matter to us, so read again tolerating it, and require the whole dataset to have been consumed.
    const cause = (err as { cause?: unknown }).cause;
    if (!(cause instanceof Error) || !/character set/i.test(cause.message)) throw err;
    ({ dict, stream } = read(true));
    if (stream.offset < body.byteLength) {
      throw new WardenError('DICOM_MALFORMED', 'The DICOM dataset could not be parsed to its end.', { cause: err });
    }
  }
  if (!dict || Object.keys(dict).length === 0) {
    throw new WardenError('NOT_DICOM', 'The bytes hold no DICOM elements.');
  }
  return {
    transferSyntaxUid: ts,
    guessedSyntax: guessed,
    littleEndian,
    dict,
    // dcmjs' increment() grows `size` past the end instead of failing, so compare with the real length
    truncated: stream.offset > body.byteLength,
    ...(meta?.mediaStorageSopClassUid ? { mediaStorageSopClassUid: meta.mediaStorageSopClassUid } : {}),
    ...(vrMismatch ? { vrMismatch } : {}),
  };
}

// ---- attribute access -------------------------------------------------------------------------------

export function first(dict: Dict, tag: string): unknown {
  const el = dict[tag];
  if (!el || !Array.isArray(el.Value) || el.Value.length === 0) return undefined;
  return el.Value[0];
}

export function str(dict: Dict, tag: string): string | undefined {
  const v = first(dict, tag);
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object') return undefined;
  const s = String(v).replace(/[\0 ]+$/, '').trim();
  return s.length ? s : undefined;
}

/** Number from US/UL/SS/IS/DS etc. Returns NaN when present but not numeric, undefined when absent. */
export function num(dict: Dict, tag: string, index = 0): number | undefined {
  const el = dict[tag];
  if (!el || !Array.isArray(el.Value) || el.Value.length <= index) return undefined;
  const v = el.Value[index];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const t = v.replace(/[\0 ]+$/, '').trim();
    if (t === '') return undefined;
    return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : NaN;
  }
  return NaN;
}

/** Binary value (OB/OW/OF/US LUT data…) as the list of ArrayBuffers dcmjs produced. */
export function buffers(dict: Dict, tag: string): ArrayBuffer[] | undefined {
  const el = dict[tag];
  if (!el || !Array.isArray(el.Value)) return undefined;
  const out: ArrayBuffer[] = [];
  for (const v of el.Value) {
    if (v instanceof ArrayBuffer) out.push(v);
    else if (ArrayBuffer.isView(v)) out.push(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength) as ArrayBuffer);
    else if (Array.isArray(v)) {
      // noCopy fragments
      for (const f of v) if (f instanceof ArrayBuffer) out.push(f);
    } else return undefined;
  }
  return out;
}

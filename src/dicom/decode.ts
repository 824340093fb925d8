/**
 * decodeInstance: Part-10 bytes → DecodedInstance (modality values per frame) | SkippedInstance, or a typed
 * WardenError. Size limits are checked on the attributes before any pixel buffer is allocated.
 */
import { WardenError, isWardenError, toWardenError } from '../core/errors';
import type { DecodedInstance, SkippedInstance } from '../core/types';
import { MEDIA_STORAGE_DIRECTORY, buffers, num, parseDataset, str, type Dict, type ParsedDataset } from './dataset';
import { assembleFrames } from './frames';
import { hashUid } from './hash';
import { resolveLimits, type DecodeLimits } from './limits';
import {
  applyPalette, applyRescale, expand422, expandSegmentedLut, nativeFrameBits, planarToInterleaved, readSamples,
  ybrFullToRgb, type ChannelLut, type NativeFrame, type PixelModule,
} from './pixels';
import { getDecoder, type TransferSyntaxEntry } from './registry';
import { peekCodestream } from './codecs/peek';
import { PALETTE_TAGS, TAG } from './tags';

const T = TAG;
const LUT_DESCRIPTOR = PALETTE_TAGS.descriptor;
const LUT_DATA = PALETTE_TAGS.data;
const SEGMENTED_LUT_DATA = PALETTE_TAGS.segmentedData;

/** SOP classes that never carry an image to scan, even if an element named Pixel Data shows up. */
const NON_IMAGE_SOP_PREFIXES: [string, string][] = [
  ['1.2.840.10008.5.1.4.1.1.88.', 'structured report'],
  ['1.2.840.10008.5.1.4.1.1.11.', 'presentation state'],
  ['1.2.840.10008.5.1.4.1.1.481.5', 'RT plan'],
  ['1.2.840.10008.5.1.4.1.1.481.8', 'RT ion plan'],
  ['1.2.840.10008.5.1.4.1.1.481.3', 'RT structure set'],
  ['1.2.840.10008.5.1.4.1.1.104.', 'encapsulated document'],
  ['1.2.840.10008.1.3.10', 'media storage directory'],
];

/** Decode options beyond the size limits. */
export type { DecodeLimits };

function isUidLike(s: string | undefined): s is string {
  return typeof s === 'string' && /^[0-9.]{1,64}$/.test(s);
}

function skipped(reason: string, parsed: ParsedDataset): SkippedInstance {
  const d = parsed.dict;
  const uid = str(d, T.SOPInstanceUID);
  const sop = str(d, T.SOPClassUID);
  const modality = str(d, T.Modality);
  return {
    skipped: true,
    reason,
    ...(uid ? { sopInstanceUidHash: hashUid(uid) } : {}),
    ...(isUidLike(sop) ? { sopClassUid: sop } : {}),
    transferSyntaxUid: parsed.transferSyntaxUid,
    ...(modality ? { modality } : {}),
  };
}

function intAttr(d: Dict, tag: string, name: string, fallback?: number): number {
  const v = num(d, tag);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new WardenError('DICOM_MALFORMED', `The image has no ${name}.`);
  }
  if (!Number.isInteger(v) || v < 0) throw new WardenError('DICOM_MALFORMED', `${name} is not a non-negative integer.`);
  return v;
}

function readPixelModule(d: Dict, floatBits: 32 | 64 | undefined): PixelModule {
  const rows = intAttr(d, T.Rows, 'Rows');
  const columns = intAttr(d, T.Columns, 'Columns');
  const frames = intAttr(d, T.NumberOfFrames, 'Number of Frames', 1) || 1;
  const samplesPerPixel = intAttr(d, T.SamplesPerPixel, 'Samples per Pixel', 1);
  const bitsAllocated = intAttr(d, T.BitsAllocated, 'Bits Allocated', floatBits ?? undefined);
  const bitsStored = intAttr(d, T.BitsStored, 'Bits Stored', floatBits ?? bitsAllocated);
  const highBit = intAttr(d, T.HighBit, 'High Bit', bitsStored - 1);
  const pr = intAttr(d, T.PixelRepresentation, 'Pixel Representation', 0);
  const planar = intAttr(d, T.PlanarConfiguration, 'Planar Configuration', 0);
  const pi = (str(d, T.PhotometricInterpretation) ?? (samplesPerPixel === 3 ? 'RGB' : 'MONOCHROME2')).toUpperCase();
  if (rows === 0 || columns === 0) throw new WardenError('DICOM_MALFORMED', 'Rows or Columns is zero.');
  if (samplesPerPixel !== 1 && samplesPerPixel !== 3) {
    throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Samples per Pixel ${samplesPerPixel} is not supported (1 or 3).`);
  }
  if (pr !== 0 && pr !== 1) throw new WardenError('DICOM_MALFORMED', `Pixel Representation ${pr} is invalid.`);
  if (floatBits) {
    if (bitsAllocated !== floatBits) {
      throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Float pixel data with Bits Allocated ${bitsAllocated} is not supported.`);
    }
  } else if (![1, 8, 12, 16, 32].includes(bitsAllocated)) {
    throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Bits Allocated ${bitsAllocated} is not supported (1, 8, 12 packed, 16 or 32).`);
  }
  if (!floatBits && (bitsStored < 1 || bitsStored > bitsAllocated || highBit < bitsStored - 1 || highBit >= bitsAllocated)) {
    throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Bits Stored ${bitsStored} / High Bit ${highBit} do not fit Bits Allocated ${bitsAllocated}.`);
  }
  const colourPis = ['RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_ICT', 'YBR_RCT', 'YBR_PARTIAL_420', 'YBR_PARTIAL_422'];
  if (samplesPerPixel === 3 && !colourPis.includes(pi)) {
    throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Photometric Interpretation ${pi.slice(0, 16)} with 3 samples per pixel is not supported.`);
  }
  if (samplesPerPixel === 1 && !['MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR'].includes(pi)) {
    throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Photometric Interpretation ${pi.slice(0, 16)} with 1 sample per pixel is not supported.`);
  }
  return {
    rows, columns, frames, samplesPerPixel, bitsAllocated, bitsStored, highBit,
    pixelRepresentation: pr as 0 | 1,
    planarConfiguration: planar === 1 ? 1 : 0,
    photometricInterpretation: pi,
    ...(floatBits ? { floatBits } : {}),
  };
}

function checkLimits(px: PixelModule, limits: DecodeLimits): void {
  const perFrame = px.rows * px.columns;
  if (perFrame > limits.maxPixelsPerFrame) {
    throw new WardenError('IMAGE_TOO_LARGE', `A frame of ${px.rows}×${px.columns} pixels exceeds the limit of ${limits.maxPixelsPerFrame}.`);
  }
  if (px.frames > limits.maxFrames) {
    throw new WardenError('IMAGE_TOO_LARGE', `${px.frames} frames exceed the limit of ${limits.maxFrames}.`);
  }
  if (perFrame * px.frames > limits.maxTotalPixels) {
    throw new WardenError('IMAGE_TOO_LARGE', `${perFrame * px.frames} pixels over all frames exceed the limit of ${limits.maxTotalPixels}.`);
  }
}

function u8(b: ArrayBuffer): Uint8Array {
  return new Uint8Array(b);
}

/** Native (uncompressed) pixel data → per-frame views, after checking the length. */
function nativeFrames(parsed: ParsedDataset, px: PixelModule, data: Uint8Array, entry: TransferSyntaxEntry): NativeFrame[] {
  const frameBits = nativeFrameBits(px);
  const needed = Math.ceil((frameBits * px.frames) / 8);
  if (data.length < needed) {
    if (parsed.truncated) {
      throw new WardenError('DICOM_TRUNCATED', `The file ends inside the Pixel Data (${data.length} of ${needed} bytes).`);
    }
    throw new WardenError('PIXEL_DATA_LENGTH_MISMATCH', `Pixel Data holds ${data.length} bytes; rows, columns, frames and bit depth need ${needed}.`);
  }
  const out: NativeFrame[] = [];
  for (let f = 0; f < px.frames; f++) {
    const bitStart = f * frameBits;
    const byteStart = Math.floor(bitStart / 8);
    const byteEnd = Math.ceil((bitStart + frameBits) / 8);
    out.push({
      bytes: data.subarray(byteStart, byteEnd),
      littleEndian: entry.littleEndian !== false,
      bitsAllocated: px.floatBits ?? px.bitsAllocated,
      bitOffset: px.bitsAllocated === 1 ? bitStart % 8 : 0,
      samplesPerPixel: px.samplesPerPixel,
      planarConfiguration: px.planarConfiguration,
      photometricInterpretation: px.photometricInterpretation,
    });
  }
  return out;
}

function readLuts(d: Dict, littleEndian: boolean): [ChannelLut, ChannelLut, ChannelLut] {
  const luts: ChannelLut[] = [];
  for (let c = 0; c < 3; c++) {
    const desc = descriptor(d, LUT_DESCRIPTOR[c], littleEndian);
    if (!desc) throw new WardenError('DICOM_MALFORMED', 'A PALETTE COLOR image lacks its palette LUT descriptor.');
    const [nr, first, bits] = desc;
    const entries = nr === 0 ? 65536 : nr;
    if (bits !== 8 && bits !== 16) throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Palette LUT entries of ${bits} bits are not supported.`);
    const seg = buffers(d, SEGMENTED_LUT_DATA[c]);
    const plain = buffers(d, LUT_DATA[c]);
    let data: Uint16Array;
    if (plain && plain.length) {
      const bytes = u8(plain[0]);
      if (bits === 8 && bytes.length === entries) data = Uint16Array.from(bytes);
      else data = words(bytes, littleEndian, entries);
      // 8-bit entries stored one per 16-bit word keep the value in the low byte
      if (bits === 8 && data.some((v) => v > 255)) data = data.map((v) => v >> 8);
    } else if (seg && seg.length) {
      const segWords = words(u8(seg[0]), littleEndian, Math.floor(seg[0].byteLength / 2));
      data = expandSegmentedLut(segWords, entries);
    } else {
      throw new WardenError('DICOM_MALFORMED', 'A PALETTE COLOR image lacks its palette LUT data.');
    }
    if (data.length === 0) throw new WardenError('DICOM_MALFORMED', 'A palette LUT is empty.');
    luts.push({ firstMapped: first, data, bits });
  }
  return luts as [ChannelLut, ChannelLut, ChannelLut];
}

function words(bytes: Uint8Array, littleEndian: boolean, count: number): Uint16Array {
  const n = Math.min(count, Math.floor(bytes.length / 2));
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = littleEndian ? bytes[2 * i] | (bytes[2 * i + 1] << 8) : (bytes[2 * i] << 8) | bytes[2 * i + 1];
  return out;
}

function descriptor(d: Dict, tag: string, littleEndian: boolean): [number, number, number] | undefined {
  const el = d[tag];
  if (!el || !Array.isArray(el.Value)) return undefined;
  if (el.Value.length >= 3 && el.Value.every((v) => typeof v === 'number')) {
    const v = el.Value as number[];
    // first mapped may be SS; entries and bits are unsigned
    return [v[0] & 0xffff, v[1], v[2]];
  }
  const b = buffers(d, tag);
  if (b && b.length && b[0].byteLength >= 6) {
    const w = words(u8(b[0]), littleEndian, 3);
    return [w[0], w[1], w[2]];
  }
  return undefined;
}

/** Turns one decoded frame into the output layout: modality values (grey) or interleaved RGB (colour). */
function finishFrame(frame: NativeFrame, px: PixelModule, luts: [ChannelLut, ChannelLut, ChannelLut] | undefined,
  rescale: { slope: number; intercept: number } | undefined): Float32Array {
  const pixels = px.rows * px.columns;
  const pi = frame.photometricInterpretation;
  if (px.samplesPerPixel === 1 || frame.samplesPerPixel === 1) {
    if (frame.bytes.length * 8 < pixels * (px.floatBits ?? frame.bitsAllocated) + (frame.bitOffset ?? 0)) {
      throw new WardenError('PIXEL_DECODE_FAILED', 'A decoded frame is shorter than Rows × Columns.');
    }
    const grey = readSamples(frame, px, pixels);
    if (luts) return applyPalette(grey, luts);
    if (rescale) applyRescale(grey, rescale.slope, rescale.intercept);
    return grey;
  }
  // colour
  const sub422 = pi === 'YBR_FULL_422' && px.samplesPerPixel === 3 && isNativeLayout422(frame, px);
  const count = sub422 ? pixels * 2 : pixels * 3;
  const bytesPer = Math.ceil(frame.bitsAllocated / 8);
  if (frame.bytes.length < count * bytesPer) {
    throw new WardenError('PIXEL_DECODE_FAILED', 'A decoded colour frame is shorter than Rows × Columns × 3.');
  }
  let rgb = readSamples(frame, px, count);
  if (sub422) rgb = expand422(rgb, px.rows, px.columns);
  else if (frame.planarConfiguration === 1) rgb = planarToInterleaved(rgb, pixels);
  if (pi === 'YBR_FULL' || pi === 'YBR_FULL_422') ybrFullToRgb(rgb, Math.min(px.bitsStored, frame.bitsAllocated));
  else if (pi === 'YBR_PARTIAL_420' || pi === 'YBR_PARTIAL_422') {
    throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `${pi} colour is only supported when the codec converts it.`);
  }
  return rgb;
}

/** Native YBR_FULL_422 frames are subsampled (2 samples per pixel); codec output is not. */
function isNativeLayout422(frame: NativeFrame, px: PixelModule): boolean {
  const full = px.rows * px.columns * 3 * Math.ceil(frame.bitsAllocated / 8);
  return frame.bytes.length < full;
}

/**
 * Decodes one DICOM instance.
 * @throws WardenError NOT_DICOM, DICOM_TRUNCATED, DICOM_MALFORMED, UNSUPPORTED_TRANSFER_SYNTAX,
 *   PIXEL_DATA_LENGTH_MISMATCH, PIXEL_DECODE_FAILED, UNSUPPORTED_PIXEL_FORMAT, IMAGE_TOO_LARGE.
 */
export async function decodeInstance(bytes: Uint8Array, limitsIn?: Partial<DecodeLimits>): Promise<DecodedInstance | SkippedInstance> {
  try {
    return await decodeUnsafe(bytes, resolveLimits(limitsIn));
  } catch (err) {
    if (err instanceof WardenError) throw err;
    if (isWardenError(err)) throw toWardenError(err, 'INTERNAL', 'Decoding failed.');
    throw new WardenError('DICOM_MALFORMED', 'The DICOM instance could not be decoded.', { cause: err });
  }
}

async function decodeUnsafe(bytes: Uint8Array, limits: DecodeLimits): Promise<DecodedInstance | SkippedInstance> {
  if (!(bytes instanceof Uint8Array)) throw new WardenError('NOT_DICOM', 'The input is not a byte array.');
  if (bytes.length > limits.maxBytes) {
    throw new WardenError('IMAGE_TOO_LARGE', `The instance is ${bytes.length} bytes; the limit is ${limits.maxBytes}.`);
  }
  if (bytes.length < 8) throw new WardenError('NOT_DICOM', 'The input is too short to be DICOM.');
  const parsed = parseDataset(bytes, limits);
  const d = parsed.dict;

  if (parsed.mediaStorageSopClassUid === MEDIA_STORAGE_DIRECTORY || d[T.DirectoryRecordSequence]) return skipped('DICOMDIR (media storage directory), not an image', parsed);
  const sop = str(d, T.SOPClassUID);
  if (sop) {
    for (const [prefix, label] of NON_IMAGE_SOP_PREFIXES) {
      if (prefix.endsWith('.') ? sop.startsWith(prefix) : sop === prefix) {
        return skipped(`${label}, not an image`, parsed);
      }
    }
  }
  const floatBits: 32 | 64 | undefined = d[T.PixelData] ? undefined : d[T.FloatPixelData] ? 32 : d[T.DoubleFloatPixelData] ? 64 : undefined;
  const pixelTag = d[T.PixelData] ? T.PixelData : floatBits === 32 ? T.FloatPixelData : floatBits === 64 ? T.DoubleFloatPixelData : undefined;
  if (!pixelTag) return skipped('no Pixel Data', parsed);

  if (parsed.truncated) {
    throw new WardenError('DICOM_TRUNCATED', 'The file ends inside an element (the last element claims more bytes than remain).');
  }
  const px = readPixelModule(d, floatBits);
  checkLimits(px, limits);
  const entry = getDecoder(parsed.transferSyntaxUid);

  const sopUid = str(d, T.SOPInstanceUID);
  const isPalette = px.photometricInterpretation === 'PALETTE COLOR';
  const luts = isPalette ? readLuts(d, parsed.littleEndian) : undefined;
  let rescale: { slope: number; intercept: number } | undefined;
  const slope = num(d, T.RescaleSlope);
  const intercept = num(d, T.RescaleIntercept);
  if ((slope !== undefined || intercept !== undefined) && px.samplesPerPixel === 1 && !isPalette) {
    const s = slope ?? 1;
    const i = intercept ?? 0;
    if (!Number.isFinite(s) || !Number.isFinite(i)) throw new WardenError('DICOM_MALFORMED', 'Rescale Slope or Intercept is not a number.');
    rescale = { slope: s, intercept: i };
  }

  const items = buffers(d, pixelTag);
  if (!items || items.length === 0) throw new WardenError('DICOM_MALFORMED', 'The Pixel Data element has no value.');

  const out: Float32Array[] = [];
  if (!entry.encapsulated) {
    let data = items.length === 1 ? u8(items[0]) : concatBuffers(items);
    // Explicit VR Big Endian with OW: 8-bit samples are swapped within each 16-bit word
    if (entry.littleEndian === false && d[pixelTag].vr === 'OW' && px.bitsAllocated <= 8) data = swap16(data);
    for (const frame of nativeFrames(parsed, px, data, entry)) out.push(finishFrame(frame, px, luts, rescale));
  } else {
    if (floatBits) throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', 'Float Pixel Data cannot be encapsulated.');
    if (px.bitsAllocated === 12) throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', 'Bits Allocated 12 is only supported uncompressed.');
    if (entry.prepare) await entry.prepare();
    const eot = extendedOffsets(d);
    const frames = assembleFrames({
      items: items.map(u8),
      frames: px.frames,
      extendedOffsets: eot,
      markerSplittable: entry.keyword.startsWith('JPEG') || entry.keyword.startsWith('HTJ2K'),
    });
    for (const enc of frames) {
      checkCodestream(enc, px, entry);
      const frame = entry.decodeFrame!(enc, px);
      out.push(finishFrame(frame, px, luts, rescale));
    }
  }

  const wc = num(d, T.WindowCenter);
  const ww = num(d, T.WindowWidth);
  const ps0 = num(d, T.PixelSpacing, 0);
  const ps1 = num(d, T.PixelSpacing, 1);
  const modality = str(d, T.Modality);
  const bodyPart = str(d, T.BodyPartExamined);
  const colour = px.samplesPerPixel === 3 || isPalette;
  const result: DecodedInstance = {
    sopInstanceUidHash: sopUid ? hashUid(sopUid) : '',
    sopClassUid: isUidLike(sop) ? sop : '',
    transferSyntaxUid: parsed.transferSyntaxUid,
    ...(modality ? { modality } : {}),
    ...(bodyPart ? { bodyPartExamined: bodyPart } : {}),
    photometricInterpretation: px.photometricInterpretation,
    rows: px.rows,
    columns: px.columns,
    numberOfFrames: px.frames,
    samplesPerPixel: colour ? 3 : 1,
    bitsAllocated: px.bitsAllocated,
    bitsStored: px.bitsStored,
    pixelRepresentation: px.pixelRepresentation,
    frames: out,
    ...(wc !== undefined && ww !== undefined && Number.isFinite(wc) && Number.isFinite(ww) ? { window: { center: wc, width: ww } } : {}),
    ...(ps0 !== undefined && ps1 !== undefined && Number.isFinite(ps0) && Number.isFinite(ps1) ? { pixelSpacing: [ps0, ps1] as [number, number] } : {}),
    rescaled: rescale !== undefined,
    ...(luts ? { colourBits: Math.max(...luts.map((l) => l.bits)) } : {}),
  };
  return result;
}

function swap16(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(src.length);
  const n = src.length & ~1;
  for (let i = 0; i < n; i += 2) {
    out[i] = src[i + 1];
    out[i + 1] = src[i];
  }
  if (n < src.length) out[n] = src[n];
  return out;
}

function concatBuffers(items: ArrayBuffer[]): Uint8Array {
  const n = items.reduce((a, b) => a + b.byteLength, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const b of items) {
    out.set(new Uint8Array(b), o);
    o += b.byteLength;
  }
  return out;
}

function extendedOffsets(d: Dict): bigint[] | undefined {
  const b = buffers(d, T.ExtendedOffsetTable);
  if (!b || !b.length) return undefined;
  const bytes = u8(b[0]);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: bigint[] = [];
  for (let i = 0; i + 8 <= bytes.length; i += 8) out.push(dv.getBigUint64(i, true));
  return out;
}

/** Rejects a codestream whose declared size disagrees with Rows × Columns (before the codec allocates). */
function checkCodestream(enc: Uint8Array, px: PixelModule, entry: TransferSyntaxEntry): void {
  if (!entry.keyword.startsWith('JPEG') && !entry.keyword.startsWith('HTJ2K')) return;
  const info = peekCodestream(enc);
  if (!info) return;
  if (info.width !== px.columns || info.height !== px.rows) {
    throw new WardenError('PIXEL_DECODE_FAILED',
      `The ${entry.keyword} codestream declares ${info.width}×${info.height} pixels; Rows × Columns are ${px.rows}×${px.columns}.`);
  }
}

/** Type guard for the skipped (non-image) result of decodeInstance. */
export function isSkipped(x: DecodedInstance | SkippedInstance | unknown): x is SkippedInstance {
  return typeof x === 'object' && x !== null && (x as { skipped?: unknown }).skipped === true;
}

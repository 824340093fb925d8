/**
 * Pixel processing, codec-independent: native (uncompressed) sample bytes → numbers, planar → interleaved,
 * YBR → RGB, PALETTE COLOR → RGB, modality rescale. Pure functions over typed arrays.
 */
import { WardenError } from '../core/errors';

/** Image Pixel module attributes that drive decoding. */
export interface PixelModule {
  rows: number;
  columns: number;
  frames: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  pixelRepresentation: 0 | 1;
  planarConfiguration: 0 | 1;
  photometricInterpretation: string;
  /** Float Pixel Data (32) or Double Float Pixel Data (64) instead of integer Pixel Data. */
  floatBits?: 32 | 64;
}

/** One frame of native samples as laid out by the file or by a codec. */
export interface NativeFrame {
  bytes: Uint8Array;
  littleEndian: boolean;
  bitsAllocated: number;
  /** Bit offset of the first sample (only for bitsAllocated 1 in native multi-frame data). */
  bitOffset?: number;
  samplesPerPixel: number;
  planarConfiguration: 0 | 1;
  /** Photometric of the samples (a codec may already have converted YBR to RGB). */
  photometricInterpretation: string;
}

/** Expected byte length of one native frame (YBR_FULL_422 holds 2 samples per pixel). */
export function nativeFrameBits(px: PixelModule): number {
  const samples = px.photometricInterpretation === 'YBR_FULL_422' && px.samplesPerPixel === 3 ? 2 : px.samplesPerPixel;
  const bits = px.floatBits ?? px.bitsAllocated;
  return px.rows * px.columns * samples * bits;
}

/**
 * Reads the samples of one frame as numbers, masking to Bits Stored and sign-extending when signed.
 * `count` samples are read (rows*columns*storedSamplesPerPixel).
 */
export function readSamples(frame: NativeFrame, px: PixelModule, count: number): Float32Array {
  const out = new Float32Array(count);
  const src = frame.bytes;
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const le = frame.littleEndian;
  const ba = frame.bitsAllocated;
  if (px.floatBits === 32) {
    for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, le);
    return out;
  }
  if (px.floatBits === 64) {
    for (let i = 0; i < count; i++) out[i] = dv.getFloat64(i * 8, le);
    return out;
  }
  const stored = Math.min(px.bitsStored, ba);
  // The codec may report fewer bits than the file (e.g. JPEG precision); stored bits always come from the file.
  const shift = ba === px.bitsAllocated ? Math.max(0, px.highBit + 1 - stored) : 0;
  const signed = px.pixelRepresentation === 1;
  if (ba === 1) {
    const off = frame.bitOffset ?? 0;
    for (let i = 0; i < count; i++) {
      const b = off + i;
      out[i] = (src[b >> 3] >> (b & 7)) & 1;
    }
    return out;
  }
  if (ba === 12) {
    // packed 12-bit (ACR-NEMA style): two samples in three bytes, little-endian nibble order
    const mask = (1 << stored) - 1;
    for (let i = 0; i < count; i++) {
      const b = (i >> 1) * 3;
      const raw = i & 1 ? (src[b + 1] >> 4) | (src[b + 2] << 4) : src[b] | ((src[b + 1] & 0x0f) << 8);
      let v = (raw >> shift) & mask;
      if (signed && v & (1 << (stored - 1))) v -= 1 << stored;
      out[i] = v;
    }
    return out;
  }
  if (ba === 8 || ba === 16) {
    const mask = (1 << stored) - 1;
    const sign = 1 << (stored - 1);
    const full = 1 << stored;
    if (ba === 8 && !signed && shift === 0 && stored === 8 && src.length >= count) {
      out.set(src.subarray(0, count)); // the common case, converted natively
    } else if (ba === 16 && le && (src.byteOffset & 1) === 0 && src.byteLength >= 2 * count) {
      // aligned little-endian words: a Uint16Array view instead of byte arithmetic (≈ 8× faster on 2048² frames)
      const words = new Uint16Array(src.buffer, src.byteOffset, count);
      if (!signed && shift === 0 && stored === 16) out.set(words);
      else if (!signed) for (let i = 0; i < count; i++) out[i] = (words[i] >> shift) & mask;
      else {
        for (let i = 0; i < count; i++) {
          const v = (words[i] >> shift) & mask;
          out[i] = v & sign ? v - full : v;
        }
      }
    } else if (ba === 8) {
      for (let i = 0; i < count; i++) {
        let v = (src[i] >> shift) & mask;
        if (signed && v & sign) v -= full;
        out[i] = v;
      }
    } else {
      for (let i = 0; i < count; i++) {
        const raw = le ? src[2 * i] | (src[2 * i + 1] << 8) : (src[2 * i] << 8) | src[2 * i + 1];
        let v = (raw >> shift) & mask;
        if (signed && v & sign) v -= full;
        out[i] = v;
      }
    }
    return out;
  }
  if (ba === 32) {
    const full = 2 ** stored;
    const half = 2 ** (stored - 1);
    const div = 2 ** shift;
    for (let i = 0; i < count; i++) {
      let v = dv.getUint32(i * 4, le);
      if (shift) v = Math.floor(v / div);
      if (stored < 32) v = v % full;
      if (signed && v >= half) v -= full;
      out[i] = v;
    }
    return out;
  }
  throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `Bits Allocated ${ba} is not supported.`);
}

/** Planar (RRR…GGG…BBB…) → interleaved (RGBRGB…). */
export function planarToInterleaved(src: Float32Array, pixels: number): Float32Array {
  const out = new Float32Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    out[3 * i] = src[i];
    out[3 * i + 1] = src[pixels + i];
    out[3 * i + 2] = src[2 * pixels + i];
  }
  return out;
}

/** YBR_FULL_422 native layout (Y0 Y1 Cb Cr per pixel pair) → YBR_FULL interleaved. */
export function expand422(src: Float32Array, rows: number, columns: number): Float32Array {
  const out = new Float32Array(rows * columns * 3);
  let s = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c += 2) {
      const y0 = src[s];
      const y1 = src[s + 1];
      const cb = src[s + 2];
      const cr = src[s + 3];
      s += 4;
      const o = (r * columns + c) * 3;
      out[o] = y0;
      out[o + 1] = cb;
      out[o + 2] = cr;
      if (c + 1 < columns) {
        out[o + 3] = y1;
        out[o + 4] = cb;
        out[o + 5] = cr;
      }
    }
  }
  return out;
}

/** YBR_FULL → RGB in place (ITU-R BT.601 full range, as PS3.3 C.7.6.3.1.2), rounded and clipped. */
export function ybrFullToRgb(buf: Float32Array, bits: number): void {
  const max = 2 ** bits - 1;
  const half = 2 ** (bits - 1);
  for (let i = 0; i < buf.length; i += 3) {
    const y = buf[i];
    const cb = buf[i + 1] - half;
    const cr = buf[i + 2] - half;
    const r = y + 1.402 * cr;
    const g = y - 0.344136 * cb - 0.714136 * cr;
    const b = y + 1.772 * cb;
    buf[i] = Math.min(max, Math.max(0, Math.round(r)));
    buf[i + 1] = Math.min(max, Math.max(0, Math.round(g)));
    buf[i + 2] = Math.min(max, Math.max(0, Math.round(b)));
  }
}

/** A palette colour LUT: one channel, ready to index. */
export interface ChannelLut {
  firstMapped: number;
  data: Uint16Array;
  bits: number;
}

/** Applies three channel LUTs to palette indices → interleaved RGB. Out-of-range indices clamp to the ends. */
export function applyPalette(indices: Float32Array, luts: [ChannelLut, ChannelLut, ChannelLut]): Float32Array {
  const n = indices.length;
  const out = new Float32Array(n * 3);
  for (let c = 0; c < 3; c++) {
    const { firstMapped, data } = luts[c];
    const last = data.length - 1;
    for (let i = 0; i < n; i++) {
      let k = indices[i] - firstMapped;
      if (k < 0) k = 0;
      else if (k > last) k = last;
      out[3 * i + c] = data[k];
    }
  }
  return out;
}

/** Expands segmented palette LUT data (PS3.3 C.7.9.2) into a plain LUT. */
export function expandSegmentedLut(segments: Uint16Array, nrEntries: number): Uint16Array {
  const out: number[] = [];
  let i = 0;
  const guard = nrEntries + 1;
  const expandFrom = (seg: Uint16Array, start: number, end: number, depth: number): void => {
    let p = start;
    while (p < end) {
      const op = seg[p];
      const len = seg[p + 1];
      if (p + 2 > end) throw new WardenError('DICOM_MALFORMED', 'Segmented palette LUT data is truncated.');
      if (op === 0) {
        for (let k = 0; k < len; k++) out.push(seg[p + 2 + k]);
        p += 2 + len;
      } else if (op === 1) {
        if (out.length === 0) throw new WardenError('DICOM_MALFORMED', 'Segmented palette LUT starts with a linear segment.');
        const y0 = out[out.length - 1];
        const y1 = seg[p + 2];
        for (let k = 1; k <= len; k++) out.push(Math.round(y0 + ((y1 - y0) * k) / len));
        p += 3;
      } else if (op === 2) {
        if (depth > 0) throw new WardenError('DICOM_MALFORMED', 'Nested indirect segments in a palette LUT.');
        const offset = seg[p + 2] | (seg[p + 3] << 16);
        // offset is in bytes... per standard it is a 32-bit word offset into the segment list
        let q = offset;
        for (let k = 0; k < len && q < seg.length; k++) {
          const l = seg[q] === 0 ? 2 + seg[q + 1] : seg[q] === 1 ? 3 : 4;
          expandFrom(seg, q, q + l, depth + 1);
          q += l;
        }
        p += 4;
      } else {
        throw new WardenError('DICOM_MALFORMED', `Unknown segment type ${op} in a segmented palette LUT.`);
      }
      if (out.length > guard) throw new WardenError('DICOM_MALFORMED', 'Segmented palette LUT expands beyond its declared size.');
    }
  };
  expandFrom(segments, i, segments.length, 0);
  i = out.length;
  return Uint16Array.from(out);
}

/** Rescale in place; returns the same array. */
export function applyRescale(buf: Float32Array, slope: number, intercept: number): Float32Array {
  if (slope === 1 && intercept === 0) return buf;
  for (let i = 0; i < buf.length; i++) buf[i] = buf[i] * slope + intercept;
  return buf;
}

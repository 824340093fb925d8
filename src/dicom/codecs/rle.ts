/** DICOM RLE Lossless (PS3.5 Annex G): pure TypeScript, one frame per call. */
import { WardenError } from '../../core/errors';
import type { NativeFrame, PixelModule } from '../pixels';

function unpackBits(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let p = start;
  let o = 0;
  const n = out.length;
  while (p < end && o < n) {
    const h = src[p++];
    if (h < 128) {
      const len = h + 1;
      if (p + len > end) throw new WardenError('PIXEL_DECODE_FAILED', 'An RLE literal run overruns its segment.');
      const take = Math.min(len, n - o);
      out.set(src.subarray(p, p + take), o);
      o += take;
      p += len;
    } else if (h > 128) {
      const len = 257 - h;
      if (p >= end) throw new WardenError('PIXEL_DECODE_FAILED', 'An RLE replicate run overruns its segment.');
      const v = src[p++];
      const take = Math.min(len, n - o);
      out.fill(v, o, o + take);
      o += take;
    }
    // h === 128: no-op
  }
  return o;
}

export function decodeRleFrame(frame: Uint8Array, px: PixelModule): NativeFrame {
  if (frame.length < 64) throw new WardenError('PIXEL_DECODE_FAILED', 'The RLE frame is shorter than its 64-byte header.');
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const nseg = dv.getUint32(0, true);
  // Bits Allocated 1 (e.g. SEG): one segment of packed bits
  const bytesPerSample = px.bitsAllocated === 1 ? 1 : px.bitsAllocated / 8;
  const spp = px.samplesPerPixel;
  if (!Number.isInteger(bytesPerSample) || nseg !== bytesPerSample * spp || nseg > 15) {
    throw new WardenError('PIXEL_DECODE_FAILED', `The RLE header declares ${nseg} segments; ${bytesPerSample * spp} expected.`);
  }
  const pixels = px.bitsAllocated === 1 ? Math.ceil((px.rows * px.columns) / 8) : px.rows * px.columns;
  const offsets: number[] = [];
  for (let s = 0; s < nseg; s++) offsets.push(dv.getUint32(4 + 4 * s, true));
  offsets.push(frame.length);
  const out = new Uint8Array(pixels * spp * bytesPerSample);
  const seg = new Uint8Array(pixels);
  for (let s = 0; s < nseg; s++) {
    const start = offsets[s];
    const end = Math.min(offsets[s + 1] >= start ? offsets[s + 1] : frame.length, frame.length);
    if (start < 64 || start > frame.length) throw new WardenError('PIXEL_DECODE_FAILED', 'An RLE segment offset lies outside the frame.');
    seg.fill(0);
    const got = unpackBits(frame, start, end, seg);
    if (got < pixels) throw new WardenError('PIXEL_DECODE_FAILED', 'An RLE segment decodes to fewer bytes than the frame needs.');
    // segment order: sample 0 MSB..LSB, sample 1 …; output little-endian interleaved
    const sample = Math.floor(s / bytesPerSample);
    const byteInSample = bytesPerSample - 1 - (s % bytesPerSample);
    const stride = spp * bytesPerSample;
    const base = sample * bytesPerSample + byteInSample;
    for (let i = 0; i < pixels; i++) out[i * stride + base] = seg[i];
  }
  return {
    bytes: out,
    littleEndian: true,
    bitsAllocated: px.bitsAllocated,
    samplesPerPixel: spp,
    planarConfiguration: 0,
    photometricInterpretation: px.photometricInterpretation,
  };
}

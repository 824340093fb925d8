/** Unit tests for src/dicom: public surface, limits (checked before allocation), fuzzing with truncations and byte flips. */
import { DEFAULT_DECODE_LIMITS, decodeInstance, hashUid, isSkipped } from '../../src/dicom';
import { supportedTransferSyntaxes, getDecoder } from '../../src/dicom/registry';
import { isWardenError } from '../../src/core/errors';
import { outcomeOf, readCorpusFile } from '../conformance/corpus-helpers';
import { mulberry32 } from '../../src/detectors/linalg';
import { readSamples, type NativeFrame, type PixelModule } from '../../src/dicom/pixels';

function setUS(bytes: Uint8Array, group: number, elem: number, value: number): Uint8Array {
  const out = bytes.slice();
  const pat = [group & 0xff, group >> 8, elem & 0xff, elem >> 8, 0x55, 0x53, 0x02, 0x00];
  for (let i = 0; i + 10 <= out.length; i++) {
    if (pat.every((b, k) => out[i + k] === b)) {
      out[i + 8] = value & 0xff;
      out[i + 9] = value >> 8;
      return out;
    }
  }
  throw new Error('element not found');
}

/** Small deterministic PRNG (mulberry32, shared with the detectors' subsampling). */
const rng = mulberry32;

describe('dicom public surface', () => {
  it('hashUid is sha256 hex, 16 chars, padding-insensitive', () => {
    expect(hashUid('1.2.3')).toMatch(/^[0-9a-f]{16}$/);
    expect(hashUid('1.2.3\0')).toBe(hashUid('1.2.3'));
    expect(hashUid('1.2.3')).not.toBe(hashUid('1.2.4'));
  });
  it('isSkipped tells skipped from decoded', async () => {
    expect(isSkipped(await decodeInstance(readCorpusFile('pydicom/rtplan.dcm')))).toBe(true);
    const mr = await decodeInstance(readCorpusFile('pydicom/MR_small.dcm'));
    expect(isSkipped(mr)).toBe(false);
    if (!isSkipped(mr)) {
      expect(mr.frames[0]).toBeInstanceOf(Float32Array);
      expect(mr.sopInstanceUidHash).toMatch(/^[0-9a-f]{16}$/);
      // eslint-disable-next-line @typescript-eslint/no-unused-vars
      const { frames, sopClassUid, transferSyntaxUid, ...rest } = mr;
      expect(JSON.stringify(rest)).not.toMatch(/\d+(\.\d+){4,}/);
    }
  });
  it('carries window, pixel spacing, modality and rescale', async () => {
    const ct = await decodeInstance(readCorpusFile('cornerstone-dicomParser/CT1_UNC.explicit_little_endian.dcm'));
    if (isSkipped(ct)) throw new Error('skipped');
    expect(ct.modality).toBe('CT');
    expect(ct.rescaled).toBe(true);
    expect(ct.pixelSpacing?.length).toBe(2);
    expect(ct.samplesPerPixel).toBe(1);
    expect(ct.frames[0].reduce((a, b) => Math.min(a, b), Infinity)).toBe(-3024);
  });
  it('keeps MONOCHROME1 as stored and converts palette to RGB', async () => {
    const m1 = await decodeInstance(readCorpusFile('fo-dicom/CR-MONO1-10-chest'));
    if (isSkipped(m1)) throw new Error('skipped');
    expect(m1.photometricInterpretation).toBe('MONOCHROME1');
    const pal = await decodeInstance(readCorpusFile('fo-dicom/TestPattern_Palette.dcm'));
    if (isSkipped(pal)) throw new Error('skipped');
    expect(pal.samplesPerPixel).toBe(3);
    expect(pal.colourBits).toBe(8);
    expect(pal.frames[0].length).toBe(pal.rows * pal.columns * 3);
  });
  it('registers each transfer syntax once and rejects unknown ones with a typed error', () => {
    const uids = supportedTransferSyntaxes().map((e) => e.uid);
    expect(new Set(uids).size).toBe(uids.length);
    expect(uids.length).toBeGreaterThanOrEqual(19);
    expect(() => getDecoder('1.2.840.10008.1.2.4.100')).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_TRANSFER_SYNTAX' }));
  });
  it('rejects non-DICOM input with NOT_DICOM', async () => {
    await expect(decodeInstance(new TextEncoder().encode('hello world, not dicom at all'))).rejects.toMatchObject({ code: 'NOT_DICOM' });
    await expect(decodeInstance(new Uint8Array(3))).rejects.toMatchObject({ code: 'NOT_DICOM' });
  });
});

describe('readSamples: 8- and 16-bit words', () => {
  // Words with garbage above Bits Stored (overlay bits, PS3.5 8.1.1) and stored bits shifted up (High Bit 15).
  const words = [0x0000, 0x0fff, 0x0800, 0x07ff, 0xf123, 0xa5a5, 0x8001, 0xffff, 0x1234];
  const px = (over: Partial<PixelModule>): PixelModule => ({ rows: 3, columns: 3, frames: 1, samplesPerPixel: 1, bitsAllocated: 16, bitsStored: 12, highBit: 11,
    pixelRepresentation: 0, planarConfiguration: 0, photometricInterpretation: 'MONOCHROME2', ...over });
  // each word written at an even (aligned) and an odd (unaligned) byte offset, little- and big-endian
  const frameOf = (le: boolean, offset: number): NativeFrame => {
    const buf = new Uint8Array(offset + words.length * 2);
    words.forEach((w, i) => { buf[offset + 2 * i + (le ? 0 : 1)] = w & 0xff; buf[offset + 2 * i + (le ? 1 : 0)] = w >> 8; });
    return { bytes: buf.subarray(offset), littleEndian: le, bitsAllocated: 16, samplesPerPixel: 1, planarConfiguration: 0, photometricInterpretation: 'MONOCHROME2' };
  };
  const expected = (stored: number, highBit: number, signed: boolean) => words.map((w) => {
    let v = (w >> (highBit + 1 - stored)) & ((1 << stored) - 1);
    if (signed && v & (1 << (stored - 1))) v -= 1 << stored;
    return v;
  });

  it('masks, shifts and sign-extends the same way aligned or not, whatever the byte order', () => {
    for (const [stored, highBit] of [[12, 11], [16, 15], [12, 15], [8, 7]]) {
      for (const signed of [false, true]) {
        for (const le of [true, false]) {
          for (const offset of [0, 1, 2]) {
            const got = readSamples(frameOf(le, offset), px({ bitsStored: stored, highBit, pixelRepresentation: signed ? 1 : 0 }), words.length);
            expect(Array.from(got)).toEqual(expected(stored, highBit, signed));
          }
        }
      }
    }
  });

  it('reads 8-bit samples, masked to Bits Stored', () => {
    const bytes = Uint8Array.from([0, 1, 127, 128, 200, 255, 7, 64, 250]);
    const frame: NativeFrame = { bytes, littleEndian: true, bitsAllocated: 8, samplesPerPixel: 1, planarConfiguration: 0, photometricInterpretation: 'MONOCHROME2' };
    expect(Array.from(readSamples(frame, px({ bitsAllocated: 8, bitsStored: 8, highBit: 7 }), 9))).toEqual(Array.from(bytes));
    expect(Array.from(readSamples(frame, px({ bitsAllocated: 8, bitsStored: 6, highBit: 5 }), 9))).toEqual(Array.from(bytes, (b) => b & 63));
  });
});

describe('decode limits', () => {
  const mr = readCorpusFile('pydicom/MR_small.dcm'); // 64×64, explicit VR LE
  it('defaults are sane', () => {
    expect(DEFAULT_DECODE_LIMITS.maxBytes).toBeGreaterThan(1e6);
    expect(DEFAULT_DECODE_LIMITS.maxTotalPixels).toBeGreaterThanOrEqual(DEFAULT_DECODE_LIMITS.maxPixelsPerFrame);
  });
  it.each([
    [{ maxBytes: 1000 }],
    [{ maxPixelsPerFrame: 64 * 64 - 1 }],
    [{ maxTotalPixels: 64 * 64 - 1 }],
  ])('%j → IMAGE_TOO_LARGE', async (limits) => {
    await expect(decodeInstance(mr, limits)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
  });
  it('maxFrames', async () => {
    const emri = readCorpusFile('pydicom-data/emri_small.dcm'); // 10 frames
    await expect(decodeInstance(emri, { maxFrames: 9 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(decodeInstance(emri, { maxFrames: 10 })).resolves.toMatchObject({ numberOfFrames: 10 });
  });
  it('a header claiming 65535×65535 pixels is refused from the attributes, before any allocation', async () => {
    const huge = setUS(setUS(mr, 0x0028, 0x0010, 0xffff), 0x0028, 0x0011, 0xffff);
    const before = process.memoryUsage().arrayBuffers;
    await expect(decodeInstance(huge)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
  });
  it('a codestream whose size disagrees with Rows/Columns is refused before the codec runs', async () => {
    const jls = readCorpusFile('pydicom/MR_small_jpeg_ls_lossless.dcm');
    const lied = setUS(jls, 0x0028, 0x0010, 32);
    await expect(decodeInstance(lied)).rejects.toMatchObject({ code: 'PIXEL_DECODE_FAILED' });
  });
});

describe('fuzz: truncations and byte flips end decoded, skipped or typed, quickly', () => {
  const FILES = [
    'pydicom/MR_small.dcm',
    'pydicom/MR_small_jpeg_ls_lossless.dcm',
    'pydicom/MR_small_jp2klossless.dcm',
    'pydicom/MR_small_RLE.dcm',
    'pydicom/SC_rgb_dcmtk_+eb+cy+s2.dcm',
    'pydicom/JPGExtended.dcm',
    'pydicom-data/liver_deflate.dcm',
    'cornerstone-wadoimageloader/CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm',
  ];
  const MAX_MS = 2000;

  it.each(FILES)('truncations of %s', async (file) => {
    const bytes = readCorpusFile(file);
    const r = rng(bytes.length);
    const offsets = new Set<number>([0, 1, 127, 128, 131, 132, 140, bytes.length - 1, bytes.length - 2]);
    while (offsets.size < 45) offsets.add(Math.floor(r() * bytes.length));
    for (const n of offsets) {
      const o = await outcomeOf(bytes.subarray(0, n));
      if (o.kind === 'untyped') throw new Error(`truncated at ${n}: untyped ${String(o.error)}`);
      expect(o.ms).toBeLessThan(MAX_MS);
      if (n < bytes.length - 2 && n > 1000) expect(o.kind).not.toBe('decoded');
    }
  });

  it.each(FILES)('random byte flips in %s', async (file) => {
    const bytes = readCorpusFile(file);
    const r = rng(0xc0ffee ^ bytes.length);
    for (let trial = 0; trial < 40; trial++) {
      const m = bytes.slice();
      const flips = 1 + Math.floor(r() * 8);
      for (let k = 0; k < flips; k++) {
        // half of the flips land in the header region, half anywhere
        const pos = r() < 0.5 ? Math.floor(r() * Math.min(1200, m.length)) : Math.floor(r() * m.length);
        m[pos] = Math.floor(r() * 256);
      }
      const o = await outcomeOf(m);
      if (o.kind === 'untyped') throw new Error(`trial ${trial}: untyped ${String(o.error)}`);
      expect(o.ms).toBeLessThan(MAX_MS);
      if (o.kind === 'error') expect(isWardenError({ code: o.code, message: o.message })).toBe(true);
    }
  });

  it('still decodes correctly after the fuzzing (codec state intact)', async () => {
    const a = await decodeInstance(readCorpusFile('pydicom/MR_small.dcm'));
    const b = await decodeInstance(readCorpusFile('pydicom/MR_small_jp2klossless.dcm'));
    const c = await decodeInstance(readCorpusFile('pydicom/MR_small_jpeg_ls_lossless.dcm'));
    if (isSkipped(a) || isSkipped(b) || isSkipped(c)) throw new Error('skipped');
    expect(Array.from(b.frames[0])).toEqual(Array.from(a.frames[0]));
    expect(Array.from(c.frames[0])).toEqual(Array.from(a.frames[0]));
  });
});

/** Deflated Image Frame Compression (1.2.840.10008.1.2.8.1): each frame is a deflate stream of native bytes. */
import * as zlib from 'node:zlib';
import { WardenError } from '../../core/errors';
import { nativeFrameBits, type NativeFrame, type PixelModule } from '../pixels';

export function decodeDeflatedFrame(frame: Uint8Array, px: PixelModule): NativeFrame {
  const expected = Math.ceil(nativeFrameBits(px) / 8);
  let bytes: Buffer;
  try {
    bytes = zlib.inflateRawSync(frame, { maxOutputLength: expected + 16 });
  } catch (rawErr) {
    try {
      bytes = zlib.inflateSync(frame, { maxOutputLength: expected + 16 });
    } catch {
      throw new WardenError('PIXEL_DECODE_FAILED', 'A deflated image frame could not be inflated.', { cause: rawErr });
    }
  }
  if (bytes.length < expected) {
    throw new WardenError('PIXEL_DATA_LENGTH_MISMATCH', `A deflated frame inflates to ${bytes.length} bytes; ${expected} expected.`);
  }
  return {
    bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    littleEndian: true,
    bitsAllocated: px.bitsAllocated,
    samplesPerPixel: px.samplesPerPixel,
    planarConfiguration: px.planarConfiguration,
    photometricInterpretation: px.photometricInterpretation,
  };
}

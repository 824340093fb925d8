/**
 * dcmjs-codecs WebAssembly codecs (DCMTK IJG JPEG 8/12/16-bit, CharLS, OpenJPEG, OpenJPH), called per frame
 * through `NativeCodecs.decode*` rather than the Transcoder (which refuses JPEG .51/.57).
 */
import { Context, NativeCodecs } from 'dcmjs-codecs';
import { WardenError } from '../../core/errors';
import type { NativeFrame, PixelModule } from '../pixels';
import { jpegLsInterleaveMode } from './peek';

let init: Promise<void> | undefined;
let initError: unknown;

/** Loads the WebAssembly module once. */
export async function ensureNativeCodecs(): Promise<void> {
  if (NativeCodecs.isInitialized()) return;
  if (!init) {
    init = NativeCodecs.initializeAsync({ logCodecsInfo: false, logCodecsTrace: false }).catch((err) => {
      initError = err;
      init = undefined;
      throw err;
    });
  }
  try {
    await init;
  } catch (err) {
    throw new WardenError('UNSUPPORTED_TRANSFER_SYNTAX', 'The codec WebAssembly module could not be loaded.', { cause: err });
  }
}

export function nativeCodecsAvailable(): { available: boolean; missing?: string } {
  if (initError) return { available: false, missing: 'dcmjs-codecs WebAssembly failed to initialise' };
  return { available: true };
}

const KNOWN_PI = new Set([
  'MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR', 'RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_PARTIAL_422',
  'YBR_PARTIAL_420', 'YBR_ICT', 'YBR_RCT',
]);

export type NativeCodecName = 'decodeJpeg' | 'decodeJpegLs' | 'decodeJpeg2000' | 'decodeHtJpeg2000';

export function decodeWithNativeCodec(
  name: NativeCodecName,
  frame: Uint8Array,
  px: PixelModule,
  params?: { convertColorspaceToRgb?: boolean },
): NativeFrame {
  if (!NativeCodecs.isInitialized()) {
    throw new WardenError('UNSUPPORTED_TRANSFER_SYNTAX', 'The codec WebAssembly module is not loaded.');
  }
  const pi = KNOWN_PI.has(px.photometricInterpretation)
    ? px.photometricInterpretation
    : px.samplesPerPixel === 3 ? 'RGB' : 'MONOCHROME2';
  const ctx = new Context({
    width: px.columns,
    height: px.rows,
    bitsAllocated: px.bitsAllocated,
    bitsStored: px.bitsStored,
    samplesPerPixel: px.samplesPerPixel,
    pixelRepresentation: px.pixelRepresentation,
    planarConfiguration: px.planarConfiguration,
    photometricInterpretation: pi,
    encodedBuffer: frame,
  });
  let out: Context;
  try {
    out = NativeCodecs[name](ctx, params ?? {});
  } catch (err) {
    throw new WardenError('PIXEL_DECODE_FAILED', `The ${codecLabel(name)} codec could not decode a frame.`, { cause: err });
  }
  const bytes = out.getDecodedBuffer();
  let ba = out.getBitsAllocated() ?? px.bitsAllocated;
  const spp = out.getSamplesPerPixel() ?? px.samplesPerPixel;
  // 1-bit images (SEG) come back one byte per sample
  if (ba < 8 && bytes && bytes.length >= px.rows * px.columns * spp) ba = 8;
  let planar: 0 | 1 = (out.getPlanarConfiguration() ?? 0) === 1 ? 1 : 0;
  // CharLS returns colour-by-plane for interleave mode 0, whatever the dataset's Planar Configuration says
  if (name === 'decodeJpegLs' && spp === 3) planar = jpegLsInterleaveMode(frame) === 0 ? 1 : 0;
  if (!bytes || bytes.length === 0) {
    throw new WardenError('PIXEL_DECODE_FAILED', `The ${codecLabel(name)} codec returned no pixels.`);
  }
  return {
    bytes,
    littleEndian: true,
    bitsAllocated: ba,
    samplesPerPixel: spp,
    planarConfiguration: planar,
    photometricInterpretation: out.getPhotometricInterpretation() ?? pi,
  };
}

function codecLabel(name: NativeCodecName): string {
  switch (name) {
    case 'decodeJpeg': return 'JPEG';
    case 'decodeJpegLs': return 'JPEG-LS';
    case 'decodeJpeg2000': return 'JPEG 2000';
    case 'decodeHtJpeg2000': return 'HTJ2K';
  }
}

/**
 * Decoder registry keyed by Transfer Syntax UID (pydicom style): one entry per UID, named after its keyword,
 * each declaring whether it is encapsulated, lossy, available, and how one frame is decoded.
 *
 * | UID                       | keyword                          | decoder                          |
 * |---------------------------|----------------------------------|----------------------------------|
 * | 1.2.840.10008.1.2         | ImplicitVRLittleEndian           | native                           |
 * | 1.2.840.10008.1.2.1       | ExplicitVRLittleEndian           | native                           |
 * | 1.2.840.10008.1.2.1.99    | DeflatedExplicitVRLittleEndian   | native (dataset inflated)        |
 * | 1.2.840.10008.1.2.2       | ExplicitVRBigEndian              | native, byte-swapped             |
 * | 1.2.840.10008.1.2.5       | RLELossless                      | TypeScript RLE                   |
 * | 1.2.840.10008.1.2.8.1     | DeflatedImageFrameCompression    | node:zlib per frame              |
 * | 1.2.840.10008.1.2.4.50    | JPEGBaseline8Bit                 | dcmjs-codecs decodeJpeg          |
 * | 1.2.840.10008.1.2.4.51    | JPEGExtended12Bit                | dcmjs-codecs decodeJpeg          |
 * | 1.2.840.10008.1.2.4.53    | JPEGSpectralSelectionNonHier68   | dcmjs-codecs decodeJpeg          |
 * | 1.2.840.10008.1.2.4.55    | JPEGFullProgressionNonHier1012   | dcmjs-codecs decodeJpeg          |
 * | 1.2.840.10008.1.2.4.57    | JPEGLossless                     | dcmjs-codecs decodeJpeg          |
 * | 1.2.840.10008.1.2.4.70    | JPEGLosslessSV1                  | dcmjs-codecs decodeJpeg          |
 * | 1.2.840.10008.1.2.4.80    | JPEGLSLossless                   | dcmjs-codecs decodeJpegLs        |
 * | 1.2.840.10008.1.2.4.81    | JPEGLSNearLossless               | dcmjs-codecs decodeJpegLs        |
 * | 1.2.840.10008.1.2.4.90    | JPEG2000Lossless                 | dcmjs-codecs decodeJpeg2000      |
 * | 1.2.840.10008.1.2.4.91    | JPEG2000                         | dcmjs-codecs decodeJpeg2000      |
 * | 1.2.840.10008.1.2.4.201   | HTJ2KLossless                    | dcmjs-codecs decodeHtJpeg2000    |
 * | 1.2.840.10008.1.2.4.202   | HTJ2KLosslessRPCL                | dcmjs-codecs decodeHtJpeg2000    |
 * | 1.2.840.10008.1.2.4.203   | HTJ2K                            | dcmjs-codecs decodeHtJpeg2000    |
 *
 * Registration happens at module load and is not meant to change at runtime.
 */
import { WardenError } from '../core/errors';
import type { NativeFrame, PixelModule } from './pixels';
import { decodeRleFrame } from './codecs/rle';
import { decodeDeflatedFrame } from './codecs/deflate-frame';
import { decodeWithNativeCodec, ensureNativeCodecs, nativeCodecsAvailable, type NativeCodecName } from './codecs/native-codecs';

/** Decodes one encapsulated frame. Pure: frame bytes and pixel attributes in, native samples out. */
export type FrameDecoder = (frame: Uint8Array, px: PixelModule) => NativeFrame;

export interface TransferSyntaxEntry {
  uid: string;
  keyword: string;
  encapsulated: boolean;
  lossy: boolean;
  /** For native syntaxes: byte order of the pixel data. */
  littleEndian?: boolean;
  /** Encapsulated syntaxes: the per-frame decoder. */
  decodeFrame?: FrameDecoder;
  /** Async preparation (loading WebAssembly) before decodeFrame can be called. */
  prepare?: () => Promise<void>;
  /** Whether the decoder can run here, and what is missing if not. */
  available: () => { available: boolean; missing?: string };
  /** Expected bit depth of the YBR→RGB conversion done by the codec (documentation only). */
  note?: string;
}

const always = () => ({ available: true });

const REGISTRY = new Map<string, TransferSyntaxEntry>();

function register(entry: TransferSyntaxEntry): void {
  if (REGISTRY.has(entry.uid)) throw new Error(`Transfer syntax ${entry.uid} registered twice`);
  REGISTRY.set(entry.uid, Object.freeze(entry));
}

function native(uid: string, keyword: string, littleEndian: boolean): void {
  register({ uid, keyword, encapsulated: false, lossy: false, littleEndian, available: always });
}

function wasm(uid: string, keyword: string, lossy: boolean, codec: NativeCodecName): void {
  register({
    uid,
    keyword,
    encapsulated: true,
    lossy,
    prepare: ensureNativeCodecs,
    available: nativeCodecsAvailable,
    decodeFrame: (frame, px) => {
      // JPEG (ISO 10918): let the codec convert YCbCr to RGB; an RGB-labelled JPEG is decoded as stored
      const params = codec === 'decodeJpeg' ? { convertColorspaceToRgb: px.photometricInterpretation !== 'RGB' } : undefined;
      return decodeWithNativeCodec(codec, frame, px, params);
    },
  });
}

native('1.2.840.10008.1.2', 'ImplicitVRLittleEndian', true);
native('1.2.840.10008.1.2.1', 'ExplicitVRLittleEndian', true);
native('1.2.840.10008.1.2.1.99', 'DeflatedExplicitVRLittleEndian', true);
native('1.2.840.10008.1.2.2', 'ExplicitVRBigEndian', false);
register({ uid: '1.2.840.10008.1.2.5', keyword: 'RLELossless', encapsulated: true, lossy: false, available: always, decodeFrame: decodeRleFrame });
register({
  uid: '1.2.840.10008.1.2.8.1', keyword: 'DeflatedImageFrameCompression', encapsulated: true, lossy: false,
  available: always, decodeFrame: decodeDeflatedFrame,
});
wasm('1.2.840.10008.1.2.4.50', 'JPEGBaseline8Bit', true, 'decodeJpeg');
wasm('1.2.840.10008.1.2.4.51', 'JPEGExtended12Bit', true, 'decodeJpeg');
wasm('1.2.840.10008.1.2.4.53', 'JPEGSpectralSelectionNonHierarchical68', true, 'decodeJpeg');
wasm('1.2.840.10008.1.2.4.55', 'JPEGFullProgressionNonHierarchical1012', true, 'decodeJpeg');
wasm('1.2.840.10008.1.2.4.57', 'JPEGLossless', false, 'decodeJpeg');
wasm('1.2.840.10008.1.2.4.70', 'JPEGLosslessSV1', false, 'decodeJpeg');
wasm('1.2.840.10008.1.2.4.80', 'JPEGLSLossless', false, 'decodeJpegLs');
wasm('1.2.840.10008.1.2.4.81', 'JPEGLSNearLossless', true, 'decodeJpegLs');
wasm('1.2.840.10008.1.2.4.90', 'JPEG2000Lossless', false, 'decodeJpeg2000');
wasm('1.2.840.10008.1.2.4.91', 'JPEG2000', true, 'decodeJpeg2000');
wasm('1.2.840.10008.1.2.4.201', 'HTJ2KLossless', false, 'decodeHtJpeg2000');
wasm('1.2.840.10008.1.2.4.202', 'HTJ2KLosslessRPCL', false, 'decodeHtJpeg2000');
wasm('1.2.840.10008.1.2.4.203', 'HTJ2K', true, 'decodeHtJpeg2000');

/**
 * The registry entry for a transfer syntax.
 * @throws UNSUPPORTED_TRANSFER_SYNTAX when the UID is unknown or its decoder is unavailable.
 */
export function getDecoder(uid: string): TransferSyntaxEntry {
  const entry = REGISTRY.get(uid);
  if (!entry) {
    const safe = /^[0-9.]{1,64}$/.test(uid) ? uid : '(unreadable UID)';
    throw new WardenError('UNSUPPORTED_TRANSFER_SYNTAX', `No decoder is registered for transfer syntax ${safe}.`);
  }
  const a = entry.available();
  if (!a.available) {
    throw new WardenError('UNSUPPORTED_TRANSFER_SYNTAX', `The ${entry.keyword} decoder is unavailable: ${a.missing ?? 'unknown reason'}.`);
  }
  return entry;
}

/** All registered transfer syntaxes (for docs and tests). */
export function supportedTransferSyntaxes(): readonly TransferSyntaxEntry[] {
  return [...REGISTRY.values()];
}

/**
 * Default thumbnails: the quarantined bytes decoded by src/dicom, windowed (the instance's VOI window, else
 * the 0.5–99.5 percentile range; MONOCHROME1 inverted) and resized by src/models' preprocessing (one code path
 * for windowing in Warden), to at most 256 px on the long side, as an 8-bit PNG.
 */
import { PNG } from 'pngjs';
import { WardenError } from '../core/errors';
import { decodeInstance, isSkipped } from '../dicom';
import { parseManifest, preprocess } from '../models';
import type { Quarantine } from '../quarantine';

export const THUMBNAIL_MAX_PX = 256;

/** Output size keeping the aspect ratio, long side ≤ maxPx, never upscaled. */
export function thumbnailSize(rows: number, columns: number, maxPx = THUMBNAIL_MAX_PX): { height: number; width: number } {
  const scale = Math.min(1, maxPx / Math.max(rows, columns));
  return { height: Math.max(1, Math.round(rows * scale)), width: Math.max(1, Math.round(columns * scale)) };
}

/** PNG bytes of the first frame of a DICOM instance. @throws the decode stage's typed errors; UNSUPPORTED_PIXEL_FORMAT for non-image instances */
export async function renderThumbnail(bytes: Uint8Array, maxPx = THUMBNAIL_MAX_PX): Promise<Buffer> {
  const decoded = await decodeInstance(bytes);
  if (isSkipped(decoded)) throw new WardenError('UNSUPPORTED_PIXEL_FORMAT', `The instance has no image to show (${decoded.reason}).`);
  const { height, width } = thumbnailSize(decoded.rows, decoded.columns, maxPx);
  const channels = decoded.samplesPerPixel === 3 ? 3 : 1;
  const manifest = parseManifest({
    schema: 1, name: 'thumbnail', version: '1',
    input: { name: 'image', shape: [1, channels, height, width] },
    preprocess: { window: 'voi', invertMonochrome1: true, resize: 'bilinear' },
    classes: ['image'],
    outputs: { logits: 'none' },
  }, 'thumbnail');
  const { tensor } = preprocess(decoded, manifest, { consumeFrame: true });
  const png = new PNG({ width, height, colorType: channels === 3 ? 2 : 0, inputColorType: channels === 3 ? 2 : 0, inputHasAlpha: false, bitDepth: 8 });
  const plane = width * height;
  const data = Buffer.alloc(plane * channels);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < channels; c++) data[i * channels + c] = Math.round(Math.min(1, Math.max(0, tensor[c * plane + i])) * 255);
  }
  png.data = data;
  return PNG.sync.write(png, { colorType: channels === 3 ? 2 : 0, inputColorType: channels === 3 ? 2 : 0, inputHasAlpha: false });
}

/** thumbnail(id) over the quarantine: null when no bytes are kept for the record. */
export function quarantineThumbnails(quarantine: Quarantine, maxPx = THUMBNAIL_MAX_PX): (id: string) => Promise<Buffer | null> {
  return async (id: string) => {
    const rec = await quarantine.audit.get(id);
    if (!rec?.quarantine || rec.quarantine.bytesDeletedAt !== null) return null;
    return renderThumbnail(await quarantine.files.read(rec.sha256), maxPx);
  };
}

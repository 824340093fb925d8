/**
 * Encapsulated Pixel Data → one byte array per frame. dcmjs already groups fragments by the Basic Offset
 * Table when there is one; otherwise it returns the fragments, which we group with the Extended Offset Table
 * or, failing that, by codestream start markers (as pydicom's generate_frames does).
 */
import { WardenError } from '../core/errors';

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Whether a fragment starts a new JPEG / JPEG-LS / JPEG 2000 codestream. */
function startsCodestream(f: Uint8Array): boolean {
  if (f.length < 2) return false;
  if (f[0] === 0xff && (f[1] === 0xd8 || f[1] === 0x4f)) return true; // SOI, J2K SOC
  // JP2 signature box
  return f.length >= 12 && f[4] === 0x6a && f[5] === 0x50 && f[6] === 0x20 && f[7] === 0x20;
}

export interface EncapsulatedInput {
  /** What dcmjs returned: frames (with BOT) or fragments (without). */
  items: Uint8Array[];
  frames: number;
  /** Extended Offset Table (7FE0,0001) as 64-bit offsets, if present. */
  extendedOffsets?: bigint[];
  /** Whether the codec's codestreams carry start markers we can split on. */
  markerSplittable: boolean;
}

export function assembleFrames(input: EncapsulatedInput): Uint8Array[] {
  const { items, frames } = input;
  if (items.length === 0) throw new WardenError('PIXEL_DATA_LENGTH_MISMATCH', 'The encapsulated Pixel Data holds no fragments.');
  if (input.extendedOffsets && input.extendedOffsets.length === frames && items.length >= frames) {
    // fragment k starts at sum_{j<k}(8 + len_j) bytes after the first fragment's item tag
    const starts: number[] = [];
    let pos = 0;
    for (const it of items) {
      starts.push(pos);
      pos += 8 + it.length;
    }
    const out: Uint8Array[] = [];
    for (let f = 0; f < frames; f++) {
      const from = Number(input.extendedOffsets[f]);
      const to = f + 1 < frames ? Number(input.extendedOffsets[f + 1]) : Infinity;
      const parts = items.filter((_, k) => starts[k] >= from && starts[k] < to);
      if (parts.length === 0) throw new WardenError('PIXEL_DATA_LENGTH_MISMATCH', 'The Extended Offset Table points between fragments.');
      out.push(concat(parts));
    }
    return out;
  }
  if (items.length === frames) return items;
  if (frames === 1) return [concat(items)];
  if (items.length < frames) {
    throw new WardenError('PIXEL_DATA_LENGTH_MISMATCH', `The encapsulated Pixel Data holds ${items.length} fragments for ${frames} frames.`);
  }
  if (!input.markerSplittable) {
    throw new WardenError('PIXEL_DATA_LENGTH_MISMATCH', `The encapsulated Pixel Data holds ${items.length} fragments for ${frames} frames and no offset table.`);
  }
  const out: Uint8Array[][] = [];
  for (const it of items) {
    if (out.length === 0 || startsCodestream(it)) out.push([it]);
    else out[out.length - 1].push(it);
  }
  if (out.length !== frames) {
    throw new WardenError('PIXEL_DATA_LENGTH_MISMATCH', `The encapsulated Pixel Data holds ${out.length} codestreams for ${frames} frames.`);
  }
  return out.map(concat);
}

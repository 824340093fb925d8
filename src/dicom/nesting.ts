/**
 * How deeply a dataset nests undefined-length sequence items, counted before dcmjs reads it. dcmjs finds the end of
 * an undefined-length item by scanning ahead for its delimiter, copies the item, and parses the copy, which scans
 * again for the items nested in it: the work grows with depth × size (found by `npm run fuzz`: 96 KB of 3,000 nested
 * items took 8 s of main-thread CPU in the header reader alone). Real datasets nest a few levels (SR content trees
 * rarely ten), so Warden refuses anything deeper than MAX_ITEM_NESTING before dcmjs sees it.
 *
 * The count mirrors dcmjs's own scan: an item start with undefined length (FFFE,E000 + FFFFFFFF) opens a level, an
 * item delimitation (FFFE,E00D + 00000000) closes one, wherever the bytes occur (dcmjs does not follow element
 * structure inside an item either). Values that happen to contain these 8-byte patterns can only raise the count.
 */
export const MAX_ITEM_NESTING = 32;

const ITEM_LE = Uint8Array.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
const ITEM_END_LE = Uint8Array.from([0xfe, 0xff, 0x0d, 0xe0, 0x00, 0x00, 0x00, 0x00]);
const ITEM_BE = Uint8Array.from([0xff, 0xfe, 0xe0, 0x00, 0xff, 0xff, 0xff, 0xff]);
const ITEM_END_BE = Uint8Array.from([0xff, 0xfe, 0xe0, 0x0d, 0x00, 0x00, 0x00, 0x00]);

function positions(hay: Buffer, needle: Uint8Array): number[] {
  const out: number[] = [];
  for (let p = hay.indexOf(needle); p >= 0; p = hay.indexOf(needle, p + 1)) out.push(p);
  return out;
}

/** The deepest level of undefined-length items in `bytes` (little or big endian item tags). Linear in the size. */
export function itemNestingDepth(bytes: Uint8Array, littleEndian = true): number {
  const hay = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const opens = positions(hay, littleEndian ? ITEM_LE : ITEM_BE);
  if (opens.length === 0) return 0;
  const closes = positions(hay, littleEndian ? ITEM_END_LE : ITEM_END_BE);
  let depth = 0;
  let max = 0;
  for (let i = 0, j = 0; i < opens.length || j < closes.length;) {
    if (j >= closes.length || (i < opens.length && opens[i] < closes[j])) {
      depth++;
      i++;
      if (depth > max) max = depth;
    } else {
      depth = Math.max(0, depth - 1);
      j++;
    }
  }
  return max;
}

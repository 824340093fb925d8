import dcmjs from 'dcmjs';

/**
 * A lenient map of a Part-10 file's byte layout for structure-aware mutation: where each element, sequence item and
 * delimiter starts, where its length field is and how wide, where its value starts, and which container holds it.
 * It is not a parser Warden relies on: it stops quietly where the bytes stop making sense and maps what it saw.
 */

export interface Node {
  /** 'element' (incl. SQ and encapsulated Pixel Data), 'item' (FFFE,E000), 'delimiter' (FFFE,E00D / E0DD). */
  kind: 'element' | 'item' | 'delimiter';
  group: number;
  element: number;
  /** Two letters for explicit-VR elements, '' for implicit ones, items and delimiters. */
  vr: string;
  /** Offset of the tag. */
  start: number;
  lengthOffset: number;
  /** 2 (short explicit VR) or 4. */
  lengthSize: 2 | 4;
  /** Declared length (0xFFFFFFFF = undefined). */
  length: number;
  valueOffset: number;
  /** Offset just past the value (for undefined lengths: past the matching delimiter), as walked. */
  end: number;
  depth: number;
  /** Index of the enclosing SQ element or item in the node list, -1 at the top. */
  parent: number;
  littleEndian: boolean;
  explicit: boolean;
  /** In the File Meta group (explicit VR LE whatever the transfer syntax). */
  meta: boolean;
  /** Inside encapsulated Pixel Data (an item is then the Basic Offset Table or a fragment). */
  pixelItem?: boolean;
}

export interface Layout {
  /** 132 with a preamble, 0 without. */
  metaStart: number;
  /** First byte of the dataset (after the File Meta group). */
  datasetStart: number;
  transferSyntaxUid: string;
  nodes: Node[];
  /** The walk stopped before the end of the bytes (a structure it could not follow). */
  incomplete: boolean;
}

export const UNDEFINED = 0xffffffff;
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
export const ALL_VRS = ['AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'PN',
  'SH', 'SL', 'SQ', 'SS', 'ST', 'SV', 'TM', 'UC', 'UI', 'UL', 'UN', 'UR', 'US', 'UT', 'UV'];

export const isLongVr = (vr: string): boolean => LONG_VRS.has(vr);

const dictionary = (dcmjs as unknown as { data: { DicomMetaDictionary: { dictionary: Record<string, { vr?: string }> } } }).data.DicomMetaDictionary.dictionary;
const hex4 = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');

function implicitVr(group: number, element: number): string {
  return dictionary[`(${hex4(group)},${hex4(element)})`]?.vr ?? '';
}

const IMPLICIT = '1.2.840.10008.1.2';
const BIG_ENDIAN = '1.2.840.10008.1.2.2';
const DEFLATED = '1.2.840.10008.1.2.1.99';

function isVrAt(b: Uint8Array, p: number): boolean {
  return p + 2 <= b.length && b[p] >= 0x41 && b[p] <= 0x5a && b[p + 1] >= 0x41 && b[p + 1] <= 0x5a;
}

export function walk(bytes: Uint8Array): Layout {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nodes: Node[] = [];
  const hasPreamble = bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
  const metaStart = hasPreamble ? 132 : 0;
  let p = metaStart;
  let ts = '';
  // File Meta: explicit VR little endian, group 0002
  while (p + 8 <= bytes.length && dv.getUint16(p, true) === 0x0002 && isVrAt(bytes, p + 4)) {
    const element = dv.getUint16(p + 2, true);
    const vr = String.fromCharCode(bytes[p + 4], bytes[p + 5]);
    const long = LONG_VRS.has(vr);
    if (long && p + 12 > bytes.length) break;
    const length = long ? dv.getUint32(p + 8, true) : dv.getUint16(p + 6, true);
    const valueOffset = p + (long ? 12 : 8);
    if (length === UNDEFINED || valueOffset + length > bytes.length) break;
    if (element === 0x0010) ts = Buffer.from(bytes.subarray(valueOffset, valueOffset + length)).toString('latin1').replace(/[\0 ]+$/, '');
    nodes.push({ kind: 'element', group: 2, element, vr, start: p, lengthOffset: p + (long ? 8 : 6), lengthSize: long ? 4 : 2, length, valueOffset,
      end: valueOffset + length, depth: 0, parent: -1, littleEndian: true, explicit: true, meta: true });
    p = valueOffset + length;
  }
  const datasetStart = p;
  if (ts === DEFLATED) return { metaStart, datasetStart, transferSyntaxUid: ts, nodes, incomplete: true };
  const littleEndian = ts !== BIG_ENDIAN;
  const explicit = ts === IMPLICIT ? false : ts === '' ? isVrAt(bytes, p + 4) : isVrAt(bytes, p + 4) || !(p + 8 <= bytes.length);
  const u16 = (o: number): number => dv.getUint16(o, littleEndian);
  const u32 = (o: number): number => dv.getUint32(o, littleEndian);
  let incomplete = false;

  /** Walks siblings from `p` up to `limit` (or a delimiter when `limit` is undefined). Returns where it stopped. */
  const walkLevel = (from: number, limit: number | undefined, depth: number, parent: number): number => {
    let q = from;
    const stop = Math.min(limit ?? bytes.length, bytes.length);
    while (q + 8 <= stop) {
      if (depth > 64) { incomplete = true; return q; }
      const group = u16(q);
      const element = u16(q + 2);
      if (group === 0xfffe) {
        const length = u32(q + 4);
        if (element === 0xe00d || element === 0xe0dd) {
          nodes.push({ kind: 'delimiter', group, element, vr: '', start: q, lengthOffset: q + 4, lengthSize: 4, length, valueOffset: q + 8, end: q + 8, depth, parent, littleEndian, explicit, meta: false });
          return q + 8;
        }
        // an item outside a sequence: not followable
        incomplete = true;
        return q;
      }
      let vr: string;
      let length: number;
      let lengthOffset: number;
      let lengthSize: 2 | 4;
      let valueOffset: number;
      if (explicit) {
        if (!isVrAt(bytes, q + 4)) { incomplete = true; return q; }
        vr = String.fromCharCode(bytes[q + 4], bytes[q + 5]);
        if (LONG_VRS.has(vr)) {
          if (q + 12 > stop) { incomplete = true; return q; }
          lengthOffset = q + 8; lengthSize = 4; length = u32(q + 8); valueOffset = q + 12;
        } else {
          lengthOffset = q + 6; lengthSize = 2; length = u16(q + 6); valueOffset = q + 8;
        }
      } else {
        vr = '';
        lengthOffset = q + 4; lengthSize = 4; length = u32(q + 4); valueOffset = q + 8;
      }
      const index = nodes.length;
      const node: Node = { kind: 'element', group, element, vr, start: q, lengthOffset, lengthSize, length, valueOffset, end: valueOffset, depth, parent, littleEndian, explicit, meta: false };
      nodes.push(node);
      const isSq = vr === 'SQ' || (!explicit && (implicitVr(group, element) === 'SQ' || (length === UNDEFINED && !(group === 0x7fe0 && element === 0x0010))));
      const isEncapsulated = group === 0x7fe0 && element === 0x0010 && length === UNDEFINED;
      if (isSq || isEncapsulated) {
        const end = walkItems(valueOffset, length === UNDEFINED ? undefined : valueOffset + length, depth + 1, index, isEncapsulated);
        if (end < 0) return q;
        node.end = end;
        q = end;
        continue;
      }
      if (length === UNDEFINED || valueOffset + length > stop) { incomplete = true; node.end = stop; return q; }
      node.end = valueOffset + length;
      q = node.end;
    }
    if (limit === undefined && q < bytes.length) incomplete = true;
    return q;
  };

  /** Items of a sequence (or the fragments of encapsulated Pixel Data). Returns the end, or -1 when lost. */
  const walkItems = (from: number, limit: number | undefined, depth: number, parent: number, pixel: boolean): number => {
    let q = from;
    const stop = Math.min(limit ?? bytes.length, bytes.length);
    while (q + 8 <= stop) {
      const group = u16(q);
      const element = u16(q + 2);
      const length = u32(q + 4);
      if (group !== 0xfffe) { incomplete = true; return -1; }
      if (element === 0xe0dd) {
        nodes.push({ kind: 'delimiter', group, element, vr: '', start: q, lengthOffset: q + 4, lengthSize: 4, length, valueOffset: q + 8, end: q + 8, depth, parent, littleEndian, explicit, meta: false });
        return q + 8;
      }
      if (element !== 0xe000) { incomplete = true; return -1; }
      const index = nodes.length;
      const item: Node = { kind: 'item', group, element, vr: '', start: q, lengthOffset: q + 4, lengthSize: 4, length, valueOffset: q + 8, end: q + 8, depth, parent, littleEndian, explicit, meta: false, ...(pixel ? { pixelItem: true } : {}) };
      nodes.push(item);
      if (pixel) {
        if (length === UNDEFINED || q + 8 + length > bytes.length) { incomplete = true; return -1; }
        item.end = q + 8 + length;
      } else if (length === UNDEFINED) {
        const end = walkLevel(q + 8, undefined, depth + 1, index);
        if (end <= q + 8 && !(end === q + 16)) { /* empty undefined-length item ends at its delimiter */ }
        item.end = end;
      } else {
        if (q + 8 + length > bytes.length) { incomplete = true; return -1; }
        walkLevel(q + 8, q + 8 + length, depth + 1, index);
        item.end = q + 8 + length;
      }
      if (item.end <= q) { incomplete = true; return -1; }
      q = item.end;
    }
    if (limit === undefined) { incomplete = true; return -1; }
    return q;
  };

  if (p < bytes.length) walkLevel(p, undefined, 0, -1);
  return { metaStart, datasetStart, transferSyntaxUid: ts, nodes, incomplete };
}

export const tagOf = (n: Node): string => `${hex4(n.group)}${hex4(n.element)}`;

/** The first top-level (or any-depth, with `anyDepth`) element with this tag, e.g. '00280010'. */
export function findElement(layout: Layout, tag: string, anyDepth = false): Node | undefined {
  return layout.nodes.find((n) => n.kind === 'element' && tagOf(n) === tag && (anyDepth || n.depth === 0));
}

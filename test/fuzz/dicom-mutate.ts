import * as zlib from 'node:zlib';
import { ALL_VRS, UNDEFINED, findElement, isLongVr, tagOf, walk, type Layout, type Node } from './dicom-walk';
import type { Rng } from './rng';

/**
 * Structure-aware mutations of Part-10 files: each one knows the byte layout (./dicom-walk.ts) and changes one thing
 * a sender controls — an element length, a VR, the tag order, a truncation, the transfer syntax UID, the pixel-data
 * fragment table, a nested sequence length, header bytes, a huge declared length, an image attribute — either
 * consistently (enclosing lengths fixed up, so the parser gets further) or not. A case stacks one to six of them.
 */

export interface Mutated {
  bytes: Buffer;
  /** What was done, in order (names and small numbers only: a replayed case prints it). */
  ops: string[];
}

interface Ctx {
  rng: Rng;
  buf: Buffer;
  layout: Layout;
  /** Another seed file (for transplants). */
  other: () => Buffer;
}

type Mutation = (c: Ctx) => { buf: Buffer; op: string } | null;

export const TRANSFER_SYNTAXES = [
  '1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.5',
  '1.2.840.10008.1.2.8.1', '1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.53', '1.2.840.10008.1.2.4.55',
  '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.90',
  '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.202', '1.2.840.10008.1.2.4.203',
];
const ODD_TRANSFER_SYNTAXES = ['1.2.840.10008.1.2.4.100', '1.2.840.10008.1.2.4.92', '1.2.3', '', '1.2.840.10008.1.2.1\0', ' 1.2.840.10008.1.2 ',
  '1.2.840.10008.1.2.1.99.99', '9'.repeat(64), 'DEFLATE', '1.2.840.10008.1.2.4.50\\1.2.840.10008.1.2'];

const IMAGE_US = ['00280002', '00280010', '00280011', '00280100', '00280101', '00280102', '00280103', '00280006'];
const EDGE_US = [0, 1, 2, 3, 4, 7, 8, 9, 11, 12, 13, 15, 16, 17, 24, 31, 32, 33, 63, 64, 255, 256, 4096, 32767, 32768, 65534, 65535];
const IMPORTANT_TAGS = ['00020010', '00080016', '00080018', '0020000D', '00080060', '00280002', '00280004', '00280008', '00280010', '00280011',
  '00280100', '00280101', '00280102', '00280103', '7FE00010', '00281052', '00281053', '00281101', '00281201'];
const PHOTOMETRIC = ['MONOCHROME1', 'MONOCHROME2', 'RGB', 'PALETTE COLOR', 'YBR_FULL', 'YBR_FULL_422', 'YBR_ICT', 'YBR_RCT', 'YBR_PARTIAL_420',
  'YBR_PARTIAL_422', 'HSV', 'ARGB', 'CMYK', '', 'monochrome2', 'MONOCHROME2\\RGB'];
const NUMBER_STRINGS = ['0', '1', '2', '3', '-1', '4097', '65536', '1e9', '1.5', 'abc', '', ' ', '+3', '99999999999999999999', 'NaN', 'Infinity', '0x10'];

// ---- byte helpers ---------------------------------------------------------------------------------------

function readLen(buf: Buffer, n: Node): number {
  if (n.lengthSize === 2) return n.littleEndian ? buf.readUInt16LE(n.lengthOffset) : buf.readUInt16BE(n.lengthOffset);
  return n.littleEndian ? buf.readUInt32LE(n.lengthOffset) : buf.readUInt32BE(n.lengthOffset);
}

function writeLen(buf: Buffer, n: Node, v: number): void {
  if (n.lengthSize === 2) {
    const x = v & 0xffff;
    if (n.littleEndian) buf.writeUInt16LE(x, n.lengthOffset); else buf.writeUInt16BE(x, n.lengthOffset);
  } else {
    const x = v >>> 0;
    if (n.littleEndian) buf.writeUInt32LE(x, n.lengthOffset); else buf.writeUInt32BE(x, n.lengthOffset);
  }
}

function writeU16(buf: Buffer, at: number, v: number, littleEndian: boolean): void {
  if (littleEndian) buf.writeUInt16LE(v & 0xffff, at); else buf.writeUInt16BE(v & 0xffff, at);
}

/**
 * Replaces `del` bytes at `at` by `insert`; with `fix`, every enclosing element or item of defined length (and the
 * File Meta group length when the change is inside the File Meta) grows or shrinks by the difference.
 */
function splice(c: Ctx, at: number, del: number, insert: Buffer, fix: boolean): Buffer {
  const out = Buffer.concat([c.buf.subarray(0, at), insert, c.buf.subarray(at + del)]);
  if (!fix) return out;
  const delta = insert.length - del;
  for (const n of c.layout.nodes) {
    if (n.kind === 'delimiter' || n.length === UNDEFINED) continue;
    if (n.valueOffset <= at && at + del <= n.end && !(n.valueOffset === at && del === 0 && n.end === at)) {
      if (n.lengthOffset >= at) continue; // (not for a node that starts inside the replaced range)
      writeLen(out, n, readLen(c.buf, n) + delta);
    }
  }
  const groupLength = findElement(c.layout, '00020000');
  if (groupLength && at >= c.layout.metaStart && at < c.layout.datasetStart && groupLength.length === 4 && at > groupLength.valueOffset) {
    out.writeUInt32LE((c.buf.readUInt32LE(groupLength.valueOffset) + delta) >>> 0, groupLength.valueOffset);
  }
  return out;
}

/** The header of an explicit-VR element: tag, VR, length (short or long form). */
function explicitHeader(group: number, element: number, vr: string, length: number, littleEndian: boolean): Buffer {
  const long = isLongVr(vr);
  const h = Buffer.alloc(long ? 12 : 8);
  writeU16(h, 0, group, littleEndian);
  writeU16(h, 2, element, littleEndian);
  h.write(vr.padEnd(2, ' ').slice(0, 2), 4, 'latin1');
  if (long) { if (littleEndian) h.writeUInt32LE(length >>> 0, 8); else h.writeUInt32BE(length >>> 0, 8); } else writeU16(h, 6, length, littleEndian);
  return h;
}

/** A whole element (header + value) in the encoding of `like` (explicit or implicit, byte order). */
function encodeElement(like: Node, group: number, element: number, vr: string, value: Buffer): Buffer {
  let v = value;
  if (v.length % 2 === 1) v = Buffer.concat([v, Buffer.from(vr === 'UI' || vr === 'OB' ? [0] : [0x20])]);
  if (like.explicit || like.meta) return Buffer.concat([explicitHeader(group, element, vr, v.length, like.littleEndian), v]);
  const h = Buffer.alloc(8);
  writeU16(h, 0, group, like.littleEndian);
  writeU16(h, 2, element, like.littleEndian);
  if (like.littleEndian) h.writeUInt32LE(v.length, 4); else h.writeUInt32BE(v.length, 4);
  return Buffer.concat([h, v]);
}

/** Replaces an element's value (re-encoding its header with the new length), enclosing lengths fixed up. */
function replaceValue(c: Ctx, n: Node, value: Buffer, fix = true): Buffer {
  const vr = n.vr || 'UN';
  const encoded = encodeElement(n, n.group, n.element, n.explicit || n.meta ? vr : '', value);
  return splice(c, n.start, n.end - n.start, encoded, fix);
}

const elements = (c: Ctx, pred: (n: Node) => boolean = () => true): Node[] => c.layout.nodes.filter((n) => n.kind === 'element' && pred(n));
const pixelData = (c: Ctx): Node | undefined => c.layout.nodes.find((n) => n.kind === 'element' && n.group === 0x7fe0 && n.element === 0x0010 && n.depth === 0);
const headerEnd = (c: Ctx): number => Math.min(pixelData(c)?.start ?? c.buf.length, c.buf.length, 4096);

// ---- the mutations --------------------------------------------------------------------------------------

const lengthField: Mutation = (c) => {
  const nodes = c.layout.nodes.filter((n) => n.kind !== 'delimiter' || c.rng.chance(0.2));
  if (!nodes.length) return null;
  const n = c.rng.pick(nodes);
  const len = n.length === UNDEFINED ? n.end - n.valueOffset : n.length;
  const remaining = c.buf.length - n.valueOffset;
  const v = c.rng.pick([0, 1, 2, len - 1, len + 1, len + 2, len - 2, len * 2, remaining, remaining + 1, remaining - 1, 0xffff, UNDEFINED, c.rng.below(0x10000), c.rng.below(2 ** 32)]);
  writeLen(c.buf, n, Math.max(0, v));
  return { buf: c.buf, op: `length(${tagOf(n)}${n.kind === 'item' ? ':item' : ''},${len}->${Math.max(0, v) >>> 0})` };
};

const hugeLength: Mutation = (c) => {
  const nodes = c.layout.nodes.filter((n) => n.kind !== 'delimiter');
  if (!nodes.length) return null;
  const pd = pixelData(c);
  const n = pd && c.rng.chance(0.4) ? pd : c.rng.pick(nodes);
  const v = n.lengthSize === 2 ? c.rng.pick([0xffff, 0xfffe, 0x8000]) : c.rng.pick([0xfffffff0, 0x7fffffff, 0x80000000, 0xfffffffe, c.buf.length * 4, 0x40000000]);
  writeLen(c.buf, n, v);
  return { buf: c.buf, op: `hugeLength(${tagOf(n)},${v})` };
};

const vrInPlace: Mutation = (c) => {
  const nodes = elements(c, (n) => n.explicit && n.vr !== '');
  if (!nodes.length) return null;
  const n = c.rng.pick(nodes);
  const vr = c.rng.chance(0.8) ? c.rng.pick(ALL_VRS) : c.rng.pick(['ox', '\0\0', '  ', 'ZZ', 'xs', '\xff\xff']);
  c.buf.write(vr, n.start + 4, 'latin1');
  return { buf: c.buf, op: `vr(${tagOf(n)},${n.vr}->${JSON.stringify(vr)})` };
};

const vrReencoded: Mutation = (c) => {
  const nodes = elements(c, (n) => n.explicit && n.vr !== '' && n.length !== UNDEFINED && n.end - n.valueOffset < 0x10000);
  if (!nodes.length) return null;
  const n = c.rng.pick(nodes);
  const vr = c.rng.pick(ALL_VRS);
  const value = c.buf.subarray(n.valueOffset, n.end);
  const encoded = Buffer.concat([explicitHeader(n.group, n.element, vr, value.length, n.littleEndian), value]);
  return { buf: splice(c, n.start, n.end - n.start, encoded, true), op: `vrReencoded(${tagOf(n)},${n.vr}->${vr})` };
};

const swapAdjacent: Mutation = (c) => {
  const pairs: [Node, Node][] = [];
  const els = elements(c, (n) => n.length !== UNDEFINED || n.end > n.valueOffset);
  for (let i = 0; i + 1 < els.length; i++) {
    const a = els[i];
    const b = els.find((x) => x.start === a.end && x.parent === a.parent && x.depth === a.depth);
    if (b) pairs.push([a, b]);
  }
  if (!pairs.length) return null;
  const [a, b] = c.rng.pick(pairs);
  const out = Buffer.concat([c.buf.subarray(0, a.start), c.buf.subarray(b.start, b.end), c.buf.subarray(a.start, a.end), c.buf.subarray(b.end)]);
  return { buf: out, op: `swap(${tagOf(a)},${tagOf(b)})` };
};

const duplicate: Mutation = (c) => {
  const els = elements(c, (n) => n.end > n.start && n.end - n.start < 1 << 20);
  if (!els.length) return null;
  const n = c.rng.chance(0.5) ? (els.find((x) => IMPORTANT_TAGS.includes(tagOf(x)) && c.rng.chance(0.3)) ?? c.rng.pick(els)) : c.rng.pick(els);
  const copy = Buffer.from(c.buf.subarray(n.start, n.end));
  return { buf: splice(c, n.end, 0, copy, c.rng.chance(0.8)), op: `duplicate(${tagOf(n)})` };
};

const remove: Mutation = (c) => {
  const important = elements(c, (n) => IMPORTANT_TAGS.includes(tagOf(n)));
  const els = important.length && c.rng.chance(0.6) ? important : elements(c);
  if (!els.length) return null;
  const n = c.rng.pick(els);
  return { buf: splice(c, n.start, n.end - n.start, Buffer.alloc(0), c.rng.chance(0.8)), op: `remove(${tagOf(n)})` };
};

const truncate: Mutation = (c) => {
  const len = c.buf.length;
  const nodes = c.layout.nodes;
  const where = c.rng.weighted<() => number>([
    [3, () => c.rng.below(len)],
    [2, () => c.rng.below(Math.max(1, headerEnd(c)))],
    [2, () => { const n = nodes.length ? c.rng.pick(nodes) : null; return n ? n.start + c.rng.below(Math.max(1, n.valueOffset - n.start)) : c.rng.below(len); }],
    [2, () => { const n = nodes.length ? c.rng.pick(nodes) : null; return n ? n.end : c.rng.below(len); }],
    [1, () => len - 1 - c.rng.below(Math.min(len, 16))],
    [1, () => { const pd = pixelData(c); return pd ? pd.valueOffset + c.rng.below(Math.max(1, len - pd.valueOffset)) : c.rng.below(len); }],
  ]);
  const at = Math.max(0, Math.min(len, where()));
  return { buf: c.buf.subarray(0, at), op: `truncate(${at}/${len})` };
};

const transferSyntax: Mutation = (c) => {
  const ts = findElement(c.layout, '00020010');
  const uid = c.rng.chance(0.75) ? c.rng.pick(TRANSFER_SYNTAXES) : c.rng.pick(ODD_TRANSFER_SYNTAXES);
  if (!ts) {
    // insert one at the end of the File Meta
    if (c.layout.datasetStart <= c.layout.metaStart) return null;
    const like = c.layout.nodes.find((n) => n.meta)!;
    const el = encodeElement(like, 2, 0x10, 'UI', Buffer.from(uid, 'latin1'));
    return { buf: splice(c, c.layout.datasetStart, 0, el, true), op: `transferSyntax(+${uid})` };
  }
  const fix = c.rng.chance(0.85);
  return { buf: replaceValue(c, ts, Buffer.from(uid, 'latin1'), fix), op: `transferSyntax(${c.layout.transferSyntaxUid}->${JSON.stringify(uid)}${fix ? '' : ',stale-group-length'})` };
};

const fragments: Mutation = (c) => {
  const pd = pixelData(c);
  const items = c.layout.nodes.filter((n) => n.pixelItem);
  if (!pd || pd.length !== UNDEFINED || items.length === 0) {
    // native pixel data: make it look encapsulated (undefined length) or give it a fragment-looking value
    if (pd && pd.lengthSize === 4) {
      writeLen(c.buf, pd, UNDEFINED);
      return { buf: c.buf, op: 'fragments(native->undefined-length)' };
    }
    return null;
  }
  const [bot, ...frags] = items;
  const delimiter = c.layout.nodes.find((n) => n.kind === 'delimiter' && n.parent === c.layout.nodes.indexOf(pd));
  const op = c.rng.weighted<string>([[3, 'bot'], [3, 'fragmentLength'], [2, 'dropFragment'], [2, 'duplicateFragment'], [2, 'splitFragment'],
    [1, 'emptyFragment'], [1, 'dropDelimiter'], [2, 'frames'], [1, 'extendedOffsets'], [1, 'noBot']]);
  const le = pd.littleEndian;
  const itemHeader = (len: number): Buffer => { const h = Buffer.alloc(8); writeU16(h, 0, 0xfffe, le); writeU16(h, 2, 0xe000, le); if (le) h.writeUInt32LE(len >>> 0, 4); else h.writeUInt32BE(len >>> 0, 4); return h; };
  switch (op) {
    case 'bot': {
      const n = c.rng.int(0, Math.max(1, frags.length + 2));
      const entries = Buffer.alloc(n * 4);
      for (let i = 0; i < n; i++) entries.writeUInt32LE(c.rng.pick([0, c.rng.below(c.buf.length), 0xffffffff, i * 8, (n - i) * 1000, c.rng.below(2 ** 32)]) >>> 0, i * 4);
      return { buf: splice(c, bot.start, bot.end - bot.start, Buffer.concat([itemHeader(entries.length), entries]), false), op: `fragments(bot:${n})` };
    }
    case 'fragmentLength': {
      const f = c.rng.pick(items);
      const v = c.rng.pick([0, 1, f.length - 1, f.length + 1, f.length + 8, 0xffffffff, c.buf.length, c.rng.below(2 ** 32)]);
      writeLen(c.buf, f, v);
      return { buf: c.buf, op: `fragments(length:${f.length}->${v >>> 0})` };
    }
    case 'dropFragment': {
      if (!frags.length) return null;
      const f = c.rng.pick(frags);
      return { buf: splice(c, f.start, f.end - f.start, Buffer.alloc(0), false), op: 'fragments(drop)' };
    }
    case 'duplicateFragment': {
      if (!frags.length) return null;
      const f = c.rng.pick(frags);
      const times = c.rng.pick([1, 2, 10, 200]);
      const copy = Buffer.concat(Array.from({ length: times }, () => c.buf.subarray(f.start, f.end)));
      return { buf: splice(c, f.end, 0, copy, false), op: `fragments(duplicate:${times})` };
    }
    case 'splitFragment': {
      const f = frags.find((x) => x.length > 4);
      if (!f) return null;
      const cut = 1 + c.rng.below(f.length - 1);
      const a = c.buf.subarray(f.valueOffset, f.valueOffset + cut);
      const b = c.buf.subarray(f.valueOffset + cut, f.end);
      return { buf: splice(c, f.start, f.end - f.start, Buffer.concat([itemHeader(a.length), a, itemHeader(b.length), b]), false), op: `fragments(split@${cut})` };
    }
    case 'emptyFragment': {
      const at = c.rng.pick(items).end;
      return { buf: splice(c, at, 0, itemHeader(0), false), op: 'fragments(empty)' };
    }
    case 'dropDelimiter': {
      if (!delimiter) return null;
      return { buf: splice(c, delimiter.start, 8, c.rng.chance(0.5) ? Buffer.alloc(0) : itemHeader(c.rng.below(64)), false), op: 'fragments(dropDelimiter)' };
    }
    case 'frames': {
      const nf = findElement(c.layout, '00280008');
      const v = Buffer.from(c.rng.pick(['2', '3', String(frags.length + 1), String(Math.max(1, frags.length - 1)), '0', '4096', '100000']), 'latin1');
      if (nf) return { buf: replaceValue(c, nf, v), op: `fragments(frames=${v.toString()})` };
      const insertAt = c.layout.nodes.find((n) => n.depth === 0 && !n.meta && n.group === 0x0028 && n.element > 0x0008)?.start;
      if (insertAt === undefined) return null;
      return { buf: splice(c, insertAt, 0, encodeElement(pd, 0x0028, 0x0008, 'IS', v), false), op: `fragments(+frames=${v.toString()})` };
    }
    case 'extendedOffsets': {
      const n = c.rng.int(1, Math.max(1, frags.length + 1));
      const v = Buffer.alloc(n * 8);
      for (let i = 0; i < n; i++) v.writeBigUInt64LE(BigInt(c.rng.pick([0, i * 100, c.rng.below(2 ** 31), 2 ** 40])), i * 8);
      return { buf: splice(c, pd.start, 0, encodeElement(pd, 0x7fe0, 0x0001, 'OV', v), false), op: `fragments(extendedOffsets:${n})` };
    }
    default: {
      // no Basic Offset Table item at all: the first fragment is taken for it
      return { buf: splice(c, bot.start, bot.end - bot.start, Buffer.alloc(0), false), op: 'fragments(noBot)' };
    }
  }
};

const sequence: Mutation = (c) => {
  const containers = c.layout.nodes.filter((n) => !n.pixelItem && ((n.kind === 'element' && (n.vr === 'SQ' || (!n.explicit && n.end > n.valueOffset && c.layout.nodes.some((x) => x.parent === c.layout.nodes.indexOf(n))))) || n.kind === 'item'));
  const op = c.rng.weighted<string>([[4, 'length'], [2, 'toUndefined'], [2, 'dropDelimiter'], [2, 'deep'], [1, 'emptyItems']]);
  if (op === 'deep' || containers.length === 0) {
    // a deeply nested sequence (undefined lengths), inserted before the first top-level element after the meta
    const like = c.layout.nodes.find((n) => !n.meta && n.depth === 0);
    if (!like) return null;
    const depth = c.rng.pick([8, 30, 33, 64, 500, 3000]);
    const le = like.littleEndian;
    const sqHead = like.explicit ? explicitHeader(0x0008, 0x1115, 'SQ', UNDEFINED, le) : (() => { const h = Buffer.alloc(8); writeU16(h, 0, 0x0008, le); writeU16(h, 2, 0x1115, le); h.writeUInt32LE(UNDEFINED, 4); return h; })();
    const tagLen = (el: number): Buffer => { const h = Buffer.alloc(8); writeU16(h, 0, 0xfffe, le); writeU16(h, 2, el, le); if (el === 0xe000) h.writeUInt32LE(UNDEFINED, 4); return h; };
    const open: Buffer[] = [];
    const close: Buffer[] = [];
    for (let i = 0; i < depth; i++) { open.push(sqHead, tagLen(0xe000)); close.unshift(tagLen(0xe00d), tagLen(0xe0dd)); }
    const balanced = c.rng.chance(0.7);
    return { buf: splice(c, like.start, 0, Buffer.concat([...open, ...(balanced ? close : close.slice(0, c.rng.below(close.length)))]), false), op: `sequence(deep:${depth}${balanced ? '' : ',unbalanced'})` };
  }
  const n = c.rng.pick(containers);
  switch (op) {
    case 'length': {
      const len = n.length === UNDEFINED ? n.end - n.valueOffset : n.length;
      const v = c.rng.pick([0, len - 1, len + 1, len - 8, len + 8, len * 2, UNDEFINED, c.buf.length]);
      writeLen(c.buf, n, v);
      return { buf: c.buf, op: `sequence(length:${tagOf(n)},${len}->${v >>> 0})` };
    }
    case 'toUndefined': {
      if (n.length === UNDEFINED) {
        // undefined → defined (the walked length, or one off)
        const len = n.end - n.valueOffset - (c.rng.chance(0.5) ? 8 : 0);
        writeLen(c.buf, n, len);
        return { buf: c.buf, op: `sequence(toDefined:${tagOf(n)},${len})` };
      }
      writeLen(c.buf, n, UNDEFINED);
      return { buf: c.buf, op: `sequence(toUndefined:${tagOf(n)},no-delimiter)` };
    }
    case 'dropDelimiter': {
      const delims = c.layout.nodes.filter((x) => x.kind === 'delimiter' && !c.layout.nodes[x.parent]?.pixelItem);
      if (!delims.length) return null;
      const d = c.rng.pick(delims);
      return { buf: splice(c, d.start, 8, Buffer.alloc(0), false), op: `sequence(dropDelimiter:${d.element.toString(16)})` };
    }
    default: {
      // many empty items in a sequence of defined length (enclosing lengths fixed)
      if (n.kind !== 'element' || n.length === UNDEFINED) return null;
      const count = c.rng.pick([1, 100, 10000]);
      const le = n.littleEndian;
      const item = Buffer.alloc(8);
      writeU16(item, 0, 0xfffe, le);
      writeU16(item, 2, 0xe000, le);
      return { buf: splice(c, n.valueOffset, 0, Buffer.concat(Array.from({ length: count }, () => item)), true), op: `sequence(emptyItems:${count})` };
    }
  }
};

const headerFlip: Mutation = (c) => {
  const end = headerEnd(c);
  if (end <= 0) return null;
  const n = c.rng.geometric(8);
  for (let i = 0; i < n; i++) {
    const at = c.rng.below(end);
    if (c.rng.chance(0.5)) c.buf[at] ^= 1 << c.rng.below(8); else c.buf[at] = c.rng.pick([0, 0xff, 0x7f, 0x80, c.rng.below(256)]);
  }
  return { buf: c.buf, op: `headerFlip(${n})` };
};

const pixelFlip: Mutation = (c) => {
  const pd = pixelData(c);
  if (!pd || pd.end <= pd.valueOffset) return null;
  const frags = c.layout.nodes.filter((x) => x.pixelItem && x.length > 0 && x.length !== UNDEFINED);
  const n = c.rng.geometric(16);
  for (let i = 0; i < n; i++) {
    const range = frags.length && c.rng.chance(0.8) ? c.rng.pick(frags) : pd;
    const from = range.valueOffset;
    const to = Math.min(c.buf.length, range.end);
    if (to <= from) continue;
    // codestream headers sit at the start of a fragment: aim there half the time
    const at = c.rng.chance(0.5) ? from + c.rng.below(Math.min(64, to - from)) : from + c.rng.below(to - from);
    c.buf[at] = c.rng.chance(0.5) ? c.buf[at] ^ (1 << c.rng.below(8)) : c.rng.below(256);
  }
  return { buf: c.buf, op: `pixelFlip(${n})` };
};

const imageAttribute: Mutation = (c) => {
  const tag = c.rng.pick([...IMAGE_US, '00280004', '00280008', '00281052', '00281053', '00280030']);
  const n = findElement(c.layout, tag);
  if (!n) return null;
  if (IMAGE_US.includes(tag) && n.end - n.valueOffset >= 2) {
    const v = c.rng.pick(EDGE_US);
    writeU16(c.buf, n.valueOffset, v, n.littleEndian);
    return { buf: c.buf, op: `attr(${tag}=${v})` };
  }
  const value = tag === '00280004' ? c.rng.pick(PHOTOMETRIC) : tag === '00280030' ? c.rng.pick(['0\\0', '1', '-1\\1', 'a\\b', '1e308\\1e308']) : c.rng.pick(NUMBER_STRINGS);
  return { buf: replaceValue(c, n, Buffer.from(value, 'latin1')), op: `attr(${tag}=${JSON.stringify(value)})` };
};

const stringValue: Mutation = (c) => {
  const strings = elements(c, (n) => ['UI', 'CS', 'LO', 'SH', 'PN', 'IS', 'DS', 'DA', 'TM', 'UT', 'LT', ''].includes(n.vr) && n.length !== UNDEFINED && n.end - n.valueOffset < 4096 && !n.meta);
  if (!strings.length) return null;
  const uidLike = strings.filter((n) => ['00080018', '0020000D', '0020000E', '00080016', '00080060'].includes(tagOf(n)));
  const n = uidLike.length && c.rng.chance(0.5) ? c.rng.pick(uidLike) : c.rng.pick(strings);
  const kind = c.rng.pick(['crlf', 'quote', 'nonAscii', 'long', 'empty', 'nul', 'backslash', 'json']);
  const value = {
    crlf: '1.2.3\r\nX-Injected: 1',
    quote: '1.2."3"\\"',
    nonAscii: '1.2.\u00e9\u00ff\u0080',
    long: '1.'.repeat(c.rng.pick([40, 5000])),
    empty: '',
    nul: '1.2.3\0\0\0',
    backslash: '1.2.3\\4.5.6\\',
    json: '{"00081199":[]}',
  }[kind]!;
  const bytes = Buffer.from(value, 'latin1');
  if (n.lengthSize === 2 && bytes.length > 0xfffe) return null;
  return { buf: replaceValue(c, n, bytes), op: `string(${tagOf(n)},${kind})` };
};

const characterSet: Mutation = (c) => {
  const value = c.rng.pick(['ISO 2022 IR 6\\ISO 2022 IR 87', '\\ISO 2022 IR 100', 'ISO_IR 192', 'GB18030', 'NOT A CHARSET', 'ISO_IR 100\\ISO_IR 144\\ISO_IR 13']);
  const n = findElement(c.layout, '00080005');
  if (n) return { buf: replaceValue(c, n, Buffer.from(value, 'latin1')), op: `charset(${JSON.stringify(value)})` };
  const like = c.layout.nodes.find((x) => !x.meta && x.depth === 0);
  if (!like) return null;
  return { buf: splice(c, like.start, 0, encodeElement(like, 0x0008, 0x0005, 'CS', Buffer.from(value, 'latin1')), false), op: `charset(+${JSON.stringify(value)})` };
};

const transplantPixelData: Mutation = (c) => {
  const pd = pixelData(c);
  const other = c.other();
  const ol = walk(other);
  const opd = ol.nodes.find((n) => n.kind === 'element' && n.group === 0x7fe0 && n.element === 0x0010 && n.depth === 0);
  if (!pd || !opd) return null;
  const end = Math.min(other.length, opd.end);
  return { buf: splice(c, pd.start, Math.min(c.buf.length, pd.end) - pd.start, Buffer.from(other.subarray(opd.start, end)), false), op: `transplantPixelData(${ol.transferSyntaxUid})` };
};

const transplantElement: Mutation = (c) => {
  const other = c.other();
  const ol = walk(other);
  const candidates = ol.nodes.filter((n) => n.kind === 'element' && !n.meta && n.end <= other.length && n.end - n.start < 1 << 20);
  const targets = c.layout.nodes.filter((n) => n.kind === 'element' && !n.meta && n.depth === 0);
  if (!candidates.length || !targets.length) return null;
  const el = c.rng.pick(candidates);
  const at = c.rng.pick(targets).start;
  return { buf: splice(c, at, 0, Buffer.from(other.subarray(el.start, el.end)), false), op: `transplant(${tagOf(el)})` };
};

const append: Mutation = (c) => {
  const what = c.rng.pick(['garbage', 'other', 'zeros', 'item']);
  const extra = what === 'garbage' ? c.rng.bytes(c.rng.int(1, 4096)) : what === 'other' ? c.other() : what === 'zeros' ? Buffer.alloc(c.rng.int(1, 65536)) : Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
  return { buf: Buffer.concat([c.buf, extra]), op: `append(${what},${extra.length})` };
};

const preamble: Mutation = (c) => {
  const op = c.rng.pick(['noPreamble', 'badMagic', 'noMeta', 'bogusMeta', 'metaOnly']);
  switch (op) {
    case 'noPreamble': return c.layout.metaStart === 132 ? { buf: c.buf.subarray(128), op: 'preamble(noPreamble:DICM)' } : null;
    case 'badMagic': { if (c.layout.metaStart !== 132) return null; c.buf.write(c.rng.pick(['DICN', 'dicm', '\0\0\0\0']), 128, 'latin1'); return { buf: c.buf, op: 'preamble(badMagic)' }; }
    case 'noMeta': return { buf: Buffer.concat([c.buf.subarray(0, c.layout.metaStart), c.buf.subarray(c.layout.datasetStart)]), op: 'preamble(noMeta)' };
    case 'metaOnly': return { buf: c.buf.subarray(0, c.layout.datasetStart), op: 'preamble(metaOnly)' };
    default: {
      const el = explicitHeader(0x0002, c.rng.pick([0x0001, 0x0013, 0x0100, 0x9999]), c.rng.pick(['OB', 'UL', 'UN', 'SQ']), c.rng.pick([0, 2, 6, UNDEFINED, 0x7fffffff]), true);
      return { buf: splice(c, c.layout.datasetStart, 0, Buffer.concat([el, Buffer.alloc(6)]), false), op: 'preamble(bogusMeta)' };
    }
  }
};

const deflate: Mutation = (c) => {
  const ts = findElement(c.layout, '00020010');
  if (!ts || c.layout.transferSyntaxUid !== '1.2.840.10008.1.2.1' || c.layout.datasetStart >= c.buf.length) return null;
  const body = c.buf.subarray(c.layout.datasetStart);
  let compressed = zlib.deflateRawSync(body);
  const twist = c.rng.pick(['none', 'flip', 'truncate', 'trailing']);
  if (twist === 'flip' && compressed.length > 4) { compressed = Buffer.from(compressed); compressed[c.rng.below(compressed.length)] ^= 0xff; }
  if (twist === 'truncate') compressed = compressed.subarray(0, c.rng.below(compressed.length));
  if (twist === 'trailing') compressed = Buffer.concat([compressed, c.rng.bytes(16)]);
  const withTs = replaceValue(c, ts, Buffer.from('1.2.840.10008.1.2.1.99', 'latin1'));
  const metaEnd = c.layout.datasetStart + (withTs.length - c.buf.length);
  return { buf: Buffer.concat([withTs.subarray(0, metaEnd), compressed]), op: `deflate(${twist})` };
};

/** A deflated dataset that inflates to far more than it weighs (a decompression bomb), capped by the decoder's maxBytes. */
let bomb: Buffer | null = null;
const deflateBomb: Mutation = (c) => {
  if (c.layout.datasetStart <= c.layout.metaStart) return null;
  const ts = findElement(c.layout, '00020010');
  if (!ts) return null;
  bomb ??= zlib.deflateRawSync(Buffer.alloc(48 * 1024 * 1024), { level: 9 });
  const withTs = replaceValue(c, ts, Buffer.from('1.2.840.10008.1.2.1.99', 'latin1'));
  const metaEnd = c.layout.datasetStart + (withTs.length - c.buf.length);
  return { buf: Buffer.concat([withTs.subarray(0, metaEnd), bomb]), op: `deflateBomb(${bomb.length}->48MiB)` };
};

const MUTATIONS: readonly (readonly [number, string, Mutation])[] = [
  [10, 'length', lengthField], [4, 'hugeLength', hugeLength], [5, 'vr', vrInPlace], [4, 'vrReencoded', vrReencoded],
  [4, 'swap', swapAdjacent], [3, 'duplicate', duplicate], [5, 'remove', remove], [8, 'truncate', truncate],
  [6, 'transferSyntax', transferSyntax], [8, 'fragments', fragments], [6, 'sequence', sequence], [8, 'headerFlip', headerFlip],
  [6, 'pixelFlip', pixelFlip], [10, 'attr', imageAttribute], [4, 'string', stringValue], [2, 'charset', characterSet],
  [3, 'transplantPixelData', transplantPixelData], [2, 'transplant', transplantElement], [2, 'append', append],
  [3, 'preamble', preamble], [3, 'deflate', deflate], [0.3, 'deflateBomb', deflateBomb],
];

export const MUTATION_NAMES = MUTATIONS.map(([, name]) => name);

/**
 * One mutated file: `seed` (left untouched) with 1 to 6 mutations stacked, each applied to the layout of the result
 * of the one before. `only` restricts the draw to the named mutations.
 */
export function mutateDicom(rng: Rng, seed: Buffer, other: () => Buffer, only?: readonly string[]): Mutated {
  let buf: Buffer = Buffer.from(seed);
  const ops: string[] = [];
  const table = only ? MUTATIONS.filter(([, name]) => only.includes(name)) : MUTATIONS;
  const count = rng.geometric(6);
  for (let i = 0, tries = 0; i < count && tries < count * 4; tries++) {
    const mutation = rng.weighted(table.map(([w, , m]) => [w, m] as const));
    let layout: Layout;
    try { layout = walk(buf); } catch { layout = { metaStart: 0, datasetStart: 0, transferSyntaxUid: '', nodes: [], incomplete: true }; }
    const r = mutation({ rng, buf, layout, other });
    if (!r) continue;
    buf = r.buf;
    ops.push(r.op);
    i++;
  }
  return { bytes: buf, ops };
}

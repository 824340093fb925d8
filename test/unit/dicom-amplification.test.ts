/**
 * Inputs whose declared structure would make the DICOM reader do far more work than the bytes justify, all found by
 * `npm run fuzz` (the parser target): an element length far beyond the file, items nested thousands deep, and a
 * deflated dataset that inflates a thousandfold. Each must end quickly in a typed error, a skip or a header, without
 * the reader materialising more than the input holds. (Sizes of what was allocated and read are asserted, never times.)
 */
import * as zlib from 'node:zlib';
import dcmjs from 'dcmjs';
import { decodeInstance, isSkipped, readHeader } from '../../src/dicom';
import { MAX_ITEM_NESTING } from '../../src/dicom/nesting';
import { INFLATE_MAX_RATIO } from '../../src/dicom/dataset';
import { DEFAULT_DECODE_LIMITS } from '../../src/dicom';
import { isWardenError } from '../../src/core/errors';

const LONG = new Set(['OB', 'OW', 'SQ', 'UN', 'UT']);

function el(group: number, element: number, vr: string, value: Buffer, length = value.length): Buffer {
  const long = LONG.has(vr);
  const h = Buffer.alloc(long ? 12 : 8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(element, 2);
  h.write(vr, 4, 'latin1');
  if (long) h.writeUInt32LE(length >>> 0, 8); else h.writeUInt16LE(length, 6);
  return Buffer.concat([h, value]);
}
const str = (s: string): Buffer => Buffer.from(s.length % 2 ? `${s}\0` : s, 'latin1');
const us = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };

/** A Part-10 file: preamble, File Meta (explicit VR LE) declaring `ts`, then `dataset` as given. */
function part10(dataset: Buffer, ts = '1.2.840.10008.1.2.1'): Buffer {
  const meta = Buffer.concat([
    el(2, 0x0002, 'UI', str('1.2.840.10008.5.1.4.1.1.7')),
    el(2, 0x0003, 'UI', str('1.2.3.4.5.6.7.8.9')),
    el(2, 0x0010, 'UI', str(ts)),
  ]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), el(2, 0, 'UL', Buffer.from(Uint32Array.of(meta.length).buffer)), meta, dataset]);
}

/** A small explicit-LE image: identification, 8×8 MONOCHROME2 8-bit pixels; `before` goes ahead of the image module. */
function image(before: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([
    el(0x0008, 0x0016, 'UI', str('1.2.840.10008.5.1.4.1.1.7')),
    el(0x0008, 0x0018, 'UI', str('1.2.3.4.5.6.7.8.9')),
    el(0x0008, 0x0060, 'CS', str('OT')),
    before,
    el(0x0020, 0x000d, 'UI', str('1.2.3.4.5.6.7.8')),
    el(0x0028, 0x0002, 'US', us(1)),
    el(0x0028, 0x0004, 'CS', str('MONOCHROME2')),
    el(0x0028, 0x0010, 'US', us(8)),
    el(0x0028, 0x0011, 'US', us(8)),
    el(0x0028, 0x0100, 'US', us(8)),
    el(0x0028, 0x0101, 'US', us(8)),
    el(0x0028, 0x0102, 'US', us(7)),
    el(0x0028, 0x0103, 'US', us(0)),
    el(0x7fe0, 0x0010, 'OB', Buffer.alloc(64, 7)),
  ]);
}

/** Records the largest buffer dcmjs' reader materialises while `fn` runs. */
async function largestRead(fn: () => Promise<void> | void): Promise<number> {
  const probe = new dcmjs.data.ReadBufferStream(new ArrayBuffer(0));
  const proto = Object.getPrototypeOf(probe.view) as { slice: (s?: number, e?: number) => ArrayBuffer };
  const bounded = proto.slice;
  let largest = 0;
  proto.slice = function (this: unknown, s?: number, e?: number) {
    const out = bounded.call(this, s, e);
    largest = Math.max(largest, out.byteLength);
    return out;
  };
  try { await fn(); } finally { proto.slice = bounded; }
  return largest;
}

async function ending(bytes: Buffer): Promise<string> {
  try {
    const d = await decodeInstance(bytes);
    return isSkipped(d) ? 'skipped' : 'decoded';
  } catch (err) {
    if (!isWardenError(err)) throw err;
    return err.code;
  }
}

describe('declared lengths beyond the data', () => {
  // (0020,0020) Patient Orientation, sent with VR UN and a 256 MB length: dcmjs reads it as its dictionary VR (CS)
  const lying = image(el(0x0020, 0x0020, 'UN', str('L\\P'), 256 * 1024 * 1024));

  it('are never materialised: no read is larger than the file, for the decoder or the header reader', async () => {
    const file = part10(lying);
    let end = '';
    const largest = await largestRead(async () => { end = await ending(file); readHeader(file); });
    expect(largest).toBeLessThanOrEqual(file.length);
    expect(['skipped', 'DICOM_TRUNCATED', 'DICOM_MALFORMED']).toContain(end);
  });

  it('leave well-formed files as they were', async () => {
    const file = part10(image());
    expect(await ending(file)).toBe('decoded');
    expect(readHeader(file)).toMatchObject({ sopInstanceUid: '1.2.3.4.5.6.7.8.9', studyInstanceUid: '1.2.3.4.5.6.7.8', rows: 8, columns: 8 });
  });
});

describe('nested sequence items', () => {
  /** (0008,1115) SQ of undefined length holding `depth` nested undefined-length items. */
  function nested(depth: number): Buffer {
    const sq = el(0x0008, 0x1115, 'SQ', Buffer.alloc(0), 0xffffffff);
    const item = Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]);
    const itemEnd = Buffer.from([0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]);
    const sqEnd = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
    const open: Buffer[] = [];
    const close: Buffer[] = [];
    for (let i = 0; i < depth; i++) { open.push(sq, item); close.unshift(itemEnd, sqEnd); }
    return Buffer.concat([...open, ...close]);
  }

  it(`deeper than ${MAX_ITEM_NESTING} levels are refused before dcmjs reads them`, async () => {
    const file = part10(image(nested(3000)));
    let end = '';
    let header: ReturnType<typeof readHeader> = null;
    const largest = await largestRead(async () => { end = await ending(file); header = readHeader(file); });
    expect(end).toBe('DICOM_MALFORMED');
    await expect(decodeInstance(file)).rejects.toThrow(/nests sequence items more than 32 levels deep/);
    expect(header).toEqual({});
    expect(largest).toBe(0); // dcmjs never started
  });

  it(`up to ${MAX_ITEM_NESTING} levels are read as before`, async () => {
    const file = part10(image(nested(MAX_ITEM_NESTING)));
    expect(await ending(file)).toBe('decoded');
    expect(readHeader(file)).toMatchObject({ sopInstanceUid: '1.2.3.4.5.6.7.8.9', rows: 8 });
  });
});

describe('deflated datasets', () => {
  const DEFLATED = '1.2.840.10008.1.2.1.99';

  it(`inflating to more than ${INFLATE_MAX_RATIO}× their size (a decompression bomb) are refused by the decoder and the header reader`, async () => {
    const bomb = zlib.deflateRawSync(Buffer.alloc(48 * 1024 * 1024), { level: 9 });
    const file = part10(bomb, DEFLATED);
    expect(file.length).toBeLessThan(100 * 1024);
    await expect(decodeInstance(file)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE', message: expect.stringContaining(`${INFLATE_MAX_RATIO} times its compressed size`) });
    expect(readHeader(file)).toEqual({});
  });

  it('of ordinary ratio decode, and their header reads', async () => {
    const file = part10(zlib.deflateRawSync(image()), DEFLATED);
    expect(await ending(file)).toBe('decoded');
    expect(readHeader(file)).toMatchObject({ sopInstanceUid: '1.2.3.4.5.6.7.8.9', transferSyntaxUid: DEFLATED, rows: 8 });
  });
});

describe('datasets of very many elements', () => {
  /** `n` empty private elements (8 bytes each): dcmjs spends microseconds on each, on the event loop. */
  const spam = (n: number): Buffer => Buffer.concat(Array.from({ length: n }, (_, i) => el(0x0009, 0x1000 + (i % 0xefff), 'LO', Buffer.alloc(0))));

  it('are refused past maxElements by the decoder, and read no further by the header reader', async () => {
    const file = part10(image(spam(DEFAULT_DECODE_LIMITS.maxElements + 10)));
    await expect(decodeInstance(file)).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE', message: expect.stringContaining(`more than ${DEFAULT_DECODE_LIMITS.maxElements} elements`) });
    const header = readHeader(file)!;
    expect(header.sopInstanceUid).toBe('1.2.3.4.5.6.7.8.9'); // read before the flood
    expect(header.rows).toBeUndefined(); // never reached
    await expect(decodeInstance(part10(image(spam(50))), { maxElements: 40 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    expect(await ending(part10(image(spam(50))))).toBe('decoded');
  });
});

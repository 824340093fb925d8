/**
 * Reads the image size a compressed codestream declares, without decoding, so that a codestream claiming a
 * size other than Rows × Columns is rejected before the codec allocates for it.
 */

export interface CodestreamInfo {
  width: number;
  height: number;
  components: number;
  precision: number;
}

/**
 * The marker segments of a JPEG / JPEG-LS codestream up to and including the first SOS, in order: marker and
 * offset of its 0xFF. Fill bytes and standalone markers (SOI, TEM, RSTn) are stepped over; stops at anything
 * that is not a marker.
 */
function* jpegSegments(b: Uint8Array): Generator<{ marker: number; at: number }> {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return;
  let p = 2;
  while (p + 4 <= b.length) {
    if (b[p] !== 0xff) return;
    const m = b[p + 1];
    if (m === 0xff) { p++; continue; }
    if (m === 0xd8 || m === 0x01 || (m >= 0xd0 && m <= 0xd7)) { p += 2; continue; }
    yield { marker: m, at: p };
    if (m === 0xda || m === 0xd9) return;
    p += 2 + ((b[p + 2] << 8) | b[p + 3]);
  }
}

/** JPEG (ISO 10918) and JPEG-LS: the first SOFn / SOF55 segment. */
function peekJpeg(b: Uint8Array): CodestreamInfo | undefined {
  for (const { marker: m, at: p } of jpegSegments(b)) {
    const isSof = (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) || m === 0xf7;
    if (!isSof) continue;
    if (p + 10 > b.length) return undefined;
    return {
      precision: b[p + 4],
      height: (b[p + 5] << 8) | b[p + 6],
      width: (b[p + 7] << 8) | b[p + 8],
      components: b[p + 9],
    };
  }
  return undefined;
}

/** JPEG 2000 / HTJ2K: the SIZ segment right after SOC (raw codestream or inside a JP2 jp2c box). */
function peekJ2k(b: Uint8Array): CodestreamInfo | undefined {
  let p = -1;
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0x4f) p = 0;
  else {
    // JP2: search for the codestream start (bounded)
    const lim = Math.min(b.length - 1, 4096);
    for (let i = 0; i < lim; i++) if (b[i] === 0xff && b[i + 1] === 0x4f && b[i + 2] === 0xff && b[i + 3] === 0x51) { p = i; break; }
  }
  if (p < 0 || p + 42 > b.length || b[p + 2] !== 0xff || b[p + 3] !== 0x51) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const q = p + 4; // Lsiz
  const xsiz = dv.getUint32(q + 4, false);
  const ysiz = dv.getUint32(q + 8, false);
  const xo = dv.getUint32(q + 12, false);
  const yo = dv.getUint32(q + 16, false);
  const csiz = dv.getUint16(q + 34, false);
  const ssiz = q + 36 < b.length ? (b[q + 36] & 0x7f) + 1 : 0;
  return { width: xsiz - xo, height: ysiz - yo, components: csiz, precision: ssiz };
}

export function peekCodestream(b: Uint8Array): CodestreamInfo | undefined {
  return peekJpeg(b) ?? peekJ2k(b);
}

/** JPEG-LS: the interleave mode (ILV) of the first scan: 0 none (planar output), 1 line, 2 sample. */
export function jpegLsInterleaveMode(b: Uint8Array): number | undefined {
  for (const { marker, at: p } of jpegSegments(b)) {
    if (marker !== 0xda) continue;
    const q = p + 5 + 2 * b[p + 4]; // after the component specs: NEAR, ILV
    return q + 1 < b.length ? b[q + 1] : undefined;
  }
  return undefined;
}

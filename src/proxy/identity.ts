import * as dcmjs from 'dcmjs';

/**
 * The few UIDs the PS3.18 response must carry back to the sender (SOP Class, SOP Instance) and the Study
 * Instance UID the study rule groups by. Read with dcmjs up to (0028,0100) only (past the UIDs, the image geometry), from a prefix of the part
 * when that suffices. These values stay in memory: logs and metrics only ever see hashUid() of them.
 */
export interface InstanceIdentity {
  sopClassUid?: string;
  sopInstanceUid?: string;
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  transferSyntaxUid?: string;
  /** Image geometry when present before the pixel data (for the scan memory estimate), else undefined. */
  rows?: number;
  columns?: number;
  frames?: number;
  samplesPerPixel?: number;
  bitsAllocated?: number;
}

const num = (dict: Record<string, { Value?: unknown[] }> | undefined, tag: string): number | undefined => {
  const v = Number(dict?.[tag]?.Value?.[0]);
  return Number.isFinite(v) && v > 0 ? v : undefined;
};

/**
 * Bytes an instance's decoded pixels take as 32-bit floats (all frames, all samples): what a scan allocates
 * beyond the instance's own bytes. Falls back to the part size when the geometry is unknown.
 */
export function decodedBytesEstimate(id: InstanceIdentity | null, partBytes: number): number {
  if (!id?.rows || !id.columns) return partBytes;
  return id.rows * id.columns * (id.samplesPerPixel ?? 1) * (id.frames ?? 1) * 4;
}

let quiet = false;
function quietDcmjs(): void {
  if (quiet) return;
  quiet = true;
  try { (dcmjs as { log?: { setLevel?: (l: string) => void } }).log?.setLevel?.('silent'); } catch { /* older dcmjs */ }
}

const clean = (v: unknown): string | undefined => {
  if (typeof v !== 'string') return undefined;
  const s = v.replace(/[\0 ]+$/, '').trim();
  return s.length ? s : undefined;
};

function valueOf(dict: Record<string, { Value?: unknown[] }> | undefined, tag: string): string | undefined {
  return clean(dict?.[tag]?.Value?.[0]);
}

/** Returns null when the bytes are not a Part-10 file (no preamble + "DICM"). */
export function readIdentity(bytes: Uint8Array): InstanceIdentity | null {
  if (bytes.length < 132 || bytes[128] !== 0x44 || bytes[129] !== 0x49 || bytes[130] !== 0x43 || bytes[131] !== 0x4d) return null;
  quietDcmjs();
  const ab = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? (bytes.buffer as ArrayBuffer)
    : (bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  try {
    const dicomDict = dcmjs.data.DicomMessage.readFile(ab, {
      ignoreErrors: true, untilTag: '00280100', stopOnGreaterTag: true, includeUntilTagValue: true, noCopy: true,
    });
    const meta = dicomDict.meta as Record<string, { Value?: unknown[] }>;
    const dict = dicomDict.dict as Record<string, { Value?: unknown[] }>;
    return {
      sopClassUid: valueOf(dict, '00080016') ?? valueOf(meta, '00020002'),
      sopInstanceUid: valueOf(dict, '00080018') ?? valueOf(meta, '00020003'),
      studyInstanceUid: valueOf(dict, '0020000D'),
      seriesInstanceUid: valueOf(dict, '0020000E'),
      transferSyntaxUid: valueOf(meta, '00020010'),
      rows: num(dict, '00280010'),
      columns: num(dict, '00280011'),
      frames: num(dict, '00280008'),
      samplesPerPixel: num(dict, '00280002'),
      bitsAllocated: num(dict, '00280100'),
    };
  } catch {
    return {};
  }
}

/** Reads from `head` first; when that misses a UID and the part is longer, from the whole part. */
export async function readIdentityFrom(head: Buffer, size: number, whole: () => Promise<Buffer>): Promise<InstanceIdentity | null> {
  const first = readIdentity(head);
  if (first === null) return null;
  if ((first.sopInstanceUid && first.studyInstanceUid && first.sopClassUid) || head.length >= size) return first;
  return readIdentity(await whole());
}

import { readDatasetHead } from './dataset';
import { DEFAULT_DECODE_LIMITS } from './limits';
import { TAG } from './tags';

/**
 * The header of a Part-10 instance, read cheaply from its first bytes: the UIDs the PS3.18 response carries back
 * to the sender (SOP Class, SOP Instance), the Study Instance UID the study rule groups by, and what the tags
 * claim about the image (modality, photometric, geometry). Read with dcmjs up to (0028,0100) only, from a prefix
 * of the part when that suffices. UIDs stay in memory: logs and metrics only ever see hashUid() of them.
 */
export interface InstanceHeader {
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
  modality?: string;
  photometricInterpretation?: string;
  bodyPartExamined?: string;
}

const num = (dict: Record<string, { Value?: unknown[] }> | undefined, tag: string): number | undefined => {
  const v = Number(dict?.[tag]?.Value?.[0]);
  return Number.isFinite(v) && v > 0 ? v : undefined;
};

/**
 * Bytes an instance's decoded pixels take as 32-bit floats (all frames, all samples): what a scan allocates
 * beyond the instance's own bytes. Falls back to the part size when the geometry is unknown.
 */
export function decodedBytesEstimate(id: InstanceHeader | null, partBytes: number): number {
  if (!id?.rows || !id.columns) return partBytes;
  return id.rows * id.columns * (id.samplesPerPixel ?? 1) * (id.frames ?? 1) * 4;
}

const clean = (v: unknown): string | undefined => {
  if (typeof v !== 'string') return undefined;
  const s = v.replace(/[\0 ]+$/, '').trim();
  return s.length ? s : undefined;
};

function valueOf(dict: Record<string, { Value?: unknown[] }> | undefined, tag: string): string | undefined {
  return clean(dict?.[tag]?.Value?.[0]);
}

/**
 * Returns null when the bytes are not a Part-10 file (no preamble + "DICM"), and an empty header when nothing can be
 * read. The dataset is opened exactly as the decoder opens it (src/dicom/dataset.ts: the same File Meta reader,
 * syntax rules, bounded inflate and nesting check), so the header the proxy reports and routes by comes from the
 * same reading of the bytes as the pixels it scans.
 */
export function readHeader(bytes: Uint8Array): InstanceHeader | null {
  if (bytes.length < 132 || bytes[128] !== 0x44 || bytes[129] !== 0x49 || bytes[130] !== 0x43 || bytes[131] !== 0x4d) return null;
  try {
    const { dict, meta } = readDatasetHead(bytes, TAG.BitsAllocated, DEFAULT_DECODE_LIMITS);
    const d = dict as Record<string, { Value?: unknown[] }>;
    return {
      sopClassUid: valueOf(d, TAG.SOPClassUID) ?? clean(meta.mediaStorageSopClassUid),
      sopInstanceUid: valueOf(d, TAG.SOPInstanceUID) ?? clean(meta.mediaStorageSopInstanceUid),
      studyInstanceUid: valueOf(d, TAG.StudyInstanceUID),
      seriesInstanceUid: valueOf(d, TAG.SeriesInstanceUID),
      transferSyntaxUid: clean(meta.transferSyntaxUid),
      rows: num(d, TAG.Rows),
      columns: num(d, TAG.Columns),
      frames: num(d, TAG.NumberOfFrames),
      samplesPerPixel: num(d, TAG.SamplesPerPixel),
      bitsAllocated: num(d, TAG.BitsAllocated),
      modality: valueOf(d, TAG.Modality),
      photometricInterpretation: valueOf(d, TAG.PhotometricInterpretation),
      bodyPartExamined: valueOf(d, TAG.BodyPartExamined),
    };
  } catch {
    return {};
  }
}

/** Reads from `head` first; when that misses a UID and the part is longer, from the whole part. */
export async function readHeaderFrom(head: Uint8Array, size: number, whole: () => Promise<Uint8Array>): Promise<InstanceHeader | null> {
  const first = readHeader(head);
  if (first === null) return null;
  if ((first.sopInstanceUid && first.studyInstanceUid && first.sopClassUid) || head.length >= size) return first;
  return readHeader(await whole());
}

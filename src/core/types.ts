/**
 * Stage contracts. Each arrow of ingest → decode → preprocess → extract → detect → decide → forward is one of
 * these plain values. No stage imports from a stage upstream of it; they all import from here.
 */

/** decode (src/dicom) → preprocess. No raw patient identifiers: UIDs are hashed before they leave decode. */
export interface DecodedInstance {
  /** sha256 of the SOPInstanceUID, hex, first 16 chars. Never the UID itself. */
  sopInstanceUidHash: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  modality?: string;
  bodyPartExamined?: string;
  /** Photometric interpretation as stored in the file. */
  photometricInterpretation: string;
  rows: number;
  columns: number;
  numberOfFrames: number;
  /** 1 for grey, 3 for colour after conversion to RGB (YBR and PALETTE COLOR are converted). */
  samplesPerPixel: 1 | 3;
  bitsAllocated: number;
  bitsStored: number;
  pixelRepresentation: 0 | 1;
  /**
   * One array per frame, modality values (rescale slope/intercept applied), pixel-interleaved for colour
   * (RGBRGB…), length rows*columns*samplesPerPixel.
   */
  frames: Float32Array[];
  /** VOI window from the instance, if present (first value when multi-valued). */
  window?: { center: number; width: number };
  pixelSpacing?: [number, number];
  /** Whether rescale slope/intercept were present and applied. */
  rescaled: boolean;
  /**
   * PALETTE COLOR only: bit depth of the palette LUT entries (8 or 16), i.e. the RGB values lie in
   * 0..2^colourBits-1 (bitsStored describes the palette indices). Absent otherwise.
   */
  colourBits?: number;
}

/** Non-image instances (SR, RT plan, presentation states…) are skipped, not errors. */
export interface SkippedInstance {
  skipped: true;
  reason: string;
  sopInstanceUidHash?: string;
  sopClassUid?: string;
  transferSyntaxUid?: string;
  modality?: string;
}

/** preprocess → extract */
export interface ModelInput {
  /** NCHW float32 tensor for one image (N = 1). */
  tensor: Float32Array;
  shape: number[];
}

/** extract → detect */
export interface ModelOutput {
  logits: Float32Array;
  /** Named feature vectors (penultimate + pooled intermediate layers), one image. */
  features: Record<string, Float32Array>;
}

export type Verdict = 'forward' | 'flag' | 'block';

export interface DetectorScore {
  score: number;
  pValue: number;
}

/** The per-instance record `warden scan --json` prints and the proxy logs. */
export interface VerdictRecord {
  file?: string;
  partIndex?: number;
  sopInstanceUidHash?: string;
  sopClassUid?: string;
  modality?: string;
  transferSyntaxUid?: string;
  rows?: number;
  columns?: number;
  frames?: number;
  status: 'scanned' | 'skipped' | 'error';
  skipReason?: string;
  error?: { code: string; message: string };
  prediction?: { index: number; label: string; probability: number };
  featureDims?: Record<string, number>;
  scores?: Record<string, DetectorScore>;
  verdict?: Verdict;
  reasons?: string[];
  timings: Record<string, number>;
}

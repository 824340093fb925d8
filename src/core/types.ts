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

/** The two questions a scan answers: was the image manipulated (adversarial), is it within the model's domain (domain). */
export type Signal = 'adversarial' | 'domain';

/** What a reason rests on: a detector signal, the scope rules, a failure, the study rule, or the request part itself. */
export type ReasonSignal = Signal | 'scope' | 'error' | 'study' | 'input';

/**
 * One structured reason of a Decision. Stable `code`s (docs/architecture.md): `detected` (a signal's combined p-value
 * at or below a threshold; `detector`, `pValue`, `threshold` set), `out_of_scope`, `not_an_image`, `no_detectors`,
 * `study_rule`, `not_part10`, `part_content_type`, `too_large`, `study_mismatch`, `duplicate_instance`, `no_decision_detector`, or an
 * ErrorCode for signal `error`.
 */
export interface Reason {
  readonly signal: ReasonSignal;
  readonly code: string;
  /** Detector id(s) the reason rests on, `+`-joined when combined (e.g. `uad`, `squeeze+coherence`). */
  readonly detector?: string;
  readonly pValue?: number;
  readonly threshold?: number;
  /** A short non-identifying detail (e.g. the offending part content type). */
  readonly detail?: string;
}

/** The policy's answer for one instance: immutable, made only by src/policy. */
export interface Decision {
  /** What is carried out (always `forward` in observe mode, but for parts that are not instances). */
  readonly verdict: Verdict;
  readonly reasons: readonly Reason[];
  /** The combined p-value of the adversarial signal's detectors, when the instance was scanned and judged. */
  readonly pValue?: number;
  /** The combined p-value of each signal that was computed. */
  readonly pValues?: Readonly<Partial<Record<Signal, number>>>;
  /** Observe mode: the verdict enforce mode would have carried out, when it is not `forward`. */
  readonly wouldBe?: Verdict;
}

export interface DetectorScore {
  score: number;
  pValue: number;
  /** The question the detector answers (absent from hand-made scores in tests). */
  signal?: Signal;
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
  reasons?: readonly Reason[];
  timings: Record<string, number>;
}

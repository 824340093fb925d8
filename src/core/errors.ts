/**
 * The one error catalogue. Every failure Warden reports carries a stable `code` and a plain sentence.
 * Codes are a brand, not a class hierarchy: errors that cross a worker boundary are structured-cloned and
 * lose their prototype, so they travel as {code, message, detail} and are rebuilt with `fromSerialized`.
 */

export const ERROR_CATALOGUE = {
  // input: the instance itself
  NOT_DICOM: { kind: 'input', summary: 'The bytes are not a DICOM Part-10 file or dataset.' },
  DICOM_TRUNCATED: { kind: 'input', summary: 'The DICOM file ends before its declared content.' },
  DICOM_MALFORMED: { kind: 'input', summary: 'The DICOM dataset is structurally invalid.' },
  UNSUPPORTED_TRANSFER_SYNTAX: { kind: 'input', summary: 'No decoder is available for the transfer syntax.' },
  PIXEL_DATA_LENGTH_MISMATCH: { kind: 'input', summary: 'Pixel data length disagrees with rows, columns, frames and bit depth.' },
  PIXEL_DECODE_FAILED: { kind: 'input', summary: 'A codec failed to decode the compressed pixel data.' },
  UNSUPPORTED_PIXEL_FORMAT: { kind: 'input', summary: 'The pixel attributes (bits, samples, photometric) are not supported.' },
  IMAGE_TOO_LARGE: { kind: 'input', summary: 'The instance exceeds a configured size limit (bytes, pixels or frames).' },
  // model and detectors
  MODEL_LOAD_FAILED: { kind: 'model', summary: 'The ONNX model could not be loaded.' },
  MODEL_MANIFEST_INVALID: { kind: 'model', summary: 'The model manifest is missing or invalid.' },
  MODEL_INFERENCE_FAILED: { kind: 'model', summary: 'Inference failed.' },
  MODEL_TIMEOUT: { kind: 'model', summary: 'Inference did not finish within its deadline.' },
  WORKER_OVERLOADED: { kind: 'model', summary: 'The inference queue is full.' },
  BUNDLE_INVALID: { kind: 'model', summary: 'The detector bundle is missing, corrupt or of an unknown version.' },
  BUNDLE_MODEL_MISMATCH: { kind: 'model', summary: 'The detector bundle was fitted for a different model.' },
  DETECTOR_NOT_FITTED: { kind: 'model', summary: 'A detector was used before it was fitted or calibrated.' },
  FEATURE_SHAPE_MISMATCH: { kind: 'model', summary: 'Feature vectors do not have the dimensions the detector expects.' },
  MODEL_UNSUPPORTED_LAYOUT: { kind: 'model', summary: 'The model input is not one NCHW float tensor with 1 or 3 channels, so Warden cannot feed it.' },
  MODEL_EXTERNAL_DATA: { kind: 'model', summary: 'The model keeps weights in external data files, which a detector bundle bound to the model file cannot cover.' },
  MODEL_SURGERY_CHANGED_OUTPUTS: { kind: 'model', summary: 'Adding feature outputs changed an original output of the model, so the exposed model was not written.' },
  // configuration and usage
  CONFIG_INVALID: { kind: 'config', summary: 'The configuration is invalid.' },
  USAGE: { kind: 'config', summary: 'The command was called with invalid arguments.' },
  // gateway
  MULTIPART_MALFORMED: { kind: 'input', summary: 'The multipart/related body is malformed.' },
  UNSUPPORTED_MEDIA_TYPE: { kind: 'input', summary: 'The request content type is not supported.' },
  BODY_TOO_LARGE: { kind: 'input', summary: 'The request body exceeds the configured limit.' },
  UPSTREAM_UNAVAILABLE: { kind: 'upstream', summary: 'The upstream DICOMweb server could not be reached.' },
  UPSTREAM_ERROR: { kind: 'upstream', summary: 'The upstream DICOMweb server answered with an error.' },
  INSTANCES_WITHHELD: { kind: 'input', summary: 'Every instance of a retrieve was withheld by the policy.' },
  GATEWAY_SATURATED: { kind: 'upstream', summary: 'Too many concurrent scans.' },
  INTERNAL: { kind: 'internal', summary: 'An unexpected internal error.' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;
export type ErrorKind = (typeof ERROR_CATALOGUE)[ErrorCode]['kind'];

export interface SerializedWardenError {
  code: ErrorCode;
  message: string;
  detail?: Record<string, unknown>;
}

export class WardenError extends Error {
  readonly code: ErrorCode;
  readonly detail?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; detail?: Record<string, unknown> }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'WardenError';
    this.code = code;
    this.detail = options?.detail;
  }

  get kind(): ErrorKind {
    return ERROR_CATALOGUE[this.code].kind;
  }

  toJSON(): SerializedWardenError {
    return { code: this.code, message: this.message, ...(this.detail ? { detail: this.detail } : {}) };
  }

  static fromSerialized(s: SerializedWardenError): WardenError {
    return new WardenError(isErrorCode(s.code) ? s.code : 'INTERNAL', s.message, { detail: s.detail });
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CATALOGUE, value);
}

/** Brand check that also works on structured-cloned errors from workers. */
export function isWardenError(value: unknown): value is WardenError {
  return typeof value === 'object' && value !== null && isErrorCode((value as { code?: unknown }).code)
    && typeof (value as { message?: unknown }).message === 'string';
}

/** Wrap anything thrown by a library into a typed error, keeping the original as `cause`. */
export function toWardenError(err: unknown, fallback: ErrorCode, sentence: string): WardenError {
  if (err instanceof WardenError) return err;
  if (isWardenError(err)) return WardenError.fromSerialized(err as unknown as SerializedWardenError);
  return new WardenError(fallback, sentence, { cause: err });
}

/**
 * The one error catalogue. Every failure Warden reports carries a stable `code` and a plain sentence.
 * Codes are a brand, not a class hierarchy: errors that cross a worker boundary are structured-cloned and
 * lose their prototype, so they travel as {code, message, detail} and are rebuilt with `fromSerialized`.
 */

export const ERROR_CATALOGUE = {
  // input: the instance itself
  NOT_DICOM: { kind: 'input', status: 400, summary: 'The bytes are not a DICOM Part-10 file or dataset.' },
  DICOM_TRUNCATED: { kind: 'input', status: 400, summary: 'The DICOM file ends before its declared content.' },
  DICOM_MALFORMED: { kind: 'input', status: 400, summary: 'The DICOM dataset is structurally invalid.' },
  UNSUPPORTED_TRANSFER_SYNTAX: { kind: 'input', status: 415, summary: 'No decoder is available for the transfer syntax.' },
  PIXEL_DATA_LENGTH_MISMATCH: { kind: 'input', status: 400, summary: 'Pixel data length disagrees with rows, columns, frames and bit depth.' },
  PIXEL_DECODE_FAILED: { kind: 'input', status: 400, summary: 'A codec failed to decode the compressed pixel data.' },
  UNSUPPORTED_PIXEL_FORMAT: { kind: 'input', status: 415, summary: 'The pixel attributes (bits, samples, photometric) are not supported.' },
  IMAGE_TOO_LARGE: { kind: 'input', status: 413, summary: 'The instance exceeds a configured size limit (bytes, pixels or frames).' },
  FILE_UNREADABLE: { kind: 'input', status: 400, summary: 'A file named on the command line could not be read.' },
  // model and detectors
  MODEL_LOAD_FAILED: { kind: 'model', status: 500, summary: 'The ONNX model could not be loaded.' },
  MODEL_MANIFEST_INVALID: { kind: 'model', status: 500, summary: 'The model manifest is missing or invalid.' },
  MODEL_INFERENCE_FAILED: { kind: 'model', status: 500, summary: 'Inference failed.' },
  MODEL_TIMEOUT: { kind: 'model', status: 504, summary: 'Inference did not finish within its deadline.' },
  WORKER_OVERLOADED: { kind: 'model', status: 503, summary: 'The inference queue is full.' },
  BUNDLE_INVALID: { kind: 'model', status: 500, summary: 'The detector bundle is missing, corrupt or of an unknown version.' },
  BUNDLE_MODEL_MISMATCH: { kind: 'model', status: 500, summary: 'The detector bundle was fitted for a different model.' },
  DETECTOR_NOT_FITTED: { kind: 'model', status: 500, summary: 'A detector was used before it was fitted or calibrated.' },
  FEATURE_SHAPE_MISMATCH: { kind: 'model', status: 500, summary: 'Feature vectors do not have the dimensions the detector expects.' },
  MODEL_UNSUPPORTED_LAYOUT: { kind: 'model', status: 422, summary: 'The model input is not one NCHW float tensor with 1 or 3 channels, so Warden cannot feed it.' },
  MODEL_EXTERNAL_DATA: { kind: 'model', status: 422, summary: 'The model keeps weights in external data files, which a detector bundle bound to the model file cannot cover.' },
  MODEL_SURGERY_CHANGED_OUTPUTS: { kind: 'model', status: 500, summary: 'Adding feature outputs changed an original output of the model, so the exposed model was not written.' },
  // configuration and usage
  CONFIG_INVALID: { kind: 'config', status: 500, summary: 'The configuration is invalid.' },
  RELOAD_REFUSED: { kind: 'config', status: 409, summary: 'A hot reload was refused; the bundle and policy in use stay.' },
  USAGE: { kind: 'config', status: 400, summary: 'The command or request was called with invalid arguments.' },
  // gateway: the HTTP request
  UNAUTHORIZED: { kind: 'client', status: 401, summary: 'The request carries no valid credentials for this route.' },
  FORBIDDEN: { kind: 'client', status: 403, summary: 'The credentials are valid but do not carry the role this route needs.' },
  NOT_FOUND: { kind: 'client', status: 404, summary: 'No route matches the request path.' },
  METHOD_NOT_ALLOWED: { kind: 'client', status: 405, summary: 'The route does not support the request method.' },
  PATH_REFUSED: { kind: 'client', status: 400, summary: 'The request path is not a canonical DICOMweb path (dot segments, encoded separators or malformed percent-encoding).' },
  HTTP_MALFORMED: { kind: 'client', status: 400, summary: 'The HTTP request is malformed (its framing or headers cannot be read).' },
  REQUEST_TIMEOUT: { kind: 'client', status: 408, summary: 'The request (or its body) did not arrive within the configured time.' },
  MULTIPART_MALFORMED: { kind: 'input', status: 400, summary: 'The multipart/related body is malformed.' },
  UNSUPPORTED_MEDIA_TYPE: { kind: 'input', status: 415, summary: 'The request content type is not supported.' },
  BODY_TOO_LARGE: { kind: 'input', status: 413, summary: 'The request body exceeds the configured limit.' },
  INSTANCES_WITHHELD: { kind: 'input', status: 409, summary: 'Every instance of a retrieve was withheld by the policy.' },
  GATEWAY_SATURATED: { kind: 'upstream', status: 503, summary: 'Too many concurrent scans.' },
  // gateway: the upstream DICOMweb server
  UPSTREAM_UNAVAILABLE: { kind: 'upstream', status: 502, summary: 'The upstream DICOMweb server could not be reached.' },
  UPSTREAM_ERROR: { kind: 'upstream', status: 502, summary: 'The upstream DICOMweb server answered with an error.' },
  UPSTREAM_TIMEOUT: { kind: 'upstream', status: 504, summary: 'The upstream DICOMweb server did not answer in time.' },
  // warden calibrate: the site's clean studies it recalibrates on
  DICOMWEB_SOURCE_UNREACHABLE: { kind: 'upstream', status: 502, summary: 'The DICOMweb server to pull studies from could not be reached, or stalled.' },
  DICOMWEB_SOURCE_ERROR: { kind: 'upstream', status: 502, summary: 'The DICOMweb server to pull studies from answered with an error or a malformed body.' },
  CALIBRATION_SOURCE_EMPTY: { kind: 'config', status: 400, summary: 'The calibration source holds no usable clean instance.' },
  CALIBRATION_STATE_MISMATCH: { kind: 'config', status: 400, summary: 'The resume state file belongs to another pull (model, bundle, source or filters differ).' },
  // production trail: audit store, quarantine, review page
  AUDIT_INPUT_INVALID: { kind: 'input', status: 400, summary: 'An audit record was refused: a field is missing, malformed or not a hash where a hash belongs.' },
  AUDIT_RECORD_NOT_FOUND: { kind: 'client', status: 404, summary: 'No audit record has this id.' },
  AUDIT_STORE_FAILED: { kind: 'internal', status: 500, summary: 'The audit store could not be opened, migrated or written.' },
  QUARANTINE_CONFLICT: { kind: 'client', status: 409, summary: 'The quarantined instance is not in a state that allows this action.' },
  QUARANTINE_BYTES_MISSING: { kind: 'internal', status: 410, summary: 'The quarantined bytes are missing or do not match their sha256.' },
  QUARANTINE_WRITE_FAILED: { kind: 'internal', status: 500, summary: 'The quarantine could not write the bytes durably.' },
  REVIEW_ORIGIN_REJECTED: { kind: 'client', status: 403, summary: 'A review action came from another origin (cross-site request refused).' },
  INTERNAL: { kind: 'internal', status: 500, summary: 'An unexpected internal error.' },
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

  /** The HTTP status a request failing with this error is answered with (the one table: the catalogue). */
  get status(): number {
    return httpStatusOf(this.code);
  }

  toJSON(): SerializedWardenError {
    return { code: this.code, message: this.message, ...(this.detail ? { detail: this.detail } : {}) };
  }

  static fromSerialized(s: SerializedWardenError): WardenError {
    return new WardenError(isErrorCode(s.code) ? s.code : 'INTERNAL', s.message, { detail: s.detail });
  }
}

/** HTTP status of an error code (the catalogue is the one place a status lives). */
export function httpStatusOf(code: ErrorCode): number {
  return ERROR_CATALOGUE[code].status;
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

import pino from 'pino';

/**
 * JSON logs without patient identifiers: the proxy only ever logs hashed UIDs (`sopHash`, `studyHash`);
 * the redact paths are a second line of defence should a raw attribute ever be passed by mistake.
 */
export const REDACT_PATHS = [
  'sopInstanceUid', 'studyInstanceUid', 'seriesInstanceUid', 'patientId', 'patientName', 'accessionNumber',
  '*.sopInstanceUid', '*.studyInstanceUid', '*.seriesInstanceUid', '*.patientId', '*.patientName', '*.accessionNumber',
  'req.headers.authorization', 'headers.authorization',
];

export function createLogger(level: string, destination?: pino.DestinationStream): pino.Logger {
  return pino({ level, base: { service: 'warden' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

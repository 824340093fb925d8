import pino from 'pino';

/**
 * The one logger factory (gateway and CLI alike): JSON logs without patient identifiers. Stages only ever log
 * hashed UIDs (`sopHash`, `studyHash`); the redact paths are a second line of defence should a raw attribute
 * ever be passed by mistake.
 */
export const REDACT_PATHS = [
  'sopInstanceUid', 'studyInstanceUid', 'seriesInstanceUid', 'patientId', 'patientName', 'accessionNumber',
  '*.sopInstanceUid', '*.studyInstanceUid', '*.seriesInstanceUid', '*.patientId', '*.patientName', '*.accessionNumber',
  'req.headers.authorization', 'headers.authorization',
];

export function createLogger(level: string, destination?: pino.DestinationStream): pino.Logger {
  return pino({ level, base: { service: 'warden' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/** The CLI's logger: warnings and errors on stderr (WARDEN_LOG_LEVEL overrides), same redaction as the gateway. */
export function cliLogger(): pino.Logger {
  return createLogger(process.env.WARDEN_LOG_LEVEL ?? 'warn', pino.destination(2));
}

import { z } from 'zod';
import { PolicySchema } from '../policy';

/**
 * The gateway configuration: one YAML file (config/warden.example.yaml documents every key) plus `WARDEN_…`
 * environment overrides. Validated once at start-up; nothing reads raw YAML after that.
 */

const positiveInt = z.number().int().positive();
const httpUrl = z.string({ error: 'expected an http(s) URL such as http://127.0.0.1:8042/dicom-web' }).refine((u) => {
  try { return /^https?:$/.test(new URL(u).protocol); } catch { return false; }
}, { message: 'expected an http(s) URL such as http://127.0.0.1:8042/dicom-web' });

export const ServerSchema = z.strictObject({
  host: z.string().min(1).default('0.0.0.0'),
  port: z.number().int().min(0).max(65535).default(8080),
  basePath: z.string().regex(/^\/[A-Za-z0-9._~\-/]*[^/]$|^\/[A-Za-z0-9._~-]+$/, 'expected a path like /dicom-web (leading slash, no trailing slash)').default('/dicom-web'),
  shutdownGraceMs: positiveInt.default(15000),
  keepAliveTimeoutMs: positiveInt.default(5000),
  /** Warden's external DICOMweb base URL for Retrieve URLs (null: from the request's Host + basePath). */
  publicBaseUrl: httpUrl.nullable().default(null),
  /** Longest time a whole request (headers and body) may take to arrive; 408 after. */
  requestTimeoutMs: positiveInt.default(3_600_000),
  /** Longest time the request headers may take to arrive. */
  headersTimeoutMs: positiveInt.default(60_000),
  /** Where Warden keeps its own state (the UID-hash key, the default audit database and quarantine). */
  stateDir: z.string().min(1).nullable().default(null),
  /** TLS termination in Warden itself (for sites without an ingress): PEM certificate and key files. */
  tls: z.strictObject({
    cert: z.string().min(1).nullable().default(null),
    key: z.string().min(1).nullable().default(null),
  }).refine((t) => (t.cert === null) === (t.key === null), { message: 'give both cert and key, or neither' }).default({ cert: null, key: null }),
});

export const UpstreamSchema = z.strictObject({
  url: httpUrl,
  timeoutMs: positiveInt.default(120000),
  connections: positiveInt.default(16),
  headers: z.record(z.string(), z.string()).default({}),
  flagHeader: z.string().regex(/^[A-Za-z0-9-]*$/, 'expected an HTTP header name, or "" to disable').default('X-Warden-Flagged'),
  readinessPath: z.string().default('/studies?limit=1'),
});

export const ModelSchema = z.strictObject({
  path: z.string().min(1).nullable().default(null),
  bundle: z.string().min(1).nullable().default(null),
  provider: z.enum(['cpu', 'cuda', 'tensorrt', 'auto']).default('cpu'),
  workers: positiveInt.default(1),
  threadsPerWorker: positiveInt.nullable().default(null),
  spinWait: z.boolean().default(false),
  /** Which frame of a multi-frame instance is scanned. */
  frame: z.enum(['first', 'middle']).default('first'),
});

export { PolicySchema };

const MiB = 1024 * 1024;
export const LimitsSchema = z.strictObject({
  maxBodyBytes: positiveInt.default(8 * 1024 * MiB),
  maxInstanceBytes: positiveInt.default(1024 * MiB),
  memoryPartBytes: z.number().int().min(0).default(2 * MiB),
  memoryBudgetBytes: z.number().int().min(0).default(32 * MiB),
  maxConcurrentScans: positiveInt.default(2),
  scanMemoryBytes: positiveInt.default(32 * MiB),
  maxQueuedScans: z.number().int().min(0).default(256),
  maxConcurrentStowRequests: positiveInt.default(32),
  scanTimeoutMs: positiveInt.default(120000),
  /** Longest pause between two chunks of a multipart body (STOW-RS request, scanned WADO-RS response); 408 / 502 after. */
  bodyIdleTimeoutMs: positiveInt.default(30000),
  retryAfterSeconds: positiveInt.default(5),
});

export const SecuritySchema = z.strictObject({
  /**
   * Secret key for the HMAC-SHA-256 of UIDs in logs, records and metrics (at least 32 characters). null = read
   * `uidHashKeyFile`, else `<server.stateDir>/uid-hash.key`, created once with a random key.
   */
  uidHashKey: z.string().min(32, 'expected a key of at least 32 characters').nullable().default(null),
  uidHashKeyFile: z.string().min(1).nullable().default(null),
});

const token = z.string().min(16, 'expected a token of at least 16 characters');

/** Who may do what: senders (DICOMweb), reviewers (/ui), admins (reload, configuration), metrics scrapers. */
export const ROLES = ['sender', 'reviewer', 'admin', 'metrics'] as const;
export type Role = (typeof ROLES)[number];

export const TokenSchema = z.strictObject({
  /** Who holds it: recorded in the audit trail and events (the token itself never is). */
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected a short name (letters, digits, . _ -)'),
  roles: z.array(z.enum(ROLES)).min(1),
  /** The token itself, or where to read it: a file (e.g. a mounted Secret) or an environment variable. Exactly one. */
  token: token.nullable().default(null),
  tokenFile: z.string().min(1).nullable().default(null),
  tokenEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'expected an environment variable name').nullable().default(null),
}).refine((t) => [t.token, t.tokenFile, t.tokenEnv].filter((x) => x !== null).length === 1, { message: 'give exactly one of token, tokenFile, tokenEnv' });

export const AuthSchema = z.strictObject({
  /** Shorthand for one token named "sender" with the sender role. */
  dicomwebToken: token.nullable().default(null),
  /** Shorthand for one token named "metrics" with the metrics role. */
  metricsToken: token.nullable().default(null),
  tokens: z.array(TokenSchema).default([]),
});

export const AuditSchema = z.strictObject({
  /** A SQLite file (one replica) or a postgres:// URL (several replicas). null = <server.stateDir>/audit.sqlite. */
  url: z.string().min(1).nullable().default(null),
  /** Records older than this are pruned (never while their quarantined bytes are kept). */
  retentionDays: positiveInt.default(365),
});

export const QuarantineSchema = z.strictObject({
  /** Where blocked instances' original bytes are kept (a PVC in Kubernetes). null = <server.stateDir>/quarantine. */
  dir: z.string().min(1).nullable().default(null),
  /** Bytes of a discarded (or released) instance are deleted this long after the action; the record stays. */
  discardGraceMs: positiveInt.default(7 * 86_400_000),
  /** How often the sweeper deletes bytes past their grace period. */
  sweepIntervalMs: positiveInt.default(3_600_000),
});

export const AlertsSchema = z.strictObject({
  /** One JSON line per security event (flag, block, release, discard, auth failure) on stdout, for SIEMs (docs/events.md). */
  events: z.boolean().default(true),
  webhook: z.strictObject({
    /** Where security events are POSTed as JSON (null = off). */
    url: httpUrl.nullable().default(null),
    /** HMAC-SHA-256 key for the X-Warden-Signature header (or a file holding it). */
    secret: z.string().min(16, 'expected a secret of at least 16 characters').nullable().default(null),
    secretFile: z.string().min(1).nullable().default(null),
    /** Which events go to the webhook. */
    events: z.array(z.enum(['flag', 'block', 'would_block', 'release', 'discard', 'auth_failure'])).default(['block', 'would_block', 'release', 'discard', 'auth_failure']),
    /** Attempts after the first, with exponential backoff from backoffMs; then a dead-letter record in the audit store. */
    retries: z.number().int().min(0).max(20).default(5),
    backoffMs: positiveInt.default(1000),
    timeoutMs: positiveInt.default(5000),
  }).default({ url: null, secret: null, secretFile: null, events: ['block', 'would_block', 'release', 'discard', 'auth_failure'], retries: 5, backoffMs: 1000, timeoutMs: 5000 }),
});

export const WadoSchema = z.strictObject({
  scan: z.boolean().default(false),
  partialStatus: z.union([z.literal(206), z.literal(200)], { error: 'expected 206 or 200' }).default(206),
});

export const StowSchema = z.strictObject({
  warningsAs202: z.boolean().default(false),
  spoolDir: z.string().min(1).nullable().default(null),
});

export const LoggingSchema = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export const ConfigSchema = z.strictObject({
  server: ServerSchema.default(ServerSchema.parse({})),
  upstream: UpstreamSchema,
  model: ModelSchema.default(ModelSchema.parse({})),
  policy: PolicySchema.default(PolicySchema.parse({})),
  limits: LimitsSchema.default(LimitsSchema.parse({})),
  auth: AuthSchema.default(AuthSchema.parse({})),
  audit: AuditSchema.default(AuditSchema.parse({})),
  quarantine: QuarantineSchema.default(QuarantineSchema.parse({})),
  alerts: AlertsSchema.default(AlertsSchema.parse({})),
  security: SecuritySchema.default(SecuritySchema.parse({})),
  stow: StowSchema.default(StowSchema.parse({})),
  wado: WadoSchema.default(WadoSchema.parse({})),
  logging: LoggingSchema.default(LoggingSchema.parse({})),
});

/** The configuration as the offline commands read it: the same sections, the upstream optional. */
export const RuntimeConfigSchema = ConfigSchema.extend({ upstream: UpstreamSchema.optional() });

export type WardenConfig = z.infer<typeof ConfigSchema>;
export type WardenConfigInput = z.input<typeof ConfigSchema>;

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
  /** Where Warden keeps its own state (the UID-hash key when none is configured). */
  stateDir: z.string().min(1).nullable().default(null),
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

export const AuthSchema = z.strictObject({
  dicomwebToken: z.string().min(16, 'expected a token of at least 16 characters').nullable().default(null),
  metricsToken: z.string().min(16, 'expected a token of at least 16 characters').nullable().default(null),
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
  security: SecuritySchema.default(SecuritySchema.parse({})),
  stow: StowSchema.default(StowSchema.parse({})),
  wado: WadoSchema.default(WadoSchema.parse({})),
  logging: LoggingSchema.default(LoggingSchema.parse({})),
});

/** The configuration as the offline commands read it: the same sections, the upstream optional. */
export const RuntimeConfigSchema = ConfigSchema.extend({ upstream: UpstreamSchema.optional() });

export type WardenConfig = z.infer<typeof ConfigSchema>;
export type WardenConfigInput = z.input<typeof ConfigSchema>;

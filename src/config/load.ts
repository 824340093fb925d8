import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { WardenError } from '../core/errors';
import { MOVED_POLICY_KEYS } from '../policy';
import { ConfigSchema, RuntimeConfigSchema, type WardenConfig } from './schema';

/** Environment variables that override one key each. `WARDEN_CONFIG` names the YAML file itself. */
/** `secret`: a credential; set but empty is an error (an empty token must never silently turn authentication off). */
export const ENV_OVERRIDES: Record<string, { key: string; type: 'string' | 'int' | 'bool' | 'nullable-string' | 'secret' }> = {
  WARDEN_UPSTREAM_URL: { key: 'upstream.url', type: 'string' },
  WARDEN_PORT: { key: 'server.port', type: 'int' },
  WARDEN_HOST: { key: 'server.host', type: 'string' },
  WARDEN_BASE_PATH: { key: 'server.basePath', type: 'string' },
  WARDEN_PUBLIC_BASE_URL: { key: 'server.publicBaseUrl', type: 'nullable-string' },
  WARDEN_MODEL_PATH: { key: 'model.path', type: 'nullable-string' },
  WARDEN_BUNDLE_PATH: { key: 'model.bundle', type: 'nullable-string' },
  WARDEN_PROVIDER: { key: 'model.provider', type: 'string' },
  WARDEN_DICOMWEB_TOKEN: { key: 'auth.dicomwebToken', type: 'secret' },
  WARDEN_METRICS_TOKEN: { key: 'auth.metricsToken', type: 'secret' },
  WARDEN_LOG_LEVEL: { key: 'logging.level', type: 'string' },
  WARDEN_MAX_CONCURRENT_SCANS: { key: 'limits.maxConcurrentScans', type: 'int' },
  WARDEN_WADO_SCAN: { key: 'wado.scan', type: 'bool' },
  WARDEN_STUDY_RULE: { key: 'policy.studyRule', type: 'string' },
  WARDEN_UID_HASH_KEY: { key: 'security.uidHashKey', type: 'secret' },
  WARDEN_STATE_DIR: { key: 'server.stateDir', type: 'nullable-string' },
};

function configError(problems: string[], source: string): WardenError {
  return new WardenError('CONFIG_INVALID', `Invalid configuration (${source}):\n  - ${problems.join('\n  - ')}`, { detail: { problems } });
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const k of keys.slice(0, -1)) {
    if (typeof node[k] !== 'object' || node[k] === null) node[k] = {};
    node = node[k] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]] = value;
}

/** Applies `WARDEN_…` overrides onto a raw (unvalidated) configuration object. */
export function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const problems: string[] = [];
  for (const [name, { key, type }] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined) continue;
    if (value.trim() === '') {
      if (type === 'secret') problems.push(`${name} (→ ${key}) is set but empty: unset it to leave ${key} as configured, or give it a value (an empty secret never turns authentication off)`);
      continue;
    }
    if (type === 'int') {
      if (!/^\d+$/.test(value)) { problems.push(`${name} (→ ${key}): expected an integer, got "${value}"`); continue; }
      setPath(raw, key, Number(value));
    } else if (type === 'bool') {
      if (!/^(true|false|1|0)$/i.test(value)) { problems.push(`${name} (→ ${key}): expected true or false, got "${value}"`); continue; }
      setPath(raw, key, /^(true|1)$/i.test(value));
    } else {
      setPath(raw, key, value);
    }
  }
  if (problems.length) throw configError(problems, 'environment');
  return raw;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const key = issue.path.length ? issue.path.join('.') : '(root)';
  if (issue.code === 'unrecognized_keys') {
    const prefix = issue.path.length ? `${issue.path.join('.')}.` : '';
    return issue.keys.map((k) => (prefix === 'policy.' && MOVED_POLICY_KEYS[k]
      ? `policy.${k}: moved to ${MOVED_POLICY_KEYS[k]}`
      : `${prefix}${k}: unknown key (check the spelling against config/warden.example.yaml)`)).join('; ');
  }
  if (issue.code === 'invalid_type' && issue.message.includes('received undefined')) {
    return `${key}: required, expected ${issue.expected}`;
  }
  return `${key}: ${issue.message}`;
}

/** Validates a raw object; throws CONFIG_INVALID naming every bad key and what was expected. */
export function validateConfig(raw: unknown, source = 'configuration'): WardenConfig {
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) throw configError(result.error.issues.map(describeIssue), source);
  return result.data;
}

/**
 * Reads the YAML file (argument, else `WARDEN_CONFIG`, else none), applies the environment overrides and
 * validates. A missing upstream URL is the one key with no default.
 * @throws CONFIG_INVALID
 */
export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env): WardenConfig {
  const { raw, source } = readRaw(file, env);
  return validateConfig(raw, source);
}

/**
 * The same file and overrides for the offline commands (`warden scan`, `fit`, …): every section validated as for
 * the gateway, but no upstream is needed. @throws CONFIG_INVALID
 */
export function loadRuntimeConfig(file?: string, env: NodeJS.ProcessEnv = process.env): Omit<WardenConfig, 'upstream'> {
  const { raw, source } = readRaw(file, env);
  const result = RuntimeConfigSchema.safeParse(raw);
  if (!result.success) throw configError(result.error.issues.map(describeIssue), source);
  return result.data;
}

function readRaw(file: string | undefined, env: NodeJS.ProcessEnv): { raw: Record<string, unknown>; source: string } {
  const path = file ?? (env.WARDEN_CONFIG || undefined);
  let raw: Record<string, unknown> = {};
  if (path) {
    let text: string;
    try {
      text = fs.readFileSync(path, 'utf8');
    } catch (err) {
      throw configError([`cannot read ${path}: ${(err as Error).message}`], path);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (err) {
      throw configError([`not valid YAML: ${(err as Error).message}`], path);
    }
    if (parsed !== null && parsed !== undefined && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw configError(['(root): expected a mapping of sections (server, upstream, model, policy, …)'], path);
    }
    raw = (parsed ?? {}) as Record<string, unknown>;
  }
  applyEnv(raw, env);
  return { raw, source: path ? `${path} + environment` : 'environment' };
}

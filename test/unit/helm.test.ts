/**
 * The Helm chart (deploy/helm/warden), checked without Helm: values.yaml satisfies values.schema.json (a small
 * draft-07 subset validator below: type, properties, required, additionalProperties, enum, bounds, pattern,
 * items, local $ref), the schema rejects typical mistakes, every `.Values.…` path a template reads is defined
 * in values.yaml, and the configuration the ConfigMap renders is a valid Warden configuration.
 * Helm itself is not a dependency: `helm lint --strict` and `helm template` are run by hand as
 * deploy/helm/warden/README.md describes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { validateConfig } from '../../src/config';

const CHART = path.join(__dirname, '../../deploy/helm/warden');
const values = parse(fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Record<string, any>;
const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as Schema;

interface Schema {
  type?: string | string[]; properties?: Record<string, Schema>; required?: string[]; additionalProperties?: boolean;
  enum?: unknown[]; minimum?: number; maximum?: number; exclusiveMinimum?: number; exclusiveMaximum?: number;
  minLength?: number; pattern?: string; items?: Schema; $ref?: string; definitions?: Record<string, Schema>;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function validate(v: unknown, s: Schema, root: Schema, at = ''): string[] {
  if (s.$ref) {
    const name = s.$ref.replace('#/definitions/', '');
    const target = root.definitions?.[name];
    if (!target) return [`${at}: unresolved $ref ${s.$ref}`];
    return validate(v, target, root, at);
  }
  const errors: string[] = [];
  const t = typeOf(v);
  if (s.type) {
    const allowed = Array.isArray(s.type) ? s.type : [s.type];
    if (!allowed.includes(t) && !(t === 'integer' && allowed.includes('number'))) return [`${at || '/'}: expected ${allowed.join('|')}, got ${t}`];
  }
  if (s.enum && !s.enum.some((e) => e === v)) errors.push(`${at}: ${JSON.stringify(v)} not in ${JSON.stringify(s.enum)}`);
  if (typeof v === 'number') {
    if (s.minimum !== undefined && v < s.minimum) errors.push(`${at}: ${v} < ${s.minimum}`);
    if (s.maximum !== undefined && v > s.maximum) errors.push(`${at}: ${v} > ${s.maximum}`);
    if (s.exclusiveMinimum !== undefined && v <= s.exclusiveMinimum) errors.push(`${at}: ${v} <= ${s.exclusiveMinimum}`);
    if (s.exclusiveMaximum !== undefined && v >= s.exclusiveMaximum) errors.push(`${at}: ${v} >= ${s.exclusiveMaximum}`);
  }
  if (typeof v === 'string') {
    if (s.minLength !== undefined && v.length < s.minLength) errors.push(`${at}: shorter than ${s.minLength}`);
    if (s.pattern !== undefined && !new RegExp(s.pattern, 'u').test(v)) errors.push(`${at}: "${v}" does not match ${s.pattern}`);
  }
  if (t === 'array' && s.items) (v as unknown[]).forEach((x, i) => errors.push(...validate(x, s.items!, root, `${at}/${i}`)));
  if (t === 'object') {
    const o = v as Record<string, unknown>;
    for (const r of s.required ?? []) if (!(r in o)) errors.push(`${at}/${r}: required`);
    for (const [k, x] of Object.entries(o)) {
      const p = s.properties?.[k];
      if (p) errors.push(...validate(x, p, root, `${at}/${k}`));
      else if (s.additionalProperties === false) errors.push(`${at}/${k}: not allowed by the schema`);
    }
  }
  return errors;
}

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

describe('deploy/helm/warden', () => {
  it('has the chart files and templates the brief asks for', () => {
    const chart = parse(fs.readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8'));
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'warden', type: 'application' });
    for (const t of ['deployment.yaml', 'service.yaml', 'configmap.yaml', 'servicemonitor.yaml', '_helpers.tpl']) {
      expect(fs.existsSync(path.join(CHART, 'templates', t))).toBe(true);
    }
    const dep = fs.readFileSync(path.join(CHART, 'templates/deployment.yaml'), 'utf8');
    expect(dep).toMatch(/livenessProbe:\s+httpGet:\s+path: \/healthz/);
    expect(dep).toMatch(/readinessProbe:\s+httpGet:\s+path: \/readyz/);
    expect(dep).toMatch(/secretKeyRef/);
    expect(values.podSecurityContext.runAsNonRoot).toBe(true);
    expect(values.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
    expect(values.resources.limits.memory).toBeDefined();
  });

  it('values.yaml satisfies values.schema.json', () => {
    expect(validate(values, schema, schema)).toEqual([]);
  });

  it('the schema rejects typical mistakes', () => {
    const cases: Array<[(v: any) => void, RegExp]> = [
      [(v) => { v.config.upstream.url = 'ftp://pacs'; }, /config\/upstream\/url.*does not match/],
      [(v) => { delete v.config.upstream; }, /config\/upstream: required/],
      [(v) => { v.config.auth = { dicomwebToken: 'in-values-is-wrong-0123' }; }, /config\/auth\/dicomwebToken: not allowed/],
      [(v) => { v.containerPort = 70000; }, /containerPort: 70000 > 65535/],
      [(v) => { v.config.wado.partialStatus = 207; }, /partialStatus: 207 not in/],
      [(v) => { v.replicas = 2; }, /\/replicas: not allowed/],
      [(v) => { v.auth.metricsToken = { existingSecret: 's' }; }, /metricsToken\/key: required/],
      [(v) => { v.probes.liveness.periodSeconds = '10'; }, /periodSeconds: expected integer/],
    ];
    for (const [mutate, expected] of cases) {
      const v = clone(values);
      mutate(v);
      expect(validate(v, schema, schema).join('\n')).toMatch(expected);
    }
  });

  it('templates read only values that values.yaml defines', () => {
    const dir = path.join(CHART, 'templates');
    const used = new Set<string>();
    for (const f of fs.readdirSync(dir)) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) used.add(m[1].slice(1));
    }
    expect(used.size).toBeGreaterThan(20);
    const missing = [...used].filter((p) => {
      let node: any = values;
      for (const k of p.split('.')) {
        if (node === null || typeof node !== 'object' || !(k in node)) return true;
        node = node[k];
      }
      return false;
    });
    expect(missing).toEqual([]);
  });

  it('renders a configuration Warden accepts (the ConfigMap is values.config + the spool dir)', () => {
    const cfg = validateConfig({ ...clone(values.config), stow: { ...values.config.stow, spoolDir: '/var/lib/warden/spool' } });
    expect(cfg.upstream.url).toBe(values.config.upstream.url);
    expect(cfg.limits.scanMemoryBytes).toBe(values.config.limits.scanMemoryBytes);
    // and the chart's shutdown budget leaves Kubernetes' grace period room to finish in-flight requests
    expect(values.terminationGracePeriodSeconds * 1000).toBeGreaterThan(cfg.server.shutdownGraceMs);
  });
});

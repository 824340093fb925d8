/**
 * The Helm chart (deploy/helm/warden), checked without Helm: values.yaml satisfies values.schema.json (Ajv, the
 * JSON Schema draft-07 validator Helm's own schema check follows), the schema rejects typical mistakes, every
 * `.Values.…` path a template reads is defined in values.yaml, and the configuration the ConfigMap renders is a
 * valid Warden configuration. Helm itself is not a dependency: `helm lint --strict` and `helm template` are run
 * by hand as deploy/helm/warden/README.md describes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { validateConfig } from '../../src/config';

const CHART = path.join(__dirname, '../../deploy/helm/warden');
const values = parse(fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Record<string, any>;
const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as object;
const check = new Ajv({ allErrors: true, strict: true }).compile(schema);

/** Ajv's errors as `path message {params}` lines, empty when valid. */
function validate(v: unknown): string[] {
  return check(v) ? [] : (check.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
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
    expect(validate(values)).toEqual([]);
  });

  it('the schema rejects typical mistakes', () => {
    const cases: Array<[(v: any) => void, RegExp]> = [
      [(v) => { v.config.upstream.url = 'ftp://pacs'; }, /^\/config\/upstream\/url must match pattern/m],
      [(v) => { delete v.config.upstream; }, /^\/config must have required property 'upstream'/m],
      [(v) => { v.config.auth = { dicomwebToken: 'in-values-is-wrong-0123' }; }, /^\/config\/auth must NOT have additional properties \{"additionalProperty":"dicomwebToken"\}/m],
      [(v) => { v.containerPort = 70000; }, /^\/containerPort must be <= 65535/m],
      [(v) => { v.config.wado.partialStatus = 207; }, /^\/config\/wado\/partialStatus must be equal to one of the allowed values/m],
      [(v) => { v.replicas = 2; }, /^\/ must NOT have additional properties \{"additionalProperty":"replicas"\}/m],
      [(v) => { v.auth.metricsToken = { existingSecret: 's' }; }, /^\/auth\/metricsToken must have required property 'key'/m],
      [(v) => { v.probes.liveness.periodSeconds = '10'; }, /^\/probes\/liveness\/periodSeconds must be integer/m],
      [(v) => { v.extraEnv = [{ value: 'x' }]; }, /^\/extraEnv\/0 must have required property 'name'/m],
      [(v) => { v.extraEnv = [{ name: 'A', vaule: 'x' }]; }, /^\/extraEnv\/0 must NOT have additional properties \{"additionalProperty":"vaule"\}/m],
    ];
    for (const [mutate, expected] of cases) {
      const v = clone(values);
      mutate(v);
      expect(validate(v).join('\n')).toMatch(expected);
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

/**
 * The Helm chart (deploy/helm/warden): values.schema.json (Ajv strict, the draft-07 validator Helm's schema check
 * follows) accepts values.yaml and the example values, rejects typical mistakes and covers every key of Warden's own
 * configuration schema; `helm lint --strict` passes; `helm template` with the default, GPU and multi-replica values
 * renders objects that validate against the Kubernetes schemas (kubernetes-models 4.5.1, prometheus-operator CRDs),
 * a ConfigMap Warden accepts, and the objects the deployment needs (probes, security context, Secret references,
 * PVCs, HPA, PDB, NetworkPolicy, PrometheusRule, dashboard). Helm comes from scripts/fetch-helm.sh.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { z } from 'zod';
import { ConfigSchema, validateConfig } from '../../src/config';
import { CHART, EXAMPLES, ROOT, helm, template, type K8sObject } from '../helpers/helm';

jest.setTimeout(120000);

const values = parse(fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Record<string, any>;
const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as Record<string, any>;
const check = new Ajv({ allErrors: true, strict: true }).compile(schema);
const GPU = path.join(EXAMPLES, 'gpu.yaml');
const MULTI = path.join(EXAMPLES, 'multi-replica.yaml');

/** Ajv's errors as `path message {params}` lines, empty when valid. */
function validate(v: unknown): string[] {
  return check(v) ? [] : (check.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
}

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

/** Keys of the Warden configuration the chart sets itself (volumes, Secrets): refused in values.config. */
const CHART_MANAGED = ['server.port', 'server.stateDir', 'server.tls', 'stow.spoolDir', 'quarantine.dir', 'audit.url', 'auth.*', 'security.*', 'alerts.webhook.secret', 'alerts.webhook.secretFile'];

/** Every key path of a zod object schema (through defaults, optionals and refinements). */
function zodKeys(s: z.ZodType, prefix = ''): string[] {
  let t: any = s;
  for (;;) {
    const def = t?._zod?.def;
    if (!def) break;
    if (def.type === 'default' || def.type === 'optional' || def.type === 'nullable' || def.type === 'prefault') t = def.innerType;
    else if (def.type === 'pipe') t = def.in;
    else break;
  }
  if (t?._zod?.def?.type !== 'object') return [];
  return Object.entries(t.shape as Record<string, z.ZodType>).flatMap(([k, v]) => {
    const p = prefix ? `${prefix}.${k}` : k;
    const inner = zodKeys(v, p);
    return inner.length ? [p, ...inner] : [p];
  });
}

/** Every key path of a JSON schema's object properties. */
function schemaKeys(s: any, prefix = ''): string[] {
  if (!s || s.type !== 'object' || !s.properties) return [];
  return Object.entries(s.properties as Record<string, any>).flatMap(([k, v]) => {
    const p = prefix ? `${prefix}.${k}` : k;
    return [p, ...schemaKeys(v, p)];
  });
}

/** The kubernetes-models (or prometheus-operator models) class for an object's apiVersion and kind. */
function modelOf(o: K8sObject): { validate(): void } {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const modulePath = group === 'monitoring.coreos.com'
    ? `@kubernetes-models/prometheus-operator/${group}/${version}/${o.kind}`
    : `kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Model = require(modulePath)[o.kind] as new (x: unknown) => { validate(): void };
  return new Model(o);
}

function one(objects: K8sObject[], kind: string, nameSuffix = ''): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name.endsWith(nameSuffix));
  expect(found.map((o) => `${o.kind}/${o.metadata.name}`)).toHaveLength(1);
  return found[0];
}

const kinds = (objects: K8sObject[]): string[] => objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
const container = (dep: K8sObject): any => dep.spec.template.spec.containers[0];
const renderedConfig = (objects: K8sObject[]): Record<string, any> => parse(one(objects, 'ConfigMap', 'warden').data['warden.yaml']);

describe('deploy/helm/warden values and schema', () => {
  it('values.yaml and the example values satisfy values.schema.json', () => {
    expect(validate(values)).toEqual([]);
    for (const f of [GPU, MULTI]) {
      // helm merges the example over values.yaml; a shallow check of the example's own keys against the schema
      const merged = mergeDeep(clone(values), parse(fs.readFileSync(f, 'utf8')));
      expect(validate(merged)).toEqual([]);
    }
  });

  it('the schema rejects typical mistakes', () => {
    const cases: Array<[(v: any) => void, RegExp]> = [
      [(v) => { v.config.upstream.url = 'ftp://pacs'; }, /^\/config\/upstream\/url must match pattern/m],
      [(v) => { delete v.config.upstream; }, /^\/config must have required property 'upstream'/m],
      [(v) => { v.config.auth = { dicomwebToken: 'in-values-is-wrong-0123' }; }, /^\/config\/auth must NOT have additional properties \{"additionalProperty":"dicomwebToken"\}/m],
      [(v) => { v.config.security = { uidHashKey: 'k'.repeat(40) }; }, /^\/config\/security must NOT have additional properties \{"additionalProperty":"uidHashKey"\}/m],
      [(v) => { v.config.audit.url = 'postgres://warden:secret@db/warden'; }, /^\/config\/audit must NOT have additional properties \{"additionalProperty":"url"\}/m],
      [(v) => { v.config.quarantine.dir = '/data'; }, /^\/config\/quarantine must NOT have additional properties \{"additionalProperty":"dir"\}/m],
      [(v) => { v.config.alerts.webhook.secret = 'x'.repeat(20); }, /^\/config\/alerts\/webhook must NOT have additional properties \{"additionalProperty":"secret"\}/m],
      [(v) => { v.config.server.port = 9000; }, /^\/config\/server must NOT have additional properties \{"additionalProperty":"port"\}/m],
      [(v) => { v.config.limits.maxConcurentScans = 4; }, /^\/config\/limits must NOT have additional properties \{"additionalProperty":"maxConcurentScans"\}/m],
      [(v) => { v.config.policy.adversarial = { blockFpr: 5 }; }, /^\/config\/policy\/adversarial\/blockFpr must be < 1/m],
      [(v) => { v.containerPort = 70000; }, /^\/containerPort must be <= 65535/m],
      [(v) => { v.config.wado.partialStatus = 207; }, /^\/config\/wado\/partialStatus must be equal to one of the allowed values/m],
      [(v) => { v.replicas = 2; }, /^\/ must NOT have additional properties \{"additionalProperty":"replicas"\}/m],
      [(v) => { v.auth.metricsToken = { existingSecret: 's' }; }, /^\/auth\/metricsToken must have required property 'key'/m],
      [(v) => { v.auth.tokens = [{ name: 'pacs', roles: ['sender'], token: 'inline-token-0123456789' }]; }, /^\/auth\/tokens\/0 must have required property 'existingSecret'/m],
      [(v) => { v.auth.tokens = [{ name: 'pacs', roles: ['root'], existingSecret: 's', key: 'k' }]; }, /^\/auth\/tokens\/0\/roles\/0 must be equal to one of the allowed values/m],
      [(v) => { v.auth.tokens = [{ name: 'pacs', roles: ['sender'], existingSecret: 's', key: 'k', mountAs: 'volume' }]; }, /^\/auth\/tokens\/0\/mountAs must be equal to one of the allowed values/m],
      [(v) => { v.postgresql.password = 'secret'; }, /^\/postgresql must NOT have additional properties \{"additionalProperty":"password"\}/m],
      [(v) => { v.postgresql.sslmode = 'on'; }, /^\/postgresql\/sslmode must be equal to one of the allowed values/m],
      [(v) => { v.persistence.quarantine.accessMode = 'ReadOnlyMany'; }, /^\/persistence\/quarantine\/accessMode must be equal to one of the allowed values/m],
      [(v) => { v.persistence.quarantine.size = 'fifty gigs'; }, /^\/persistence\/quarantine\/size must match pattern/m],
      [(v) => { v.gpu.provider = 'cpu'; }, /^\/gpu\/provider must be equal to one of the allowed values/m],
      [(v) => { v.autoscaling.targetCPUUtilizationPercentage = 150; }, /^\/autoscaling\/targetCPUUtilizationPercentage must be <= 100/m],
      [(v) => { v.networkPolicy.ingress.senders = [{ ipblock: { cidr: '10.0.0.0/8' } }]; }, /^\/networkPolicy\/ingress\/senders\/0 must NOT have additional properties \{"additionalProperty":"ipblock"\}/m],
      [(v) => { v.resources.limits.memory = 'lots'; }, /^\/resources\/limits\/memory must match pattern/m],
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

  it('covers every key of Warden\'s configuration schema except those the chart manages, and no other', () => {
    const managed = (k: string): boolean => CHART_MANAGED.some((m) => (m.endsWith('.*') ? k.startsWith(m.slice(0, -1)) : k === m || k.startsWith(`${m}.`)));
    const warden = zodKeys(ConfigSchema).filter((k) => !managed(k));
    const chart = schemaKeys(schema.properties.config);
    expect(chart.filter((k) => !warden.includes(k))).toEqual([]);
    expect(warden.filter((k) => !chart.includes(k))).toEqual([]);
    expect(warden.length).toBeGreaterThan(60);
  });

  it('templates read only values that values.yaml defines', () => {
    const dir = path.join(CHART, 'templates');
    const used = new Set<string>();
    for (const f of fs.readdirSync(dir)) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) used.add(m[1].slice(1));
    }
    expect(used.size).toBeGreaterThan(60);
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
});

describe('deploy/helm/warden rendered by helm', () => {
  it('passes helm lint --strict with the default, GPU and multi-replica values', () => {
    for (const extra of [[], ['-f', GPU], ['-f', MULTI]]) {
      const run = helm(['lint', '--strict', CHART, ...extra]);
      expect(`${run.stdout}\n${run.stderr}`).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      expect(run.status).toBe(0);
    }
  });

  const rendered: Record<string, K8sObject[]> = {};
  beforeAll(() => {
    rendered.default = template();
    rendered.gpu = template([GPU]);
    rendered.multi = template([MULTI]);
  });

  it('renders objects that validate against the Kubernetes and prometheus-operator schemas', () => {
    for (const [name, objects] of Object.entries(rendered)) {
      expect(objects.length).toBeGreaterThan(5);
      for (const o of objects) {
        let error = '';
        try { modelOf(o).validate(); } catch (err) { error = (err as Error).message; }
        expect(`${name} ${o.kind}/${o.metadata.name}: ${error}`).toBe(`${name} ${o.kind}/${o.metadata.name}: `);
      }
    }
    // and the schema check can fail: a wrong type in a rendered Deployment is caught
    const broken = clone(one(rendered.default, 'Deployment'));
    broken.spec.template.spec.containers[0].ports[0].containerPort = '8080';
    expect(() => modelOf(broken).validate()).toThrow(/containerPort must be integer/);
  });

  it('renders what each values set asks for, and nothing it does not', () => {
    expect(kinds(rendered.default)).toEqual(['ConfigMap/warden', 'Deployment/warden', 'NetworkPolicy/warden', 'PersistentVolumeClaim/warden-quarantine',
      'PersistentVolumeClaim/warden-state', 'Service/warden', 'ServiceAccount/warden']);
    expect(kinds(rendered.gpu)).toEqual(['ConfigMap/warden', 'Deployment/warden', 'NetworkPolicy/warden', 'PersistentVolumeClaim/warden-quarantine',
      'PersistentVolumeClaim/warden-state', 'Service/warden', 'ServiceAccount/warden', 'ServiceMonitor/warden']);
    expect(kinds(rendered.multi)).toEqual(['ConfigMap/warden', 'ConfigMap/warden-dashboard', 'Deployment/warden', 'HorizontalPodAutoscaler/warden',
      'NetworkPolicy/warden', 'PersistentVolumeClaim/warden-quarantine', 'PodDisruptionBudget/warden', 'PrometheusRule/warden', 'Service/warden',
      'ServiceAccount/warden', 'ServiceMonitor/warden']);
  });

  it('renders a ConfigMap Warden accepts, with the paths of the pod\'s volumes and Secrets', () => {
    for (const objects of Object.values(rendered)) {
      const raw = renderedConfig(objects);
      const cfg = validateConfig(clone(raw));
      expect(cfg.server.stateDir).toBe('/var/lib/warden/state');
      expect(cfg.quarantine.dir).toBe('/var/lib/warden/quarantine');
      expect(cfg.stow.spoolDir).toBe('/var/lib/warden/spool');
      const dep = one(objects, 'Deployment');
      const mounts = Object.fromEntries(container(dep).volumeMounts.map((m: any) => [m.mountPath, m.name]));
      expect(mounts).toMatchObject({ '/etc/warden/config': 'config', '/var/lib/warden/state': 'state', '/var/lib/warden/quarantine': 'quarantine', '/var/lib/warden/spool': 'spool', '/tmp': 'tmp' });
      expect(container(dep).args).toEqual(['serve', '--config', '/etc/warden/config/warden.yaml']);
      // a configuration change rolls the pods
      expect(dep.spec.template.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(renderedConfig(rendered.default).audit.url).toBeUndefined(); // SQLite in the state volume
    expect(renderedConfig(rendered.multi).audit.url).toBe('postgres://warden@warden-db.db.svc:5432/warden?sslmode=verify-full');
    expect(renderedConfig(rendered.gpu).model.provider).toBe('cuda');
    expect(renderedConfig(rendered.default).model.provider).toBe('cpu');
  });

  it('runs non-root on a read-only root filesystem with no privilege escalation and no capabilities, probed on /healthz and /readyz', () => {
    for (const objects of Object.values(rendered)) {
      const dep = one(objects, 'Deployment');
      const pod = dep.spec.template.spec;
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } });
      expect(pod.automountServiceAccountToken).toBe(false);
      const c = container(dep);
      expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, privileged: false, capabilities: { drop: ['ALL'] } });
      expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
      expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
      expect(pod.volumes.find((v: any) => v.name === 'tmp')).toEqual({ name: 'tmp', emptyDir: { sizeLimit: '1Gi' } });
      expect(c.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
      expect(c.resources.limits).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
      expect(dep.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(validateConfig(renderedConfig(objects)).server.shutdownGraceMs);
    }
    expect(container(one(rendered.gpu, 'Deployment')).readinessProbe.httpGet.scheme).toBe('HTTPS');
  });

  it('reads every token, key and password from a Secret: files for tokenFile, variables for tokenEnv, never a literal', () => {
    const objects = rendered.multi;
    const dep = one(objects, 'Deployment');
    const c = container(dep);
    const cfg = renderedConfig(objects);
    const projected = dep.spec.template.spec.volumes.find((v: any) => v.name === 'secrets').projected.sources
      .flatMap((s: any) => s.secret.items.map((i: any) => ({ secret: s.secret.name, key: i.key, file: `/etc/warden/secrets/${i.path}` })));
    const env = Object.fromEntries(c.env.filter((e: any) => e.valueFrom?.secretKeyRef).map((e: any) => [e.name, e.valueFrom.secretKeyRef]));
    const multi = parse(fs.readFileSync(MULTI, 'utf8'));
    for (const t of multi.auth.tokens) {
      const entry = cfg.auth.tokens.find((e: any) => e.name === t.name);
      expect(entry.roles).toEqual(t.roles);
      expect(entry.token).toBeUndefined();
      if (t.mountAs === 'env') expect(env[entry.tokenEnv]).toEqual({ name: t.existingSecret, key: t.key });
      else expect(projected).toContainEqual({ secret: t.existingSecret, key: t.key, file: entry.tokenFile });
    }
    expect(projected).toContainEqual({ secret: 'warden-uid-hash-key', key: 'uid-hash-key', file: cfg.security.uidHashKeyFile });
    expect(projected).toContainEqual({ secret: 'warden-webhook', key: 'secret', file: cfg.alerts.webhook.secretFile });
    expect(env.PGPASSWORD).toEqual({ name: 'warden-db', key: 'password' });
    expect(cfg.audit.url).not.toMatch(/:[^@/]*@/); // no password in the URL
    // no literal secret anywhere in what the chart renders
    expect(JSON.stringify(objects)).not.toMatch(/"(token|secret|password)":"/);
    const sm = one(objects, 'ServiceMonitor');
    expect(sm.spec.endpoints[0].authorization).toEqual({ type: 'Bearer', credentials: { name: 'warden-tokens', key: 'prometheus' } });
    // the GPU example's shorthands go through secretKeyRef variables, TLS through the projected volume
    const gpu = container(one(rendered.gpu, 'Deployment'));
    expect(gpu.env.find((e: any) => e.name === 'WARDEN_DICOMWEB_TOKEN').valueFrom.secretKeyRef).toEqual({ name: 'warden-sender', key: 'token' });
    expect(renderedConfig(rendered.gpu).server.tls).toEqual({ cert: '/etc/warden/secrets/tls/tls.crt', key: '/etc/warden/secrets/tls/tls.key' });
  });

  it('one replica: ReadWriteOnce PVCs for quarantine and state, Recreate, no HPA or PDB', () => {
    const objects = rendered.default;
    expect(one(objects, 'PersistentVolumeClaim', 'quarantine').spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(one(objects, 'PersistentVolumeClaim', 'state').spec.accessModes).toEqual(['ReadWriteOnce']);
    const dep = one(objects, 'Deployment');
    expect(dep.spec.replicas).toBe(1);
    expect(dep.spec.strategy).toEqual({ type: 'Recreate' });
    expect(dep.spec.template.spec.volumes.find((v: any) => v.name === 'state').persistentVolumeClaim.claimName).toBe('warden-state');
  });

  it('several replicas: a ReadWriteMany quarantine, no per-pod state volume, rolling updates, HPA on CPU and the inference queue, PDB, spread', () => {
    const objects = rendered.multi;
    expect(one(objects, 'PersistentVolumeClaim', 'quarantine').spec).toMatchObject({ accessModes: ['ReadWriteMany'], storageClassName: 'nfs-client', resources: { requests: { storage: '200Gi' } } });
    const dep = one(objects, 'Deployment');
    expect(dep.spec.replicas).toBeUndefined(); // the HPA owns it
    expect(dep.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    expect(dep.spec.template.spec.volumes.find((v: any) => v.name === 'state')).toEqual({ name: 'state', emptyDir: {} });
    expect(dep.spec.template.spec.topologySpreadConstraints[0].labelSelector.matchLabels).toEqual(dep.spec.selector.matchLabels);
    const hpa = one(objects, 'HorizontalPodAutoscaler');
    expect(hpa.spec).toMatchObject({ minReplicas: 3, maxReplicas: 10, scaleTargetRef: { kind: 'Deployment', name: dep.metadata.name } });
    expect(hpa.spec.metrics).toEqual([
      { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } },
      { type: 'Pods', pods: { metric: { name: 'warden_inference_queue_depth' }, target: { type: 'AverageValue', averageValue: values.autoscaling.inferenceQueue.averageValue } } },
    ]);
    expect(one(objects, 'PodDisruptionBudget').spec).toEqual({ minAvailable: 1, selector: { matchLabels: dep.spec.selector.matchLabels } });
  });

  it('GPU values: the CUDA image, one nvidia.com/gpu, the cuda provider, GPU node selector and toleration', () => {
    const dep = one(rendered.gpu, 'Deployment');
    const c = container(dep);
    expect(c.image).toBe('ghcr.io/warden/warden:0.1.0-cuda');
    expect(c.resources.limits['nvidia.com/gpu']).toBe(1);
    expect(dep.spec.template.spec.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(dep.spec.template.spec.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    expect(dep.spec.template.spec.runtimeClassName).toBe('nvidia');
    expect(c.volumeMounts).toContainEqual({ name: 'models', mountPath: '/models', readOnly: true });
  });

  it('NetworkPolicy: ingress from senders and Prometheus only, egress to the upstream, PostgreSQL, the webhook and DNS only', () => {
    const np = one(rendered.multi, 'NetworkPolicy');
    expect(np.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np.spec.ingress).toHaveLength(2);
    expect(np.spec.ingress.map((r: any) => r.from)).toEqual([values.networkPolicy.ingress.senders, values.networkPolicy.ingress.prometheus]);
    for (const r of np.spec.ingress) expect(r.ports).toEqual([{ port: 'http', protocol: 'TCP' }]);
    const egressPorts = np.spec.egress.map((r: any) => r.ports.map((p: any) => `${p.port}/${p.protocol}`).join(','));
    expect(egressPorts).toEqual(['8042/TCP', '5432/TCP', '443/TCP', '53/UDP,53/TCP']);
    expect(np.spec.egress[1].to).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'db' } } }]);
    for (const r of [...np.spec.ingress, ...np.spec.egress]) expect((r.from ?? r.to).length).toBeGreaterThan(0); // an empty peer list would mean "everyone"
    // without PostgreSQL or a webhook, no egress for them
    expect(one(rendered.default, 'NetworkPolicy').spec.egress.map((r: any) => r.ports[0].port)).toEqual([8042, 53]);
  });

  it('ships the alert rules and the dashboard as they are in deploy/prometheus and deploy/grafana', () => {
    const rule = one(rendered.multi, 'PrometheusRule');
    expect(rule.spec).toEqual(parse(fs.readFileSync(path.join(ROOT, 'deploy/prometheus/warden-rules.yaml'), 'utf8')));
    expect(rule.spec.groups.flatMap((g: any) => g.rules.map((r: any) => r.alert))).toContain('WardenCalibrationDrift');
    const dash = one(rendered.multi, 'ConfigMap', 'dashboard');
    expect(dash.metadata.labels?.grafana_dashboard).toBe('1');
    expect(JSON.parse(dash.data['warden-dashboard.json'])).toEqual(JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy/grafana/warden-dashboard.json'), 'utf8')));
  });

  it('refuses values that cannot work, naming what to set', () => {
    const cases: Array<[string[], RegExp]> = [
      [['replicaCount=2'], /needs the audit trail in PostgreSQL: set postgresql.enabled/],
      [['replicaCount=2', 'postgresql.enabled=true', 'postgresql.host=db'], /needs one UID-hash key for all: set security.uidHashKey.existingSecret/],
      [['autoscaling.enabled=true', 'postgresql.enabled=true', 'postgresql.host=db', 'security.uidHashKey.existingSecret=k', 'persistence.quarantine.accessMode=ReadWriteOnce'], /accessMode must be ReadWriteMany/],
      [['postgresql.enabled=true'], /postgresql.enabled needs postgresql.host/],
      [['config.alerts.webhook.url=https://siem.example/hook'], /needs webhookSecret.existingSecret/],
      [['gpu.provider=cpu'], /gpu.provider.*(value must be one of|must be one of)/s],
      [['config.auth.dicomwebToken=literal-token-0123456789'], /config\/auth.*additional properties 'dicomwebToken' not allowed/s],
    ];
    for (const [sets, expected] of cases) {
      const run = helm(['template', 'warden', CHART, ...sets.flatMap((s) => ['--set', s])]);
      expect(run.status).not.toBe(0);
      expect(run.stderr).toMatch(expected);
    }
  });
});

function mergeDeep(a: any, b: any): any {
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return b;
  const out = { ...(a ?? {}) };
  for (const [k, v] of Object.entries(b)) out[k] = v !== null && typeof v === 'object' && !Array.isArray(v) ? mergeDeep(out[k], v) : v;
  return out;
}

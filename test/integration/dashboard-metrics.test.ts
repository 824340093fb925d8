/**
 * The Grafana dashboard (deploy/grafana/warden-dashboard.json) and the alert rules against a real /metrics page:
 * two gateways with the real embedded model and bundle (one enforcing, one in observe mode scoped to CR so that a DX
 * instance is out of scope) receive clean and adversarial lab fixtures, a small out-of-scope instance, a truncated instance and a part that is
 * not DICOM; every metric that a panel query, a template variable or an alert rule names exists in their scrapes with
 * samples, and every label a query matches or groups by is on that metric (or is one Prometheus adds: namespace, job,
 * pod, instance). Queries are parsed with Prometheus' own PromQL grammar (@prometheus-io/lezer-promql).
 * The JSON is what deploy/grafana/dashboard.js builds with Grafana's foundation SDK (typed builders for Grafana 11.6),
 * and has the structure Grafana loads: unique panel ids, grid positions inside 24 columns without overlap, every
 * target with a refId and the datasource variable.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { parse as parseYaml } from 'yaml';
import { startSink } from '../helpers/sink-upstream';
import { stow } from '../helpers/stow';
import { readLabManifest } from '../helpers/lab-fixtures';
import { grey8Dicom, syntheticUid } from '../helpers/write-dicom';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { validateConfig } from '../../src/config';
import { createLogger } from '../../src/core/logger';

jest.setTimeout(180000);

const ROOT = path.resolve(__dirname, '..', '..');
const DASHBOARD = path.join(ROOT, 'deploy', 'grafana', 'warden-dashboard.json');
const RULES = path.join(ROOT, 'deploy', 'prometheus', 'warden-rules.yaml');
/** Labels Prometheus attaches when it scrapes (target labels), plus the bucket bound. */
const METRICS_TOKEN = 'dashboard-test-metrics-token';
const TARGET_LABELS = new Set(['namespace', 'job', 'pod', 'instance', 'le']);

interface Selector { metric: string; labels: string[] }
interface ParsedQuery { selectors: Selector[]; grouping: string[] }

/** Vector selectors (metric name + matched label names) and grouping labels of a PromQL expression. */
function parsePromQL(expr: string): ParsedQuery {
  // Grafana's variables: $__rate_interval is a duration, the others sit inside label-matcher strings
  const text = expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m');
  const tree = parser.parse(text);
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  const cursor = tree.cursor();
  let errors = 0;
  do {
    if (cursor.type.isError) errors++;
    if (cursor.name === 'VectorSelector') {
      const node = cursor.node;
      const id = node.getChild('Identifier');
      const labels: string[] = [];
      const matchers = node.getChild('LabelMatchers');
      if (matchers) {
        const c = matchers.cursor();
        do { if (c.name === 'LabelName') labels.push(text.slice(c.from, c.to)); } while (c.next() && c.from < matchers.to);
      }
      selectors.push({ metric: id ? text.slice(id.from, id.to) : '', labels });
    }
    if (cursor.name === 'GroupingLabels') {
      const node = cursor.node;
      const c = node.cursor();
      do { if (c.name === 'LabelName') grouping.push(text.slice(c.from, c.to)); } while (c.next() && c.from < node.to);
    }
  } while (cursor.next());
  if (errors) throw new Error(`PromQL does not parse: ${expr}`);
  return { selectors, grouping };
}

/** Metric name → label names seen on its samples, from Prometheus text exposition. */
function scrapeIndex(text: string): Map<string, Set<string>> {
  const index = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s/.exec(line);
    if (!m) continue;
    const labels = index.get(m[1]) ?? new Set<string>();
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(l[1]);
    index.set(m[1], labels);
  }
  return index;
}

const lab = readLabManifest();
const clean = lab.filter((r) => r.kind === 'clean').slice(0, 8).map((r) => fs.readFileSync(r.path));
// ε = 8/255 attacks are mostly blocked, the weaker ones mostly flagged
const attacks = ['8', '4', '2'].flatMap((eps) => lab.filter((r) => r.kind === 'adversarial' && r.eps === eps && r.success === '1').slice(0, 4)).map((r) => fs.readFileSync(r.path));

describe('the Grafana dashboard and the alert rules against a live /metrics page', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-dash-'));
  let sink: Awaited<ReturnType<typeof startSink>>;
  const gateways: RunningServer[] = [];
  let index: Map<string, Set<string>>;

  beforeAll(async () => {
    sink = await startSink();
    const base = (name: string, extra: Record<string, unknown>) => validateConfig({
      upstream: { url: sink.url }, server: { host: '127.0.0.1', port: 0, stateDir: path.join(tmp, name) },
      model: { workers: 1, threadsPerWorker: 1 }, ...extra,
    });
    const enforce = await startServer(base('enforce', { auth: { metricsToken: METRICS_TOKEN } }), { logger: createLogger('silent'), eventStream: null });
    gateways.push(enforce);
    const observe = await startServer(base('observe', { policy: { mode: 'observe', applicability: { modalities: ['CR'] } } }), { logger: createLogger('silent'), eventStream: null });
    gateways.push(observe);
    const small = grey8Dicom(new Uint8Array(64 * 64).fill(90), { studyUid: syntheticUid('dash', 's'), seriesUid: syntheticUid('dash', 'se'), sopUid: syntheticUid('dash', 'i'), instanceNumber: 1, rows: 64, columns: 64 });
    for (const g of gateways) {
      const url = `${g.url}/dicom-web/studies`;
      for (const f of [...clean, ...attacks]) expect([200, 202, 409]).toContain((await stow(url, [f])).status);
      await stow(url, [small]);
      await stow(url, [Buffer.from('this part is not DICOM')]);
      // a DICOM header whose pixel data is cut short: a decode error (warden_errors_total)
      await stow(url, [clean[0].subarray(0, clean[0].length - 20000)]);
    }
    // a scrape without the metrics token: an auth failure (warden_auth_failures_total)
    expect((await fetch(`${enforce.url}/metrics`)).status).toBe(401);
    const headers = { authorization: `Bearer ${METRICS_TOKEN}` };
    const pages = await Promise.all(gateways.map(async (g) => (await fetch(`${g.url}/metrics`, { headers })).text()));
    index = scrapeIndex(pages.join('\n'));
  });

  afterAll(async () => {
    for (const g of gateways) await g.close();
    await sink?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  const panels: any[] = dashboard.panels.filter((p: any) => p.type !== 'row');
  const panelQueries: Array<{ where: string; expr: string }> = panels.flatMap((p) => p.targets.map((t: any) => ({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr })));
  const variableQueries = dashboard.templating.list.filter((v: any) => v.type === 'query')
    .map((v: any) => ({ where: `variable ${v.name}`, expr: /^label_values\((.*),\s*\w+\)$/.exec(v.query)![1] }));
  const rules = (parseYaml(fs.readFileSync(RULES, 'utf8')) as any).groups.flatMap((g: any) => g.rules)
    .map((r: any) => ({ where: `alert ${r.alert}`, expr: r.expr }));

  /** Problems of one query against the scrape: unknown metrics, labels no such series carries. */
  function problems({ where, expr }: { where: string; expr: string }, allowForeign = false): string[] {
    const { selectors, grouping } = parsePromQL(expr);
    const out: string[] = [];
    const known = new Set<string>(TARGET_LABELS);
    for (const s of selectors) {
      if (allowForeign && !s.metric.startsWith('warden_')) continue;
      const labels = index.get(s.metric);
      if (!labels) { out.push(`${where}: ${s.metric} is not in the scrape`); continue; }
      for (const l of labels) known.add(l);
      for (const l of s.labels) if (!labels.has(l) && !TARGET_LABELS.has(l)) out.push(`${where}: ${s.metric} has no label ${l}`);
    }
    for (const l of grouping) if (!known.has(l) && !(allowForeign && selectors.some((s) => !s.metric.startsWith('warden_')))) out.push(`${where}: grouping by ${l}, which no selected series carries`);
    return out;
  }

  it('the scrape has the series the traffic makes (verdicts, flags, drift, observe mode, unscanned, errors)', () => {
    for (const m of ['warden_instances_total', 'warden_flagged_instances_total', 'warden_instances_observed_total', 'warden_instances_unscanned_total',
      'warden_detector_p_value_bucket', 'warden_flag_rate', 'warden_drift_tail_probability', 'warden_errors_total', 'warden_upstream_requests_total', 'warden_model_info']) {
      expect([m, index.has(m)]).toEqual([m, true]);
    }
  });

  it('every metric and label of every panel query and template variable is in the scrape', () => {
    expect(panelQueries.length).toBeGreaterThan(25);
    expect(panelQueries.flatMap((q) => problems(q)).concat(variableQueries.flatMap((q: any) => problems(q)))).toEqual([]);
    // the check can fail: a misspelt metric and a label the metric does not have are caught
    expect(problems({ where: 'probe', expr: 'sum(rate(warden_instance_total[5m]))' })).toEqual(['probe: warden_instance_total is not in the scrape']);
    expect(problems({ where: 'probe', expr: 'sum by (verdict) (rate(warden_instances_total{status="200"}[5m]))' })).toEqual(['probe: warden_instances_total has no label status']);
  });

  it('every Warden metric and label the alert rules use is in the scrape (kubelet volume metrics come from the kubelet)', () => {
    expect(rules.length).toBeGreaterThan(10);
    expect(rules.flatMap((r: any) => problems(r, true))).toEqual([]);
  });

  it('covers what the issue asks a dashboard to show', () => {
    const all = panelQueries.map((q) => q.expr).join('\n');
    for (const m of ['warden_instances_total', 'warden_flag_rate', 'warden_detector_score_bucket', 'warden_detector_p_value_bucket', 'warden_stage_duration_seconds_bucket',
      'warden_upstream_requests_total', 'warden_inference_queue_depth', 'warden_inflight_requests', 'warden_model_info', 'warden_drift_tail_probability', 'warden_security_warning']) {
      expect([m, all.includes(m)]).toEqual([m, true]);
    }
  });

  it('is the dashboard deploy/grafana/dashboard.js builds with the Grafana foundation SDK, in the structure Grafana loads', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { buildDashboard } = require('../../deploy/grafana/dashboard.js') as { buildDashboard(): unknown };
    expect(JSON.parse(JSON.stringify(buildDashboard()))).toEqual(dashboard);
    expect(dashboard).toMatchObject({ uid: 'warden-gateway', title: 'Warden', schemaVersion: expect.any(Number) });
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    const ids = dashboard.panels.map((p: any) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
        expect([p.title, cells.has(`${i},${j}`)]).toEqual([p.title, false]);
        cells.add(`${i},${j}`);
      }
      if (p.type === 'row') continue;
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      const refIds = p.targets.map((t: any) => t.refId);
      expect(refIds.every((r: string) => /^[A-Z]$/.test(r))).toBe(true);
      expect(new Set(refIds).size).toBe(refIds.length);
    }
    expect(dashboard.templating.list.map((v: any) => v.name)).toEqual(['datasource', 'namespace', 'job', 'detector']);
  });
});

import * as fs from 'node:fs';
import * as path from 'node:path';
import { createMetrics } from '../../src/metrics';

const metricsDoc = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'metrics.md'), 'utf8');

describe('metrics', () => {
  const m = createMetrics({ queueDepth: () => 3 });
  const all = m.registry.getMetricsAsArray();
  const own = all.filter((x) => !/^warden_(process_|nodejs_)/.test(x.name));

  it('follows the Prometheus naming rules', () => {
    // prom-client's default process metrics keep their upstream names (one gauge ends in _total): checked for syntax only
    for (const metric of all) expect(metric.name).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/);
    for (const metric of own) {
      expect(metric.name).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/);
      expect(metric.name.startsWith('warden_')).toBe(true);
      const type = (metric as unknown as { type: string }).type;
      if (type === 'counter') expect(metric.name).toMatch(/_total$/);
      else expect(metric.name).not.toMatch(/_total$/);
      if (type === 'histogram' && !/score|p_value/.test(metric.name)) expect(metric.name).toMatch(/_(seconds|bytes)$/);
      expect(metric.name).not.toMatch(/_(milliseconds|ms|kilobytes|megabytes)$/);
    }
  });

  it('has only label names that cannot carry a UID or a patient attribute', () => {
    const allowed = new Set(['verdict', 'reason', 'stage', 'detector', 'method', 'status', 'route', 'code', 'model_sha256', 'provider', 'bundle_sha256', 'detectors', 'version', 'warning', 'signal']);
    for (const metric of own) {
      for (const label of ((metric as unknown as { labelNames: string[] }).labelNames ?? [])) {
        expect(label).toMatch(/^[a-zA-Z_][a-zA-Z0-9_]*$/);
        expect(label.startsWith('__')).toBe(false);
        expect(label).not.toMatch(/uid|patient|study|series|sop|accession|name|file|path|url/i);
        expect({ metric: metric.name, label, allowed: allowed.has(label) }).toEqual({ metric: metric.name, label, allowed: true });
      }
    }
  });

  it('lists every metric and its labels in docs/metrics.md', () => {
    for (const metric of own) {
      expect({ metric: metric.name, documented: metricsDoc.includes(`\`${metric.name}\``) }).toEqual({ metric: metric.name, documented: true });
      for (const label of ((metric as unknown as { labelNames: string[] }).labelNames ?? [])) {
        expect({ metric: metric.name, label, documented: metricsDoc.includes(`\`${label}\``) }).toEqual({ metric: metric.name, label, documented: true });
      }
    }
  });

  it('reads the inference queue depth at scrape time', async () => {
    const text = await m.registry.metrics();
    expect(text).toMatch(/^warden_inference_queue_depth 3$/m);
    expect(m.registry.contentType).toMatch(/^text\/plain/);
  });
});

/**
 * The alert rules (deploy/prometheus/warden-rules.yaml, shipped by the chart as a PrometheusRule): `promtool check
 * rules` accepts them, `promtool test rules` passes deploy/prometheus/warden-rules.test.yaml, every alert has a test
 * that shows it firing, and a rule with a changed threshold makes the tests fail (so they test the thresholds).
 * promtool is Debian's `prometheus` package (bash scripts/setup.sh --with-promtool).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';

jest.setTimeout(120000);

const DIR = path.resolve(__dirname, '..', '..', 'deploy', 'prometheus');
const RULES = path.join(DIR, 'warden-rules.yaml');
const TESTS = path.join(DIR, 'warden-rules.test.yaml');

function promtool(args: string[], cwd = DIR): { status: number; out: string } {
  const res = spawnSync('promtool', args, { cwd, encoding: 'utf8', timeout: 60000 });
  if (res.error) throw new Error(`promtool could not run (${res.error.message}): bash scripts/setup.sh --with-promtool`);
  return { status: res.status ?? -1, out: `${res.stdout}${res.stderr}` };
}

const rules = parse(fs.readFileSync(RULES, 'utf8')) as { groups: Array<{ name: string; rules: Array<{ alert: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }> };
const alerts = rules.groups.flatMap((g) => g.rules);

describe('deploy/prometheus/warden-rules.yaml', () => {
  it('passes promtool check rules', () => {
    const run = promtool(['check', 'rules', RULES]);
    expect(run.out).toMatch(new RegExp(`SUCCESS: ${alerts.length} rules found`));
    expect(run.status).toBe(0);
  });

  it('passes its unit tests (promtool test rules)', () => {
    const run = promtool(['test', 'rules', TESTS]);
    expect(run.out).toMatch(/SUCCESS/);
    expect(run.status).toBe(0);
  });

  it('has the alerts the deployment needs, each with a severity, a summary and a runbook, each shown firing by a test', () => {
    const names = alerts.map((a) => a.alert);
    expect(names).toEqual(expect.arrayContaining(['WardenBlockRateSpike', 'WardenCalibrationDrift', 'WardenUpstreamErrors', 'WardenSaturated',
      'WardenInferenceQueueFull', 'WardenScanLatencyHigh', 'WardenModelNotLoaded', 'WardenNoDetectorBundle', 'WardenQuarantineVolumeFilling']));
    for (const a of alerts) {
      expect([a.alert, a.labels?.severity]).toEqual([a.alert, expect.stringMatching(/^(warning|critical)$/)]);
      expect(a.annotations).toMatchObject({ summary: expect.any(String), description: expect.any(String), runbook: expect.stringMatching(/^docs\//) });
    }
    const tests = parse(fs.readFileSync(TESTS, 'utf8')) as { tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
    const shownFiring = new Set(tests.tests.flatMap((t) => t.alert_rule_test.filter((c) => c.exp_alerts.length > 0).map((c) => c.alertname)));
    expect(names.filter((n) => !shownFiring.has(n))).toEqual([]);
    // the drift alert is the one docs/operations.md links to: its threshold is the documented one
    expect(alerts.find((a) => a.alert === 'WardenCalibrationDrift')!.expr.trim()).toBe('warden_drift_tail_probability < 1e-4');
  });

  it('fails its tests when a threshold moves (the tests pin the thresholds)', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-rules-'));
    try {
      const mutations: Array<[string, string]> = [
        ['warden_drift_tail_probability < 1e-4', 'warden_drift_tail_probability < 1e-6'],
        [') > 0.05\n          and', ') > 0.2\n          and'],
        ['avg_over_time(warden_active_scans[10m]) > 16', 'avg_over_time(warden_active_scans[10m]) > 64'],
      ];
      const original = fs.readFileSync(RULES, 'utf8');
      fs.copyFileSync(TESTS, path.join(tmp, 'warden-rules.test.yaml'));
      for (const [from, to] of mutations) {
        expect(original).toContain(from);
        fs.writeFileSync(path.join(tmp, 'warden-rules.yaml'), original.replace(from, to));
        const run = promtool(['test', 'rules', 'warden-rules.test.yaml'], tmp);
        expect([from, run.status]).toEqual([from, 1]);
        expect(run.out).toMatch(/FAILED/);
      }
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

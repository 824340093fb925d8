#!/usr/bin/env node
// The Warden Grafana dashboard, built with Grafana's own typed builders (@grafana/grafana-foundation-sdk, generated
// from Grafana 11.6's schemas). `node deploy/grafana/dashboard.js` writes deploy/grafana/warden-dashboard.json, which
// the Helm chart ships (metrics.grafanaDashboard) and test/integration/dashboard-metrics.test.ts checks against a
// live /metrics page. Metrics: docs/metrics.md.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { DashboardBuilder, RowBuilder, QueryVariableBuilder, DatasourceVariableBuilder, ThresholdsConfigBuilder, ThresholdsMode,
  VariableRefresh, VariableSort } = require('@grafana/grafana-foundation-sdk/dashboard');
const timeseries = require('@grafana/grafana-foundation-sdk/timeseries');
const stat = require('@grafana/grafana-foundation-sdk/stat');
const table = require('@grafana/grafana-foundation-sdk/table');
const heatmap = require('@grafana/grafana-foundation-sdk/heatmap');
const { DataqueryBuilder } = require('@grafana/grafana-foundation-sdk/prometheus');
const common = require('@grafana/grafana-foundation-sdk/common');

const DS = { type: 'prometheus', uid: '${datasource}' };
/** The label matchers every query carries: one Warden deployment (Prometheus adds namespace and job when scraping). */
const SEL = 'namespace=~"$namespace", job=~"$job"';
const RATE = '[$__rate_interval]';

function q(expr, legend, refId, extra = {}) {
  let b = new DataqueryBuilder().expr(expr).refId(refId).datasource(DS);
  if (legend) b = b.legendFormat(legend);
  if (extra.instant) b = b.instant();
  if (extra.format) b = b.format(extra.format);
  return b;
}

/** Threshold lines drawn on a time series (the nominal rates). */
function lines(...steps) {
  return new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute)
    .steps([{ value: null, color: 'transparent' }, ...steps.map(([value, color]) => ({ value, color }))]);
}

function ts(title, description, unit, targets, opts = {}) {
  let p = new timeseries.PanelBuilder().title(title).description(description).datasource(DS).unit(unit).span(opts.span ?? 12).height(8)
    .lineWidth(1).fillOpacity(opts.fill ?? 10).showPoints(common.VisibilityMode.Never);
  if (opts.min !== undefined) p = p.min(opts.min);
  if (opts.max !== undefined) p = p.max(opts.max);
  if (opts.stack) p = p.stacking(new common.StackingConfigBuilder().mode(common.StackingMode.Normal));
  if (opts.log) p = p.scaleDistribution(new common.ScaleDistributionConfigBuilder().type(common.ScaleDistribution.Log).log(10));
  if (opts.thresholds) p = p.thresholds(opts.thresholds).thresholdsStyle(new common.GraphThresholdsStyleConfigBuilder().mode(common.GraphThresholdsStyleMode.Dashed));
  for (const t of targets) p = p.withTarget(t);
  return p;
}

function buildDashboard() {
  const b = new DashboardBuilder('Warden')
    .uid('warden-gateway')
    .description('Warden, the DICOMweb security gateway: verdicts, flag and block rates against their calibrated nominal rates, detector scores and p-values, stage latency, upstream, saturation, the model and bundle in use, drift and security warnings (docs/metrics.md).')
    .tags(['warden', 'dicom', 'security'])
    .refresh('30s')
    .time({ from: 'now-6h', to: 'now' })
    .timezone('browser')
    .tooltip(1)
    .withVariable(new DatasourceVariableBuilder('datasource').label('Prometheus').type('prometheus'))
    .withVariable(new QueryVariableBuilder('namespace').label('Namespace').datasource(DS)
      .query('label_values(warden_model_info, namespace)').refresh(VariableRefresh.OnTimeRangeChanged).sort(VariableSort.AlphabeticalAsc).includeAll(true).multi(true).allValue('.*'))
    .withVariable(new QueryVariableBuilder('job').label('Job').datasource(DS)
      .query('label_values(warden_model_info{namespace=~"$namespace"}, job)').refresh(VariableRefresh.OnTimeRangeChanged).sort(VariableSort.AlphabeticalAsc).includeAll(true).multi(true).allValue('.*'))
    .withVariable(new QueryVariableBuilder('detector').label('Detector').datasource(DS)
      .query(`label_values(warden_detector_p_value_count{${SEL}}, detector)`).refresh(VariableRefresh.OnTimeRangeChanged).sort(VariableSort.AlphabeticalAsc).includeAll(true).multi(true).allValue('.*'));

  // ---- verdicts
  b.withRow(new RowBuilder('Verdicts'));
  b.withPanel(ts('Instances by verdict', 'Instances judged per second, by final verdict (after the study rule), STOW-RS and scanned WADO-RS together.', 'ops', [
    q(`sum by (verdict) (rate(warden_instances_total{${SEL}}${RATE}))`, '{{verdict}}', 'A'),
  ], { stack: true, fill: 40 }));
  b.withPanel(ts('Flag and block rate vs nominal', 'Fraction of judged instances flagged and blocked; dashed: the shipped policy\'s nominal clean rates (flag 5 %, block 0.5 %). Far above them on clean traffic means drift (see below) or an attack.', 'percentunit', [
    q(`sum(rate(warden_instances_total{${SEL}, verdict="block"}${RATE})) / sum(rate(warden_instances_total{${SEL}}${RATE}))`, 'block rate', 'A'),
    q(`sum(rate(warden_instances_total{${SEL}, verdict="flag"}${RATE})) / sum(rate(warden_instances_total{${SEL}}${RATE}))`, 'flag rate', 'B'),
  ], { min: 0, thresholds: lines([0.005, 'red'], [0.05, 'orange']) }));
  b.withPanel(ts('Flag rate per detector (drift window) vs nominal', 'warden_flag_rate: of the last 1,000 scanned instances, the fraction at or below the signal\'s flag rate; dashed: the nominal 5 % of the adversarial signal.', 'percentunit', [
    q(`max by (signal, detector) (warden_flag_rate{${SEL}})`, '{{signal}} / {{detector}}', 'A'),
  ], { min: 0, thresholds: lines([0.05, 'orange']) }));
  b.withPanel(ts('Calibration drift (tail probability)', 'warden_drift_tail_probability: how likely the observed flag count is if the calibration still holds. Below the dashed 1e-4 for 30 minutes fires WardenCalibrationDrift (docs/operations.md).', 'none', [
    q(`min by (signal, detector) (warden_drift_tail_probability{${SEL}})`, '{{signal}} / {{detector}}', 'A'),
  ], { log: true, thresholds: lines([0.0001, 'red']), fill: 0 }));
  b.withPanel(ts('Flagged instances by signal and detector', 'Flags per second, one count per signal that flagged (domain = unlike the training data, never a block on its own).', 'ops', [
    q(`sum by (signal, detector) (rate(warden_flagged_instances_total{${SEL}}${RATE}))`, '{{signal}} / {{detector}}', 'A'),
  ]));
  b.withPanel(ts('Unscanned and observe mode', 'Instances passed on without a scan (out of scope, not an image), instances scanned by their pixels though their tags said out of scope, and in observe mode what enforce mode would have flagged or blocked.', 'ops', [
    q(`sum by (reason) (rate(warden_instances_unscanned_total{${SEL}}${RATE}))`, 'unscanned: {{reason}}', 'A'),
    q(`sum(rate(warden_instances_scanned_by_pixels_total{${SEL}}${RATE}))`, 'scanned by pixels', 'B'),
    q(`sum by (verdict) (rate(warden_instances_observed_total{${SEL}}${RATE}))`, 'observe: would {{verdict}}', 'C'),
  ]));

  // ---- detectors
  b.withRow(new RowBuilder('Detectors'));
  b.withPanel(ts('p-values at or below 0.05, per detector', 'Fraction of conformal p-values ≤ 0.05 (the histogram bucket): on clean traffic each detector stays near 5 % (dashed).', 'percentunit', [
    q(`sum by (detector) (rate(warden_detector_p_value_bucket{${SEL}, detector=~"$detector", le="0.05"}${RATE})) / sum by (detector) (rate(warden_detector_p_value_count{${SEL}, detector=~"$detector"}${RATE}))`, '{{detector}}', 'A'),
  ], { min: 0, thresholds: lines([0.05, 'orange']) }));
  b.withPanel(ts('Detector score quantiles', 'Median and 95th percentile of each detector\'s score (higher = more anomalous), from warden_detector_score.', 'none', [
    q(`histogram_quantile(0.5, sum by (detector, le) (rate(warden_detector_score_bucket{${SEL}, detector=~"$detector"}${RATE})))`, 'p50 {{detector}}', 'A'),
    q(`histogram_quantile(0.95, sum by (detector, le) (rate(warden_detector_score_bucket{${SEL}, detector=~"$detector"}${RATE})))`, 'p95 {{detector}}', 'B'),
  ], { fill: 0 }));
  b.withPanel(new heatmap.PanelBuilder().title('p-value distribution').description('Conformal p-values of the selected detectors over time: clean traffic fills the buckets evenly; a pile-up at the bottom means many instances unlike the calibration set.')
    .datasource(DS).span(12).height(8).calculate(false)
    .withTarget(q(`sum by (le) (increase(warden_detector_p_value_bucket{${SEL}, detector=~"$detector"}${RATE}))`, '{{le}}', 'A', { format: 'heatmap' })));
  b.withPanel(new heatmap.PanelBuilder().title('Score distribution').description('Detector scores of the selected detectors over time (warden_detector_score buckets).')
    .datasource(DS).span(12).height(8).calculate(false)
    .withTarget(q(`sum by (le) (increase(warden_detector_score_bucket{${SEL}, detector=~"$detector"}${RATE}))`, '{{le}}', 'A', { format: 'heatmap' })));

  // ---- latency
  b.withRow(new RowBuilder('Latency'));
  b.withPanel(ts('Stage latency p50 / p95 / p99', 'warden_stage_duration_seconds: ingest and forward per STOW-RS request; decode, preprocess, inference, detect and total per instance. WardenScanLatencyHigh fires on the total p99 above 1 s.', 's', [
    q(`histogram_quantile(0.5, sum by (stage, le) (rate(warden_stage_duration_seconds_bucket{${SEL}}${RATE})))`, 'p50 {{stage}}', 'A'),
    q(`histogram_quantile(0.95, sum by (stage, le) (rate(warden_stage_duration_seconds_bucket{${SEL}}${RATE})))`, 'p95 {{stage}}', 'B'),
    q(`histogram_quantile(0.99, sum by (stage, le) (rate(warden_stage_duration_seconds_bucket{${SEL}}${RATE})))`, 'p99 {{stage}}', 'C'),
  ], { fill: 0, log: true }));
  b.withPanel(ts('Upstream latency p50 / p99', 'Time until the upstream\'s response headers, by method.', 's', [
    q(`histogram_quantile(0.5, sum by (method, le) (rate(warden_upstream_request_duration_seconds_bucket{${SEL}}${RATE})))`, 'p50 {{method}}', 'A'),
    q(`histogram_quantile(0.99, sum by (method, le) (rate(warden_upstream_request_duration_seconds_bucket{${SEL}}${RATE})))`, 'p99 {{method}}', 'B'),
  ], { fill: 0 }));

  // ---- upstream and answers
  b.withRow(new RowBuilder('Upstream and answers'));
  b.withPanel(ts('Upstream requests by status', 'Requests to the protected DICOMweb server by method and status ("error": no answer).', 'reqps', [
    q(`sum by (method, status) (rate(warden_upstream_requests_total{${SEL}}${RATE}))`, '{{method}} {{status}}', 'A'),
  ]));
  b.withPanel(ts('Answers to senders by status', 'STOW-RS requests and scanned WADO-RS retrieves, by route and the status Warden answered.', 'reqps', [
    q(`sum by (route, status) (rate(warden_requests_total{${SEL}}${RATE}))`, '{{route}} {{status}}', 'A'),
  ]));
  b.withPanel(ts('Errors by code', 'warden_errors_total by stable error code (docs/errors.md).', 'ops', [
    q(`sum by (code) (rate(warden_errors_total{${SEL}}${RATE}))`, '{{code}}', 'A'),
  ]));
  b.withPanel(ts('Received bytes', 'Multipart bytes read (STOW-RS bodies, scanned WADO-RS responses).', 'Bps', [
    q(`sum by (route) (rate(warden_received_bytes_total{${SEL}}${RATE}))`, '{{route}}', 'A'),
    q(`sum(rate(warden_spooled_parts_total{${SEL}}${RATE}))`, 'parts spooled to disk /s', 'B'),
  ]));

  // ---- saturation
  b.withRow(new RowBuilder('Saturation'));
  b.withPanel(ts('Inference queue depth per pod', 'warden_inference_queue_depth: instances waiting for or in inference, bounded by limits.maxConcurrentScans; the HPA\'s custom metric.', 'none', [
    q(`warden_inference_queue_depth{${SEL}}`, '{{pod}}{{instance}}', 'A'),
  ], { min: 0, span: 8 }));
  b.withPanel(ts('Active scans per pod', 'warden_active_scans: scans admitted and not finished (running or waiting for a slot).', 'none', [
    q(`warden_active_scans{${SEL}}`, '{{pod}}{{instance}}', 'A'),
  ], { min: 0, span: 8 }));
  b.withPanel(ts('In-flight requests', 'warden_inflight_requests by route.', 'none', [
    q(`sum by (route) (warden_inflight_requests{${SEL}})`, '{{route}}', 'A'),
  ], { min: 0, span: 8 }));
  b.withPanel(ts('Refused with 503 (saturated)', 'Requests answered 503 + Retry-After because the scan limits were reached.', 'reqps', [
    q(`sum(rate(warden_saturated_rejections_total{${SEL}}${RATE}))`, '503 saturated', 'A'),
  ], { min: 0, span: 8 }));
  b.withPanel(ts('CPU per pod', 'Cores used by each Warden process.', 'none', [
    q(`rate(warden_process_cpu_seconds_total{${SEL}}${RATE})`, '{{pod}}{{instance}}', 'A'),
  ], { min: 0, span: 8 }));
  b.withPanel(ts('Memory per pod', 'Resident set size of each Warden process (measured peak ≈ 0.3 GB with the embedded model, docs/performance.md).', 'bytes', [
    q(`warden_process_resident_memory_bytes{${SEL}}`, '{{pod}}{{instance}}', 'A'),
  ], { min: 0, span: 8 }));

  // ---- model, bundle, security
  b.withRow(new RowBuilder('Model, bundle and security'));
  b.withPanel(new table.PanelBuilder().title('Model and bundle in use').description('warden_model_info per pod: model and bundle sha256, provider, detectors. Replicas on different bundles fire WardenBundleMismatch.')
    .datasource(DS).span(16).height(8)
    .withTarget(q(`max by (pod, instance, model_sha256, bundle_sha256, provider, detectors, version) (warden_model_info{${SEL}})`, '', 'A', { instant: true, format: 'table' })));
  b.withPanel(new stat.PanelBuilder().title('Security warnings').description('warden_security_warning: 1 while the running configuration has a known weakness (e.g. no tokens beyond loopback).')
    .datasource(DS).span(8).height(8).thresholds(new ThresholdsConfigBuilder().mode(ThresholdsMode.Absolute).steps([{ value: null, color: 'green' }, { value: 1, color: 'red' }]))
    .withTarget(q(`max by (warning) (warden_security_warning{${SEL}})`, '{{warning}}', 'A', { instant: true })));

  const dashboard = b.build();
  // stable panel ids (Grafana would assign them on first save)
  dashboard.panels.forEach((p, i) => { p.id = i + 1; });
  return dashboard;
}

module.exports = { buildDashboard };

if (require.main === module) {
  const out = path.join(__dirname, 'warden-dashboard.json');
  fs.writeFileSync(out, `${JSON.stringify(buildDashboard(), null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
}

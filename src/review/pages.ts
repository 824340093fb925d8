/**
 * The review page's server-rendered HTML: the list (filters, paging), one instance (thumbnail, prediction,
 * detector plots, reasons, history, actions) and the confirmation step of an action. Only hashes and
 * non-identifying attributes are ever shown: the records hold nothing else.
 */
import type { AuditAction, AuditPage, AuditRecord, QuarantineState } from '../audit';
import { QUARANTINE_STATES, SIGNALS, VERDICTS } from '../audit';
import { html, raw, type Html } from './html';

export interface ListFilters {
  verdict?: string;
  signal?: string;
  status?: string;
  study?: string;
  from?: string;
  to?: string;
}

export interface DetectorPlot {
  detector: string;
  signal: string;
  score: number | null;
  pValue: number | null;
  svg: string | null;
}

const STYLE = `
*{box-sizing:border-box}body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2933;background:#f5f7fa}
header{background:#102a43;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}header a{color:#fff;text-decoration:none;font-weight:600}
header small{color:#9fb3c8}main{padding:16px 20px;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:6px 8px;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
th{background:#f0f4f8;font-weight:600}td.num{font-variant-numeric:tabular-nums}code,.hash{font-family:ui-monospace,Menlo,monospace;font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}
.v-block{background:#c0392b}.v-flag{background:#d68910}.v-forward{background:#27ae60}
.s-quarantined{background:#6c5ce7}.s-releasing{background:#0984e3}.s-released{background:#27ae60}.s-release_failed{background:#c0392b}.s-discarded{background:#636e72}
form.filters{display:flex;flex-wrap:wrap;gap:10px;align-items:end;margin:0 0 12px;background:#fff;padding:10px;border:1px solid #e4e7eb}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#52606d}
input,select,textarea,button{font:inherit}button,.button{background:#102a43;color:#fff;border:0;padding:6px 14px;border-radius:4px;cursor:pointer;text-decoration:none;display:inline-block}
.button.danger,button.danger{background:#c0392b}.button.secondary{background:#829ab1}
.grid{display:grid;grid-template-columns:280px 1fr;gap:20px}.card{background:#fff;border:1px solid #e4e7eb;padding:12px;margin-bottom:14px}
.thumb{width:256px;max-width:100%;image-rendering:auto;background:#000;display:block}.muted{color:#7b8794}
.notice{padding:8px 12px;margin-bottom:12px;border-left:4px solid #27ae60;background:#e3f9e5}.error{border-left-color:#c0392b;background:#ffe3e3}
.pager{margin-top:10px;display:flex;gap:12px;align-items:center}h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:0 0 8px}
textarea{width:100%;min-height:80px}
`;

export function layout(title: string, base: string, body: Html): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${title} · Warden review</title><style>${raw(STYLE)}</style></head>
<body><header><a href="${base}/">Warden review</a><small>quarantine and audit trail · hashes only, no patient identifiers</small></header>
<main>${body}</main></body></html>`.value;
}

function iso(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '' : new Date(ms).toISOString().replace('.000Z', 'Z');
}

function shortHash(h: string | null): string {
  return h ? `${h.slice(0, 12)}…` : '';
}

function verdictBadge(v: string): Html {
  return html`<span class="badge v-${v}">${v}</span>`;
}

function stateBadge(s: QuarantineState | null | undefined): Html {
  return s ? html`<span class="badge s-${s}">${s.replace('_', ' ')}</span>` : html`<span class="muted">—</span>`;
}

function num(x: number | null | undefined, digits = 4): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return 'n/a';
  return Math.abs(x) !== 0 && Math.abs(x) < 1e-3 ? x.toExponential(2) : x.toFixed(digits);
}

function query(filters: ListFilters, extra: Record<string, string | number> = {}): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...filters, ...extra })) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

function select(name: string, label: string, options: readonly string[], value: string | undefined): Html {
  return html`<label>${label}<select name="${name}" id="f-${name}"><option value="">any</option>${options.map((o) =>
    html`<option value="${o}"${o === value ? raw(' selected') : ''}>${o.replace('_', ' ')}</option>`)}</select></label>`;
}

export function listPage(base: string, page: AuditPage, filters: ListFilters, notice?: string): string {
  const rows = page.items.map((r) => html`<tr data-id="${r.id}" data-verdict="${r.verdict}">
    <td class="num">${iso(r.time)}</td><td>${verdictBadge(r.verdict)}${r.observedVerdict ? html` <span class="muted">would ${r.observedVerdict}</span>` : ''}</td>
    <td><a class="hash" href="${base}/${query({ ...filters, study: r.studyHash })}" title="all instances of this study">${shortHash(r.studyHash)}</a></td>
    <td>${r.modality ?? ''}</td><td>${r.prediction ? `${r.prediction.label} ${num(r.prediction.probability, 2)}` : ''}</td>
    <td>${r.reasons.map((x) => html`<div><code>${x.signal}</code> ${x.code}${x.detector ? ` (${x.detector})` : ''}</div>`)}</td>
    <td>${stateBadge(r.quarantine?.state)}</td><td><a href="${base}/instances/${r.id}">review</a></td></tr>`);
  const from = page.offset + 1;
  const to = page.offset + page.items.length;
  const prev = page.offset > 0 ? html`<a href="${base}/${query(filters, { offset: Math.max(0, page.offset - page.limit) })}">← newer</a>` : '';
  const next = to < page.total ? html`<a href="${base}/${query(filters, { offset: to })}">older →</a>` : '';
  return layout('Instances', base, html`
<h1>Instances by verdict and time</h1>
${notice ? html`<div class="notice">${notice}</div>` : ''}
<form class="filters" method="get" action="${base}/">
  ${select('verdict', 'Verdict', VERDICTS, filters.verdict)}
  ${select('signal', 'Signal', SIGNALS, filters.signal)}
  ${select('status', 'Quarantine', QUARANTINE_STATES, filters.status)}
  <label>From (UTC)<input type="datetime-local" name="from" id="f-from" value="${filters.from ?? ''}"></label>
  <label>To (UTC)<input type="datetime-local" name="to" id="f-to" value="${filters.to ?? ''}"></label>
  <label>Study hash<input name="study" id="f-study" size="20" value="${filters.study ?? ''}"></label>
  <button type="submit" id="apply-filters">Filter</button> <a class="button secondary" href="${base}/">Clear</a>
</form>
<table id="instances"><thead><tr><th>Time (UTC)</th><th>Verdict</th><th>Study</th><th>Modality</th><th>Prediction</th><th>Reasons</th><th>Quarantine</th><th></th></tr></thead>
<tbody>${rows.length ? rows : html`<tr><td colspan="8" class="muted">No instances match.</td></tr>`}</tbody></table>
<div class="pager"><span id="count">${page.total ? `${from}–${to} of ${page.total}` : '0 instances'}</span>${prev}${next}</div>`);
}

function actionsTable(actions: AuditAction[] | undefined): Html {
  if (!actions?.length) return html`<p class="muted">No actions yet.</p>`;
  return html`<table id="history"><thead><tr><th>Time (UTC)</th><th>Action</th><th>Actor</th><th>Comment</th><th>Outcome</th><th>Upstream</th></tr></thead><tbody>${actions.map((a) =>
    html`<tr><td class="num">${iso(a.at)}</td><td>${a.action}</td><td>${a.actor}</td><td>${a.comment}</td><td>${a.outcome ?? ''}${a.detail ? html` <span class="muted">${a.detail}</span>` : ''}</td><td>${a.upstreamStatus ?? ''}</td></tr>`)}</tbody></table>`;
}

export function canRelease(r: AuditRecord): boolean {
  return !!r.quarantine && r.quarantine.bytesDeletedAt === null && (r.quarantine.state === 'quarantined' || r.quarantine.state === 'release_failed');
}

export const canDiscard = canRelease;

export function detailPage(base: string, r: AuditRecord, plots: DetectorPlot[], hasThumbnail: boolean, notice?: { text: string; error?: boolean }): string {
  const q = r.quarantine;
  const identity: [string, unknown][] = [
    ['Study hash', html`<a class="hash" href="${base}/?study=${r.studyHash}">${r.studyHash}</a>`],
    ['Series hash', html`<span class="hash">${r.seriesHash ?? ''}</span>`],
    ['SOP instance hash', html`<span class="hash">${r.sopHash}</span>`],
    ['SOP class', r.sopClassUid ?? ''], ['Modality', r.modality ?? ''], ['Transfer syntax', r.transferSyntaxUid ?? ''],
    ['Size', `${r.sizeBytes} bytes`], ['sha256', html`<span class="hash">${r.sha256}</span>`],
  ];
  const context: [string, unknown][] = [
    ['Time (UTC)', iso(r.time)], ['Route', r.route], ['Client', r.client ?? ''], ['Request', r.requestId],
    ['Forwarded', r.forwarded ? 'yes' : 'no'], ['Upstream status', r.upstreamStatus ?? ''], ['Failure reason', r.upstreamFailureReason ?? ''],
    ['Model sha256', html`<span class="hash">${shortHash(r.modelSha256)}</span>`], ['Bundle sha256', html`<span class="hash">${shortHash(r.bundleSha256)}</span>`],
    ['Timings (ms)', Object.entries(r.timings).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')],
  ];
  const kv = (pairs: [string, unknown][]) => html`<table>${pairs.map(([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`)}</table>`;
  return layout(`Instance ${r.id.slice(0, 8)}`, base, html`
<p><a href="${base}/">← all instances</a></p>
<h1>${verdictBadge(r.verdict)} ${r.observedVerdict ? html`<span class="muted">(would ${r.observedVerdict})</span>` : ''} instance <span class="hash">${r.id}</span></h1>
${notice ? html`<div class="notice${notice.error ? ' error' : ''}" id="notice">${notice.text}</div>` : ''}
<div class="grid">
  <div>
    <div class="card">${hasThumbnail
      ? html`<img class="thumb" id="thumbnail" alt="first frame of the instance" src="${base}/instances/${r.id}/thumbnail.png">`
      : html`<p class="muted">No bytes kept for this instance (only blocked instances are quarantined; swept bytes are gone).</p>`}</div>
    <div class="card" id="quarantine"><h2>Quarantine</h2>
      <p>State: <span id="state">${stateBadge(q?.state)}</span></p>
      ${q?.release ? html`<p>Last release: upstream ${q.release.upstreamStatus ?? 'no answer'} at ${iso(q.release.at)}${q.release.detail ? html` <span class="muted">${q.release.detail}</span>` : ''}</p>` : ''}
      ${q?.bytesDeletedAt ? html`<p class="muted">Bytes deleted ${iso(q.bytesDeletedAt)}.</p>` : ''}
      ${canRelease(r) ? html`<p><a class="button" id="release" href="${base}/instances/${r.id}/release">Release…</a>
        <a class="button danger" id="discard" href="${base}/instances/${r.id}/discard">Discard…</a></p>` : ''}
    </div>
  </div>
  <div>
    <div class="card"><h2>Prediction</h2><p id="prediction">${r.prediction ? html`<strong>${r.prediction.label}</strong>, probability ${num(r.prediction.probability, 3)}` : html`<span class="muted">none</span>`}</p></div>
    <div class="card"><h2>Reasons</h2>${r.reasons.length ? html`<table id="reasons"><thead><tr><th>Signal</th><th>Code</th><th>Detector</th><th>p-value</th><th>Threshold</th></tr></thead><tbody>${r.reasons.map((x) =>
      html`<tr><td>${x.signal}</td><td><code>${x.code}</code></td><td>${x.detector ?? ''}</td><td class="num">${num(x.pValue)}</td><td class="num">${num(x.threshold)}</td></tr>`)}</tbody></table>` : html`<p class="muted">No reasons: forwarded as clean.</p>`}</div>
    <div class="card"><h2>Detectors against their clean calibration</h2><table id="detectors"><thead><tr><th>Detector</th><th>Signal</th><th>Score</th><th>p-value</th><th>Clean calibration scores and this score</th></tr></thead><tbody>${plots.map((p) =>
      html`<tr data-detector="${p.detector}"><td>${p.detector}</td><td>${p.signal}</td><td class="num">${num(p.score)}</td><td class="num">${num(p.pValue)}</td><td>${p.svg ? raw(p.svg) : html`<span class="muted">no calibration available</span>`}</td></tr>`)}</tbody></table></div>
    <div class="card"><h2>History</h2>${actionsTable(r.actions)}</div>
    <div class="card"><h2>Identity (hashed) and context</h2>${kv(identity)}${kv(context)}</div>
  </div>
</div>`);
}

export function confirmPage(base: string, r: AuditRecord, action: 'release' | 'discard', error?: string, comment = ''): string {
  const verb = action === 'release' ? 'Release' : 'Discard';
  const what = action === 'release'
    ? 'The original bytes will be forwarded to the upstream AI endpoint, once. This cannot be undone.'
    : 'The instance will be marked discarded; its bytes are deleted after the grace period. The record stays.';
  return layout(`${verb} instance`, base, html`
<p><a href="${base}/instances/${r.id}">← back to the instance</a></p>
<h1>${verb} instance <span class="hash">${r.id}</span>?</h1>
${error ? html`<div class="notice error" id="notice">${error}</div>` : ''}
<div class="card"><p>${verdictBadge(r.verdict)} ${r.prediction ? `${r.prediction.label} ${num(r.prediction.probability, 3)}` : ''} · study <span class="hash">${shortHash(r.studyHash)}</span> · ${r.reasons.map((x) => x.code).join(', ')}</p>
<p>${what}</p>
<form method="post" action="${base}/instances/${r.id}/${action}" id="confirm-form">
  <input type="hidden" name="confirm" value="yes">
  <label for="comment">Comment (required: why)</label>
  <textarea id="comment" name="comment" required maxlength="2000">${comment}</textarea>
  <p><button type="submit" id="confirm" class="${action === 'discard' ? 'danger' : ''}">Confirm ${action}</button>
  <a class="button secondary" href="${base}/instances/${r.id}">Cancel</a></p>
</form></div>`);
}

export function errorPage(base: string, status: number, message: string): string {
  return layout(`Error ${status}`, base, html`<h1>Error ${status}</h1><div class="notice error">${message}</div><p><a href="${base}/">← all instances</a></p>`);
}

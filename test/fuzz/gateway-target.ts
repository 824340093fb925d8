import { createHash } from 'node:crypto';
import { ERROR_CATALOGUE, httpStatusOf, isErrorCode } from '../../src/core/errors';
import { multipartParts } from '../helpers/orthanc-client';
import { forkTs, nextMessage, type FuzzChild } from './child-process';
import { gatewayCase, type GatewayCase, type PlannedRequest } from './gateway-cases';
import type { GatewayState } from './gateway-protocol';
import { sendRaw, type RawResult } from './http-client';
import { keepSlowest, type Finding, type TargetReport } from './report';
import { smallSeedFiles } from './seeds';
import { startFuzzUpstream, type FuzzUpstream, type UpstreamRecord } from './upstream';

/**
 * The gateway target: a running Warden (./gateway-child.ts, its own process) in front of the fuzz upstream, fed the
 * cases of ./gateway-cases.ts over real HTTP on 127.0.0.1, one case at a time. After each case:
 * - every request that did not go away got a whole, well-formed HTTP answer in time: a catalogue error body whose
 *   code gives its status (never INTERNAL), or a PS3.18 STOW-RS body, or a WADO-RS/QIDO-RS answer; Retry-After on
 *   502/503/504;
 * - what the client was told agrees with what reached the upstream: an instance reported stored was received
 *   byte-exact and listed stored by the upstream; a blocked one was not received; nothing reaches the upstream for
 *   a refused request, an unauthenticated one, or a path outside its DICOMweb resources; a scanned retrieve returns
 *   only the upstream's own bytes;
 * - the gateway is back to idle: no STOW or WADO in flight, no scan holding or waiting for a slot, no memory
 *   budget in use, no file in its spool directory (polled for a few seconds: an aborted body settles
 *   asynchronously);
 * - the process is alive. A crash or a leak is recorded and the gateway restarted, so later cases start clean.
 */
export interface GatewayRunOptions {
  seed: number;
  cases: number;
  seconds: number;
  only?: number[];
  maxFindings?: number;
  /** 'model' (default): the real pipeline on the tiny test model; 'fake': the proxy tests' fake scanner. */
  scanner?: 'model' | 'fake';
  /** How long the gateway may take to come back to idle after a case. */
  settleMs?: number;
  onProgress?: (done: number) => void;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CANONICAL_UPSTREAM = /^\/dicom-web\/(studies|series|instances)(\/|\?|$)/;

interface Gateway { child: FuzzChild; port: number; spoolDir: string; nextId: number }

async function startGateway(upstreamUrl: string, scanner: 'model' | 'fake'): Promise<Gateway> {
  const child = forkTs('gateway-child.ts', { FUZZ_UPSTREAM_URL: upstreamUrl, FUZZ_SCANNER: scanner });
  const ready = await Promise.race([
    nextMessage(child, (m): m is { type: 'ready'; port: number; spoolDir: string } => (m as { type?: string })?.type === 'ready'),
    sleep(120000).then(() => null),
  ]);
  if (!ready) {
    child.kill();
    throw new Error(`the gateway did not start: ${child.stderrTail()}`);
  }
  return { child, port: ready.port, spoolDir: ready.spoolDir, nextId: 0 };
}

async function stateOf(gw: Gateway): Promise<GatewayState | null> {
  const id = gw.nextId++;
  const reply = nextMessage(gw.child, (m): m is { type: 'state'; id: number; state: GatewayState } => (m as { type?: string; id?: number })?.type === 'state' && (m as { id: number }).id === id);
  try { gw.child.proc.send({ type: 'state', id }); } catch { return null; }
  const r = await Promise.race([reply, sleep(5000).then(() => null)]);
  return r ? r.state : null;
}

function idle(s: GatewayState): boolean {
  return s.activeStow === 0 && s.activeWado === 0 && s.scansActive === 0 && s.scansWaiting === 0 && s.budgetUsed === 0 && s.spoolFiles.length === 0
    && Object.entries(s.inflight).every(([route, n]) => n === 0 || route === 'metrics');
}

async function stopGateway(gw: Gateway): Promise<void> {
  try { gw.child.proc.send({ type: 'close' }); } catch { /* gone */ }
  const done = await Promise.race([gw.child.exited, sleep(10000).then(() => null)]);
  if (!done) gw.child.kill();
}

type Json = Record<string, { vr?: string; Value?: unknown[] } | undefined>;
const seq = (ds: Json, tag: string): Json[] => (ds[tag]?.Value as Json[] | undefined) ?? [];
const first = (it: Json, tag: string): unknown => it[tag]?.Value?.[0];

/** Judges one request's ending; returns problems (kind, detail) and an outcome label. */
function judge(plan: PlannedRequest, result: RawResult, c: GatewayCase, records: UpstreamRecord[]): { outcome: string; problems: [string, string][] } {
  const problems: [string, string][] = [];
  if (plan.clientAborts && (result.aborted || !result.response)) return { outcome: `${plan.route}:aborted`, problems };
  if (result.timedOut) return { outcome: `${plan.route}:hang`, problems: [['hang', `no answer within ${plan.raw.deadlineMs} ms`]] };
  if (result.garbage !== undefined) return { outcome: `${plan.route}:garbage`, problems: [['malformed-answer', `not an HTTP response: ${JSON.stringify(result.garbage.slice(0, 120))}`]] };
  const res = result.response;
  if (!res) return { outcome: `${plan.route}:no-answer`, problems: [['no-answer', 'the connection closed without an answer']] };
  const type = (res.headers['content-type'] ?? '').toLowerCase();
  let json: unknown = null;
  if (/json/.test(type)) {
    try { json = JSON.parse(res.body.toString('utf8')); } catch { if (res.body.length) problems.push(['malformed-answer', `${res.status} with a ${type} body that is not JSON`]); }
  }
  const errorCode = (json as { error?: { code?: unknown } } | null)?.error?.code;
  let outcome = `${plan.route}:${res.status}`;
  if (errorCode !== undefined) {
    outcome += `:${String(errorCode)}`;
    if (!isErrorCode(errorCode)) problems.push(['malformed-answer', `error code ${String(errorCode)} is not in the catalogue`]);
    else if (httpStatusOf(errorCode) !== res.status && !(errorCode === 'UPSTREAM_UNAVAILABLE' && [502, 503, 504].includes(res.status))) {
      problems.push(['malformed-answer', `${errorCode} answered with ${res.status}; the catalogue says ${ERROR_CATALOGUE[errorCode].status}`]);
    }
    if (typeof (json as { error: { message?: unknown } }).error.message !== 'string') problems.push(['malformed-answer', `${String(errorCode)} without a message`]);
  }
  if (res.status >= 500 && res.status !== 502 && res.status !== 503 && res.status !== 504) problems.push(['internal', `answered ${res.status}${errorCode ? ` ${String(errorCode)}` : ''}`]);
  if ([502, 503, 504].includes(res.status) && !res.headers['retry-after'] && plan.route === 'stow') problems.push(['malformed-answer', `${res.status} without Retry-After`]);

  const posts = records.filter((r) => r.method === 'POST');
  if (plan.route === 'stow') {
    const answeredPs318 = /application\/dicom\+json/.test(type) && json !== null && errorCode === undefined;
    if (!plan.authorized && res.status !== 401 && answeredPs318) problems.push(['auth-bypass', `an unauthenticated STOW-RS was answered ${res.status} with a PS3.18 body`]);
    if (!plan.authorized && posts.length && c.requests.length === 1) problems.push(['auth-bypass', 'an unauthenticated STOW-RS reached the upstream']);
    if (errorCode !== undefined && res.status < 500 && posts.length && c.requests.length === 1) problems.push(['refused-but-forwarded', `refused with ${res.status} ${String(errorCode)} yet the upstream received a STOW-RS`]);
    if (plan.unreadableFraming && posts.length && c.requests.length === 1) problems.push(['smuggling', 'a request with unreadable framing reached the upstream']);
    if (answeredPs318) checkStowAnswer(plan, res.status, json as Json, posts, c.requests.length === 1, problems);
  }
  if (plan.route === 'wado' && (res.status === 200 || res.status === 206) && /^multipart\/related/.test(type) && !plan.raw.head.toString('latin1').startsWith('HEAD')) {
    const returned = multipartParts(res.body, res.headers['content-type']);
    const known = new Set(c.upstream.wadoInstances.map(sha256));
    if (returned.some((p) => !known.has(sha256(p)))) problems.push(['altered-bytes', 'a scanned retrieve returned bytes the upstream did not send']);
    const total = Number(res.headers['x-warden-instances']);
    const withheld = Number(res.headers['x-warden-withheld']);
    if (Number.isFinite(total) && Number.isFinite(withheld) && returned.length !== total - withheld) problems.push(['inconsistent-answer', `${returned.length} parts returned for ${total} instances, ${withheld} withheld`]);
  }
  return { outcome, problems };
}

/** PS3.18 STOW-RS answer: shape, and agreement with what the upstream received and listed as stored. */
function checkStowAnswer(plan: PlannedRequest, status: number, ds: Json, posts: UpstreamRecord[], alone: boolean, problems: [string, string][]): void {
  const referenced = seq(ds, '00081199');
  const failed = seq(ds, '00081198');
  const items = [...referenced, ...failed];
  for (const it of items) {
    const verdict = first(it, '00091001');
    if (!['FORWARD', 'FLAG', 'BLOCK'].includes(String(verdict))) problems.push(['malformed-answer', `an item with verdict ${String(verdict)}`]);
    if (typeof first(it, '00091003') !== 'number') problems.push(['malformed-answer', 'an item without its part number']);
  }
  for (const it of failed) if (typeof first(it, '00081197') !== 'number') problems.push(['malformed-answer', 'a failed item without FailureReason']);
  if (status === 200 && failed.length) problems.push(['inconsistent-answer', `200 with ${failed.length} failed instance(s)`]);
  if (status === 409 && referenced.length) problems.push(['inconsistent-answer', `409 with ${referenced.length} stored instance(s)`]);
  if (status === 202 && (!failed.length || !referenced.length)) problems.push(['inconsistent-answer', '202 without both stored and failed instances']);
  if ([502, 503, 504].includes(status) && referenced.length) problems.push(['inconsistent-answer', `${status} claims instances stored`]);
  const listedStored = new Set(posts.flatMap((p) => p.listedStored));
  const received = new Set(posts.flatMap((p) => p.parts.map((x) => x.sha256)));
  for (const it of referenced) {
    const uid = String(first(it, '00081155') ?? '');
    if (!listedStored.has(uid)) problems.push(['claimed-not-stored', 'an instance reported stored was not listed stored by the upstream']);
  }
  if (!alone) return;
  if (plan.framingIntact) {
    const sent = plan.sentParts.map(sha256);
    if (items.length !== plan.sentParts.length) problems.push(['inconsistent-answer', `${items.length} items answered for ${plan.sentParts.length} parts sent`]);
    for (const h of received) if (!sent.includes(h)) problems.push(['altered-bytes', 'the upstream received a part the client did not send']);
    for (const it of referenced) {
      const k = Number(first(it, '00091003')) - 1;
      if (!received.has(sent[k])) problems.push(['claimed-not-stored', `part ${k + 1} reported stored but its bytes never reached the upstream`]);
    }
    for (const it of failed) {
      const k = Number(first(it, '00091003')) - 1;
      // the same bytes may also have been sent as another part that was not blocked (a duplicate refused as such)
      const forwardedElsewhere = items.some((r) => String(first(r, '00091001')) !== 'BLOCK' && Number(first(r, '00091003')) - 1 !== k && sent[Number(first(r, '00091003')) - 1] === sent[k]);
      if (String(first(it, '00091001')) === 'BLOCK' && received.has(sent[k]) && !forwardedElsewhere) problems.push(['blocked-but-forwarded', `part ${k + 1} was blocked yet reached the upstream`]);
    }
  }
}

export async function runGatewayTarget(opts: GatewayRunOptions): Promise<TargetReport> {
  const t0 = Date.now();
  const deadline = t0 + opts.seconds * 1000;
  const maxFindings = opts.maxFindings ?? 50;
  const settleMs = opts.settleMs ?? 5000;
  const scanner = opts.scanner ?? 'model';
  const report: TargetReport = { target: 'gateway', seed: opts.seed, cases: 0, elapsedMs: 0, outcomes: {}, findings: [], slowest: [], stoppedBy: 'cases' };
  const seeds = smallSeedFiles();
  const upstream: FuzzUpstream = await startFuzzUpstream();
  let gw: Gateway | null = null;
  const count = (label: string): void => { report.outcomes[label] = (report.outcomes[label] ?? 0) + 1; };
  const finding = (index: number, kind: string, detail: string, c?: GatewayCase): void => {
    const f: Finding = { target: 'gateway', seed: opts.seed, index, kind, detail, ...(c ? { what: `${c.kind} ${c.what.join(' ')}`.slice(0, 600) } : {}) };
    report.findings.push(f);
  };
  const queue = opts.only ? [...opts.only] : null;
  let next = 0;
  try {
    for (;;) {
      if (report.findings.length >= maxFindings) { report.stoppedBy = 'findings'; break; }
      if (Date.now() >= deadline) { report.stoppedBy = 'seconds'; break; }
      const index = queue ? queue.shift() : next < opts.cases ? next++ : undefined;
      if (index === undefined) break;
      gw ??= await startGateway(upstream.url, scanner);
      const c = gatewayCase(opts.seed, index, seeds);
      upstream.records.length = 0;
      upstream.behaviour = c.upstream.behaviour;
      upstream.wadoInstances = c.upstream.wadoInstances;
      upstream.wadoBody = c.upstream.wadoBody;
      const tc = Date.now();
      const results = await Promise.all(c.requests.map((r) => sendRaw({ ...r.raw, port: gw!.port })));
      const ms = Date.now() - tc;
      report.cases++;
      keepSlowest(report.slowest, { index, ms, what: c.what.join(' ').slice(0, 200) });
      c.requests.forEach((plan, i) => {
        const { outcome, problems } = judge(plan, results[i], c, upstream.records);
        count(outcome);
        for (const [kind, detail] of problems) finding(index, kind, detail, c);
      });
      for (const r of upstream.records) {
        const path = r.url;
        if (!CANONICAL_UPSTREAM.test(path) || /\/\/|\/\.{1,2}(\/|\?|$)|%2e|%2f|%5c|\\/i.test(path.split('?')[0])) {
          finding(index, 'path-escape', `the upstream received ${r.method} ${path.slice(0, 120)}`, c);
        }
      }
      // back to idle?
      let state = await stateOf(gw);
      const settleBy = Date.now() + settleMs;
      while (state && !idle(state) && Date.now() < settleBy) {
        await sleep(20);
        state = await stateOf(gw);
      }
      const exitCode = gw.child.proc.exitCode;
      const signal = gw.child.proc.signalCode;
      if (exitCode !== null || signal !== null || state === null) {
        finding(index, 'crash', `the gateway process ${exitCode !== null || signal !== null ? `exited (${exitCode ?? signal})` : 'stopped answering'}: ${gw.child.stderrTail().slice(-600).trim()}`, c);
        gw.child.kill();
        gw = null;
      } else if (!idle(state)) {
        finding(index, 'leak', `not idle ${settleMs} ms after the case: ${JSON.stringify({ ...state, spoolFiles: state.spoolFiles.length })}`, c);
        await stopGateway(gw);
        gw = null;
      }
      opts.onProgress?.(report.cases);
    }
  } finally {
    if (gw) await stopGateway(gw);
    await upstream.close();
  }
  report.findings.sort((a, b) => a.index - b.index);
  report.elapsedMs = Date.now() - t0;
  return report;
}

/**
 * Several replicas, as the Helm chart deploys them: two `warden serve` processes (bin/warden.js, the embedded model
 * and bundle) behind nginx round-robin (a stand-in for the Service), sharing one PostgreSQL audit store, one
 * quarantine directory and one UID-hash key, in front of one real Orthanc. Three bounded load runs of mixed clean,
 * benign-shifted and adversarial lab studies (each instance with fresh UIDs, two per study): through one replica,
 * through both, and through both with one replica SIGKILLed a third of the way in (senders then retry what failed, as
 * DICOMweb senders do). Afterwards every instance is in Orthanc exactly once (claimed stored), or in quarantine with
 * its audit record `quarantined` and not in Orthanc (blocked), or in a failure answer to its sender; none is both
 * stored and blocked, none claimed stored is missing, none blocked is missing from the quarantine; both replicas'
 * decisions are in the one database, one per instance. Throughput with 2 replicas ÷ 1 is printed (not asserted: this
 * machine has 2 cores shared by everything here) and written to test-artifacts/multi-replica.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as dcmjs from 'dcmjs';
import { Client } from 'pg';
import { stringify } from 'yaml';
import { startOrthanc, orthancAvailable, freePort, type OrthancHandle } from '../helpers/orthanc';
import { startPostgres, type PostgresHandle } from '../helpers/postgres';
import { startNginx, type NginxHandle } from '../helpers/nginx';
import { readLabManifest } from '../helpers/lab-fixtures';
import { syntheticUid } from '../helpers/write-dicom';
import { multipartBody, referencedUids, failedItems } from '../helpers/stow';
import { hashUid, setUidHashKey } from '../../src/dicom';

jest.setTimeout(300000);
dcmjs.log.setLevel('error');

const ROOT = path.resolve(__dirname, '..', '..');
const SENDER = 'multi-replica-sender-token-0123';
const UID_KEY = 'multi-replica-test-uid-hash-key-0123456789';
const CONCURRENCY = 6;
const BLOCKED = 0xc0a1;
/** Each phase sends every lab fixture this many times (fresh UIDs each time). */
const REPEAT = 2;

interface Instance { sop: string; study: string; bytes: Buffer; sha256: string; kind: string }
interface StudyRequest { study: string; instances: Instance[] }
interface Answer { status: number; replica: string | null; stored: string[]; failed: Array<{ uid?: string; reason: number }>; ms: number }
interface PhaseResult { name: string; requests: StudyRequest[]; answers: Answer[][]; seconds: number; cpu: Record<string, number>; killedAfter?: number }

/** A lab fixture with fresh Study/Series/SOP Instance UIDs (pixels untouched, so it is judged as the fixture). */
function withFreshUids(bytes: Buffer, tag: string, study: string): Instance & { series: string } {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const file = dcmjs.data.DicomMessage.readFile(ab);
  const sop = syntheticUid('multi-replica', tag);
  const series = syntheticUid('multi-replica', study, 'series');
  file.dict['0020000D'].Value = [study];
  file.dict['0020000E'].Value = [series];
  file.dict['00080018'].Value = [sop];
  file.meta['00020003'].Value = [sop];
  const out = Buffer.from(file.write());
  return { sop, study, series, bytes: out, sha256: createHash('sha256').update(out).digest('hex'), kind: '' };
}

/** Studies of two instances each, every lab fixture REPEAT times, with UIDs unique to this phase. */
function phaseStudies(phase: string): StudyRequest[] {
  const rows = Array.from({ length: REPEAT }, () => readLabManifest()).flat();
  const studies: StudyRequest[] = [];
  for (let i = 0; i < rows.length; i += 2) {
    const study = syntheticUid('multi-replica', phase, String(i));
    const instances = rows.slice(i, i + 2).map((r, j) => ({ ...withFreshUids(fs.readFileSync(r.path), `${phase}-${i + j}`, study), kind: r.kind }));
    studies.push({ study, instances });
  }
  return studies;
}

async function send(url: string, req: StudyRequest): Promise<Answer> {
  const { body, contentType } = multipartBody(req.instances.map((i) => i.bytes));
  const t0 = performance.now();
  try {
    const res = await fetch(`${url}/dicom-web/studies`, {
      method: 'POST', body, headers: { 'content-type': contentType, accept: 'application/dicom+json', authorization: `Bearer ${SENDER}` },
      signal: AbortSignal.timeout(120000),
    });
    const text = await res.text();
    let json: unknown = null;
    try { json = JSON.parse(text); } catch { /* an error page */ }
    return { status: res.status, replica: res.headers.get('x-warden-replica'), stored: referencedUids(json), failed: failedItems(json), ms: performance.now() - t0 };
  } catch {
    return { status: 0, replica: null, stored: [], failed: [], ms: performance.now() - t0 };
  }
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100 on Linux)
  } catch { return Number.NaN; }
}

function peakRssMb(pid: number): number {
  try { return Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024; } catch { return Number.NaN; }
}

interface Replica { name: string; port: number; child: ChildProcess; stderr: () => string }

async function startReplica(name: string, dir: string, config: object): Promise<Replica> {
  const port = await freePort();
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, stringify({ ...config, server: { host: '127.0.0.1', port, stateDir: path.join(dir, `state-${name}`) } }));
  // MALLOC_* set: bin/warden.js then runs the gateway in this very process (no re-exec), so its PID is the gateway's
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), 'serve', '--config', file], {
    cwd: dir, stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_ARENA_MAX: '2', WARDEN_LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.on('data', (c) => { stderr = (stderr + String(c)).slice(-4000); });
  for (let i = 0; i < 300 && child.exitCode === null; i++) {
    if (await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false)) return { name, port, child, stderr: () => stderr };
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL');
  throw new Error(`replica ${name} did not become ready: ${stderr}`);
}

async function stopReplica(r: Replica): Promise<void> {
  if (r.child.exitCode !== null || r.child.signalCode !== null) return;
  const exited = new Promise((res) => r.child.once('exit', res));
  r.child.kill('SIGTERM');
  const t = setTimeout(() => r.child.kill('SIGKILL'), 20000);
  await exited;
  clearTimeout(t);
}

/** A bounded load run: CONCURRENCY senders take the studies in order; `onAnswer` may act mid-run (the kill). */
async function loadRun(url: string, requests: StudyRequest[], onAnswer?: (answered: number) => void): Promise<{ answers: Answer[]; seconds: number }> {
  const answers: Answer[] = new Array(requests.length);
  let next = 0;
  let answered = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < requests.length) {
      const i = next++;
      answers[i] = await send(url, requests[i]);
      answered++;
      onAnswer?.(answered);
    }
  }));
  return { answers, seconds: (performance.now() - t0) / 1000 };
}

/** What a sender does with a failed request (502/503/504, no answer): send it again, a bounded number of times. */
async function retryFailures(url: string, requests: StudyRequest[], answers: Answer[][]): Promise<void> {
  for (let attempt = 0; attempt < 4; attempt++) {
    const pending = requests.map((_, i) => i).filter((i) => ![200, 202, 409].includes(answers[i][answers[i].length - 1].status));
    if (!pending.length) return;
    await new Promise((r) => setTimeout(r, 1000));
    for (const i of pending) answers[i].push(await send(url, requests[i]));
  }
}

describe('two replicas behind a round-robin front, one PostgreSQL, one quarantine, one Orthanc', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-multi-'));
  const quarantineDir = path.join(tmp, 'quarantine');
  let orthanc: OrthancHandle;
  let pg: PostgresHandle;
  let nginx: NginxHandle;
  let db: Client;
  const replicas: Replica[] = [];
  const phases: PhaseResult[] = [];

  beforeAll(async () => {
    if (!orthancAvailable()) throw new Error('Orthanc + DICOMweb plugin are needed: bash scripts/setup.sh --with-orthanc');
    setUidHashKey(UID_KEY);
    [orthanc, pg] = await Promise.all([startOrthanc(), startPostgres()]);
    const audit = pg.createDatabase('warden_multi');
    const config = {
      upstream: { url: orthanc.dicomWeb },
      model: { workers: 1, threadsPerWorker: 1 },
      auth: { tokens: [{ name: 'pacs', roles: ['sender'], token: SENDER }] },
      audit: { url: audit },
      quarantine: { dir: quarantineDir },
      security: { uidHashKey: UID_KEY },
      alerts: { events: false },
      logging: { level: 'warn' },
    };
    // both start at once against an empty database: the migrations serialise on PostgreSQL's advisory lock
    replicas.push(...await Promise.all([startReplica('a', tmp, config), startReplica('b', tmp, config)]));
    nginx = await startNginx({ one: [replicas[0].port], two: [replicas[0].port, replicas[1].port] });
    db = new Client({ connectionString: audit });
    await db.connect();

    const cpu = (): Record<string, number> => Object.fromEntries(replicas.map((r) => [r.name, cpuSeconds(r.child.pid!)]));
    const run = async (name: string, url: string, kill?: Replica): Promise<void> => {
      const requests = phaseStudies(name);
      const before = cpu();
      let killedAfter: number | undefined;
      const { answers, seconds } = await loadRun(url, requests, kill && ((answered) => {
        if (killedAfter === undefined && answered >= Math.floor(requests.length / 3)) { killedAfter = answered; kill.child.kill('SIGKILL'); }
      }));
      const after = cpu();
      const result: PhaseResult = { name, requests, answers: answers.map((a) => [a]), seconds, cpu: Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]])), killedAfter };
      await retryFailures(url, requests, result.answers);
      phases.push(result);
    };
    await run('one', nginx.urls.one);
    await run('two', nginx.urls.two);
    await run('kill', nginx.urls.two, replicas[1]);
  });

  afterAll(async () => {
    await db?.end();
    for (const r of replicas) await stopReplica(r);
    await nginx?.stop();
    await orthanc?.stop();
    await pg?.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Final outcome of every instance of a phase: the last answer to its request decides. */
  function outcomes(p: PhaseResult) {
    return p.requests.flatMap((req, i) => req.instances.map((inst) => {
      const tries = p.answers[i];
      const last = tries[tries.length - 1];
      const everStored = tries.some((a) => a.stored.includes(inst.sop));
      const everBlocked = tries.some((a) => a.failed.some((f) => f.uid === inst.sop && f.reason === BLOCKED));
      const end = last.stored.includes(inst.sop) ? 'stored' : last.failed.some((f) => f.uid === inst.sop && f.reason === BLOCKED) ? 'blocked' : 'failed';
      return { inst, end, everStored, everBlocked, firstStatus: tries[0].status, replica: last.replica };
    }));
  }

  async function inOrthanc(sop: string): Promise<number> {
    const res = await fetch(`${orthanc.url}/tools/lookup`, { method: 'POST', body: sop });
    return ((await res.json()) as Array<{ Type: string }>).filter((x) => x.Type === 'Instance').length;
  }

  it('every instance ends in Orthanc once, in quarantine (and not in Orthanc), or in a failure answer; none lost, none twice', async () => {
    let orthancTotal = 0;
    for (const p of phases) {
      const all = outcomes(p);
      expect(all.length).toBe(REPEAT * readLabManifest().length);
      // consistency: no instance was both claimed stored and reported blocked
      expect(all.filter((o) => o.everStored && o.everBlocked).map((o) => o.inst.sop)).toEqual([]);
      const lost: string[] = [];
      for (const o of all) {
        const n = await inOrthanc(o.inst.sop);
        orthancTotal += n;
        if (o.everStored && n !== 1) lost.push(`${p.name} stored ${o.inst.kind} in Orthanc ${n}×`);
        if (o.everBlocked) {
          if (n !== 0) lost.push(`${p.name} blocked ${o.inst.kind} is in Orthanc`);
          const rows = await db.query('SELECT quarantine_state, sha256 FROM decisions WHERE sop_hash = $1 AND verdict = $2', [hashUid(o.inst.sop), 'block']);
          if (!rows.rows.some((r) => r.quarantine_state === 'quarantined' && r.sha256 === o.inst.sha256)) lost.push(`${p.name} blocked ${o.inst.kind}: no quarantined record`);
          const file = path.join(quarantineDir, o.inst.sha256.slice(0, 2), `${o.inst.sha256.slice(2)}.dcm`);
          if (!fs.existsSync(file) || !fs.readFileSync(file).equals(o.inst.bytes)) lost.push(`${p.name} blocked ${o.inst.kind}: bytes not in quarantine`);
        }
      }
      expect(lost).toEqual([]);
      // senders retried what failed: every instance ends stored or blocked
      expect(all.filter((o) => o.end === 'failed').map((o) => `${p.name} ${o.inst.kind} ${o.firstStatus}`)).toEqual([]);
      expect(all.filter((o) => o.end === 'blocked').length).toBeGreaterThan(5);
      expect(all.filter((o) => o.end === 'stored').length).toBeGreaterThan(40);
    }
    // nothing else reached Orthanc: its instance count is the sum of what was found
    const count = ((await (await fetch(`${orthanc.url}/instances`)).json()) as string[]).length;
    expect(count).toBe(orthancTotal);
  });

  it('both replicas served and recorded their decisions in the one database, one record per instance', async () => {
    const two = phases.find((p) => p.name === 'two')!;
    const byReplica = new Map<string, string[]>();
    for (const o of outcomes(two)) byReplica.set(o.replica ?? '?', [...(byReplica.get(o.replica ?? '?') ?? []), o.inst.sop]);
    expect([...byReplica.keys()].sort()).toEqual(replicas.map((r) => `127.0.0.1:${r.port}`).sort());
    for (const [replica, sops] of byReplica) {
      const res = await db.query('SELECT sop_hash, count(*)::int AS n FROM decisions WHERE sop_hash = ANY($1) AND client = $2 GROUP BY sop_hash', [sops.map(hashUid), 'pacs']);
      expect([replica, res.rows.length, res.rows.every((r) => r.n === 1)]).toEqual([replica, sops.length, true]);
    }
  });

  it('the killed replica cost only the requests in flight on it, which their senders retried', async () => {
    const kill = phases.find((p) => p.name === 'kill')!;
    expect(kill.killedAfter).toBeGreaterThan(0);
    // before the kill both replicas answered
    expect(new Set(kill.answers.slice(0, kill.killedAfter! - CONCURRENCY).map((a) => a[0].replica)).size).toBe(2);
    expect(replicas[1].child.signalCode).toBe('SIGKILL');
    const firstFailures = kill.answers.filter((a) => ![200, 202, 409].includes(a[0].status)).length;
    // at most the requests that were in flight (one per sender) plus those nginx had already sent to it
    expect(firstFailures).toBeLessThanOrEqual(CONCURRENCY * 2);
    // after the kill nginx sends everything to the survivor
    const lastThird = kill.answers.slice(-Math.floor(kill.answers.length / 3)).map((a) => a[a.length - 1].replica);
    expect(new Set(lastThird)).toEqual(new Set([`127.0.0.1:${replicas[0].port}`]));

    // the numbers for docs/deploy.md
    const rate = (p: PhaseResult): number => p.requests.reduce((n, r) => n + r.instances.length, 0) / p.seconds;
    const one = phases.find((p) => p.name === 'one')!;
    const two = phases.find((p) => p.name === 'two')!;
    const instances = one.requests.reduce((n, r) => n + r.instances.length, 0);
    const perCpuSecond = (p: PhaseResult): number => instances / Object.values(p.cpu).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
    const summary = {
      instancesPerPhase: instances, concurrency: CONCURRENCY,
      oneReplica: { seconds: +one.seconds.toFixed(2), instancesPerSecond: +rate(one).toFixed(1), wardenCpuSeconds: one.cpu, instancesPerWardenCpuSecond: +perCpuSecond(one).toFixed(1) },
      twoReplicas: { seconds: +two.seconds.toFixed(2), instancesPerSecond: +rate(two).toFixed(1), wardenCpuSeconds: two.cpu, instancesPerWardenCpuSecond: +perCpuSecond(two).toFixed(1) },
      throughputTwoOverOne: +(rate(two) / rate(one)).toFixed(2),
      kill: {
        killedAfterAnswers: kill.killedAfter, requests: kill.requests.length, firstAttemptFailures: firstFailures,
        firstAttemptStatuses: kill.answers.filter((a) => ![200, 202, 409].includes(a[0].status)).map((a) => a[0].status),
        retriesNeeded: kill.answers.reduce((n, a) => n + a.length - 1, 0),
        firstAttemptFailedThenStored: outcomes(kill).filter((o) => ![200, 202, 409].includes(o.firstStatus) && o.end === 'stored').length,
        // decisions of those instances in the database: more than one each when the killed replica recorded (and maybe
        // forwarded) them before it died: at-least-once delivery, which Orthanc's SOP Instance UID deduplicates
        decisionsOfFailedFirstAttempts: (await db.query('SELECT count(*)::int AS n FROM decisions WHERE sop_hash = ANY($1)',
          [outcomes(kill).filter((o) => ![200, 202, 409].includes(o.firstStatus)).map((o) => hashUid(o.inst.sop))])).rows[0].n,
      },
      verdicts: Object.fromEntries(phases.map((p) => [p.name, outcomes(p).reduce((m, o) => ({ ...m, [o.end]: (m[o.end] ?? 0) + 1 }), {} as Record<string, number>)])),
      peakRssMb: Object.fromEntries(replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null).map((r) => [r.name, +peakRssMb(r.child.pid!).toFixed(0)])),
      loadAverage: os.loadavg().map((x) => +x.toFixed(2)),
    };
    fs.mkdirSync(path.join(ROOT, 'test-artifacts'), { recursive: true });
    fs.writeFileSync(path.join(ROOT, 'test-artifacts', 'multi-replica.json'), `${JSON.stringify(summary, null, 2)}\n`);
    console.log(`multi-replica: ${JSON.stringify(summary)}`);
  });
});

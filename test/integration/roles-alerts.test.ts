/**
 * Roles and alerts. Every route answers 401 without credentials and 403 with a token of another role (a table over
 * the route list; health probes excepted). Security events go out as JSON lines and to a webhook, signed with
 * HMAC-SHA-256, retried with backoff, and dead-lettered in the audit store when they cannot be delivered.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { createHmac } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { startSink } from '../helpers/sink-upstream';
import { FakeScanner } from '../helpers/fake-scanner';
import { stow } from '../helpers/stow';
import { startServer, type RunningServer } from '../../src/proxy/server';
import { validateConfig, type WardenConfigInput } from '../../src/config';
import { createLogger } from '../../src/core/logger';
import { readHeader } from '../../src/dicom';

jest.setTimeout(120000);

const CORPUS = path.join(__dirname, '..', '..', '..', 'shared', 'corpus', 'dicom', 'pydicom', 'dicomdirtests', '98892003');
const files = ['MR2/4981', 'MR2/5011'].map((p) => fs.readFileSync(path.join(CORPUS, p)));
const uid = (b: Buffer): string => readHeader(b)!.sopInstanceUid!;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-roles-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const TOKENS = { sender: 'sender-token-aaaaaaaaaaaa', reviewer: 'reviewer-token-bbbbbbbbbb', admin: 'admin-token-cccccccccccc', metrics: 'metrics-token-dddddddddd' };
type Role = keyof typeof TOKENS;
const auth = { tokens: (Object.keys(TOKENS) as Role[]).map((r) => ({ name: `${r}-holder`, roles: [r], token: TOKENS[r] })) };

async function gateway(extra: Partial<WardenConfigInput>, scanner: FakeScanner, events: NodeJS.WritableStream | null = null) {
  const sink = await startSink();
  const config = validateConfig({
    upstream: { url: sink.url }, server: { port: 0, host: '127.0.0.1', stateDir: path.join(tmp, `state-${Date.now()}-${Math.random()}`) }, auth, ...extra,
  });
  const w = await startServer(config, { scanner, logger: createLogger('silent'), eventStream: events });
  return { w, sink, async close() { await w.close(); await sink.close(); } };
}

describe('roles: every route needs its own role', () => {
  let g: Awaited<ReturnType<typeof gateway>>;
  beforeAll(async () => { g = await gateway({}, new FakeScanner()); });
  afterAll(async () => { await g?.close(); });

  const routes: Array<{ method: string; path: string; role: Role }> = [
    { method: 'POST', path: '/dicom-web/studies', role: 'sender' },
    { method: 'GET', path: '/dicom-web/studies', role: 'sender' },
    { method: 'GET', path: '/dicom-web/studies/1.2.3/series', role: 'sender' },
    { method: 'GET', path: '/metrics', role: 'metrics' },
    { method: 'GET', path: '/ui/', role: 'reviewer' },
    { method: 'GET', path: '/ui/api/instances', role: 'reviewer' },
    { method: 'POST', path: '/ui/api/instances/none/release', role: 'reviewer' },
    { method: 'POST', path: '/admin/reload', role: 'admin' },
  ];
  const call = (r: { method: string; path: string }, token?: string) => fetch(`${g.w.url}${r.path}`, {
    method: r.method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': r.path.startsWith('/dicom-web') && r.method === 'POST' ? 'multipart/related; type="application/dicom"; boundary=x' : 'application/json' },
    body: r.method === 'POST' ? (r.path.startsWith('/dicom-web') ? '--x--\r\n' : '{}') : undefined,
  });

  it.each(routes)('$method $path: 401 without credentials, 403 with every other role, admitted with $role', async (r) => {
    const none = await call(r);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/Bearer realm=/);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED');
    for (const other of (Object.keys(TOKENS) as Role[]).filter((x) => x !== r.role)) {
      const res = await call(r, TOKENS[other]);
      expect({ route: r.path, as: other, status: res.status }).toEqual({ route: r.path, as: other, status: 403 });
    }
    expect([401, 403]).not.toContain((await call(r, TOKENS[r.role])).status);
    expect((await call(r, 'not-a-token-at-all-0000')).status).toBe(401);
  });

  it('leaves the health probes open and takes the browser\'s Basic credentials on the review page', async () => {
    expect((await fetch(`${g.w.url}/healthz`)).status).toBe(200);
    expect([200, 503]).toContain((await fetch(`${g.w.url}/readyz`)).status);
    const basic = Buffer.from(`anyone:${TOKENS.reviewer}`).toString('base64');
    expect((await fetch(`${g.w.url}/ui/`, { headers: { authorization: `Basic ${basic}` } })).status).toBe(200);
    expect((await fetch(`${g.w.url}/ui/`)).headers.get('www-authenticate')).toMatch(/Basic realm=/);
  });

  it('keeps reviewer and admin routes closed when nobody holds those roles, sender and metrics open', async () => {
    const open = await gateway({ auth: { tokens: [] } }, new FakeScanner());
    try {
      expect((await fetch(`${open.w.url}/ui/`)).status).toBe(401);
      expect((await fetch(`${open.w.url}/admin/reload`, { method: 'POST' })).status).toBe(401);
      expect((await fetch(`${open.w.url}/metrics`)).status).toBe(200);
      expect((await stow(`${open.w.url}/dicom-web/studies`, [files[0]])).status).toBe(200);
    } finally {
      await open.close();
    }
  });
});

describe('alerts', () => {
  const SECRET = 'webhook-secret-0123456789';

  /** A webhook receiver: checks the signature, answers 500 to the first `failFirst` deliveries. */
  async function receiver(failFirst = 0) {
    const got: Array<{ event: Record<string, unknown>; signed: boolean }> = [];
    let calls = 0;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        calls++;
        if (calls <= failFirst) { res.writeHead(500).end(); return; }
        const body = Buffer.concat(chunks).toString('utf8');
        const expected = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
        got.push({ event: JSON.parse(body), signed: req.headers['x-warden-signature'] === expected });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, calls: () => calls, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  const waitFor = async (cond: () => boolean, ms = 10000) => { const end = Date.now() + ms; while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50)); return cond(); };

  it('sends a signed block event to the webhook after retrying failed deliveries, and the same events as JSON lines', async () => {
    const hook = await receiver(2);
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (d: Buffer) => lines.push(...d.toString('utf8').split('\n').filter(Boolean)));
    const g = await gateway({ alerts: { webhook: { url: hook.url, secret: SECRET, retries: 3, backoffMs: 50 } } }, new FakeScanner({ [uid(files[0])]: 'block', [uid(files[1])]: 'flag' }), stream);
    try {
      const res = await stow(`${g.w.url}/dicom-web/studies`, files, { authorization: `Bearer ${TOKENS.sender}` });
      expect(res.status).toBe(202);
      await fetch(`${g.w.url}/metrics`); // an auth failure
      expect(await waitFor(() => hook.got.length >= 2)).toBe(true);
      const block = hook.got.find((x) => x.event.type === 'block')!;
      expect(block.signed).toBe(true);
      expect(block.event).toMatchObject({ stream: 'warden-security', schema: 1, type: 'block', route: 'stow', client: 'sender-holder', verdict: 'block', quarantined: true, signals: ['adversarial'], detectors: ['uad'] });
      expect(block.event.sopHash).toMatch(/^[0-9a-f]{16}$/);
      expect(hook.got.find((x) => x.event.type === 'auth_failure')?.event).toMatchObject({ route: 'metrics', status: 401 });
      expect(hook.calls()).toBeGreaterThanOrEqual(hook.got.length + 2); // the two failed deliveries were retried
      // flags are not webhook events by default, but they are JSON lines for the SIEM
      const types = lines.map((l) => JSON.parse(l).type);
      expect(types).toEqual(expect.arrayContaining(['block', 'flag', 'auth_failure']));
      for (const text of [...lines, ...hook.got.map((x) => JSON.stringify(x.event))]) for (const f of files) expect(text).not.toContain(uid(f));
    } finally {
      await g.close();
      await hook.close();
    }
  });

  it('dead-letters an event it cannot deliver, in the audit store', async () => {
    const dead = await receiver(1000);
    const g = await gateway({ alerts: { events: false, webhook: { url: dead.url, secret: SECRET, retries: 1, backoffMs: 20 } } }, new FakeScanner({ [uid(files[0])]: 'block' }));
    try {
      expect((await stow(`${g.w.url}/dicom-web/studies`, [files[0]], { authorization: `Bearer ${TOKENS.sender}` })).status).toBe(409);
      const audit = g.w.deps.trail!.audit;
      expect(await waitFor(() => dead.calls() >= 2)).toBe(true);
      let letters = await audit.listDeadLetters();
      const deadline = Date.now() + 5000;
      while (letters.total === 0 && Date.now() < deadline) { await new Promise((r) => setTimeout(r, 50)); letters = await audit.listDeadLetters(); }
      expect(letters.items[0]).toMatchObject({ channel: 'webhook', eventType: 'block', attempts: 2, lastStatus: 500 });
      expect(letters.items[0].target).toBe(dead.url);
    } finally {
      await g.close();
      await dead.close();
    }
  });
});

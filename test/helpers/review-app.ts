import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import express from 'express';
import { openSqliteAuditStore, type AuditRecord, type KyselyAuditStore } from '../../src/audit';
import { Quarantine, type ForwardFn } from '../../src/quarantine';
import { createReviewRouter } from '../../src/review';
import { labInstances, recordInput, type FixtureInstance } from './trail-fixtures';

/**
 * The review router mounted at /ui in a tiny Express app on 127.0.0.1, over a real SQLite trail and a real
 * quarantine folder, seeded with lab fixtures: 3 blocked (quarantined), 1 flagged, 4 forwarded. The upstream
 * is a fake `forward` that records the sha256 of what it was given.
 */
export interface ReviewApp {
  url: string;
  dir: string;
  store: KyselyAuditStore;
  quarantine: Quarantine;
  forwarded: { id: string; sha256: string }[];
  blocked: { id: string; inst: FixtureInstance }[];
  all: { id: string; inst: FixtureInstance }[];
  close(): Promise<void>;
}

/** Deterministic stand-in for a detector's sorted clean calibration scores. */
export function syntheticCalibration(detector: string, n = 400): number[] {
  let seed = [...detector].reduce((s, c) => s * 31 + c.charCodeAt(0), 7) >>> 0;
  const rand = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(-Math.log(1 - rand()) + -Math.log(1 - rand())); // gamma(2, 1)
  return out.sort((a, b) => a - b);
}

export async function startReviewApp(options: { instances?: { blocked: FixtureInstance[]; flagged: FixtureInstance[]; forwarded: FixtureInstance[] } } = {}): Promise<ReviewApp> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-review-'));
  const store = openSqliteAuditStore(path.join(dir, 'trail.sqlite'));
  await store.migrate();
  const quarantine = new Quarantine({ dir: path.join(dir, 'quarantine'), audit: store });
  const adversarial = labInstances('adversarial', 3);
  const sets = options.instances ?? { blocked: adversarial, flagged: labInstances('benign', 1), forwarded: labInstances('clean', 4) };
  const t0 = Date.UTC(2026, 10, 20, 9, 0, 0);
  const all: { id: string; inst: FixtureInstance }[] = [];
  const blocked: { id: string; inst: FixtureInstance }[] = [];
  let i = 0;
  for (const [verdict, list] of [['forward', sets.forwarded], ['flag', sets.flagged], ['block', sets.blocked]] as const) {
    for (const inst of list) {
      if (verdict === 'block') await quarantine.put(inst.bytes);
      const id = await store.recordDecision(recordInput(inst, verdict, t0 + (i++) * 60_000, { requestId: `req-${i}` }));
      all.push({ id, inst });
      if (verdict === 'block') blocked.push({ id, inst });
    }
  }
  const forwarded: { id: string; sha256: string }[] = [];
  const forward: ForwardFn = async (bytes: Buffer, rec: AuditRecord) => {
    forwarded.push({ id: rec.id, sha256: createHash('sha256').update(bytes).digest('hex') });
    await new Promise((r) => setTimeout(r, 20));
    return { ok: true, upstreamStatus: 200 };
  };
  const app = express();
  app.use('/ui', createReviewRouter({
    audit: store,
    quarantine,
    forward,
    actor: (req) => String(req.get('x-test-reviewer') ?? 'reviewer-1'),
    calibration: (detector) => (detector === 'nrd' ? null : syntheticCalibration(detector)),
  }));
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`, dir, store, quarantine, forwarded, blocked, all,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

import type { Command } from 'commander';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { WardenError } from '../core/errors';
import { TAG, readHeader } from '../dicom';

/**
 * `warden send <files|folders…> --url …`: STOW-RS with dicomweb-client (XMLHttpRequest from xhr2 in Node),
 * one request per StudyInstanceUID, then one line per instance with the outcome the gateway answered.
 */

interface SendOptions { url: string; token?: string; json?: boolean; strict?: boolean }

export interface InstanceOutcome {
  file: string;
  study: string;
  httpStatus: number;
  outcome: 'stored' | 'flagged' | 'failed' | 'unknown';
  failureReason?: string;
  reason?: string;
}

function listFiles(inputs: string[]): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    const st = fs.statSync(p);
    if (st.isDirectory()) for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    else if (st.isFile() && !/\.(md|csv|txt|json|ya?ml)$/i.test(p)) out.push(p);
  };
  for (const i of inputs) {
    if (!fs.existsSync(i)) throw new WardenError('USAGE', `No such file or folder: ${i}`);
    walk(i);
  }
  return out;
}

type Item = Record<string, { Value?: unknown[] }>;

export async function sendFiles(inputs: string[], opts: SendOptions): Promise<InstanceOutcome[]> {
  // dicomweb-client speaks XMLHttpRequest; Node has none.
  (globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest ??= require('xhr2');
  const { api } = require('dicomweb-client') as { api: { DICOMwebClient: new (o: object) => { storeInstances(o: object): Promise<unknown> } } };
  const byStudy = new Map<string, Array<{ file: string; bytes: Buffer; sop?: string }>>();
  const outcomes: InstanceOutcome[] = [];
  for (const file of listFiles(inputs)) {
    const bytes = fs.readFileSync(file);
    const id = readHeader(bytes);
    if (!id) { outcomes.push({ file, study: '', httpStatus: 0, outcome: 'failed', reason: 'not a DICOM Part-10 file (not sent)' }); continue; }
    const key = id.studyInstanceUid ?? '';
    if (!byStudy.has(key)) byStudy.set(key, []);
    byStudy.get(key)!.push({ file, bytes, sop: id.sopInstanceUid });
  }
  const client = new api.DICOMwebClient({ url: opts.url.replace(/\/+$/, ''), verbose: false, headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {} });
  for (const [study, items] of byStudy) {
    const datasets = items.map((i) => i.bytes.buffer.slice(i.bytes.byteOffset, i.bytes.byteOffset + i.bytes.byteLength));
    let status = 200;
    let text = '';
    try {
      const res = await client.storeInstances({ datasets, ...(study ? { studyInstanceUID: study } : {}) });
      text = typeof res === 'string' ? res : res instanceof ArrayBuffer ? Buffer.from(res).toString('utf8') : JSON.stringify(res ?? '');
      status = 200; // dicomweb-client resolves 200 and 202 alike: told apart below from the body
    } catch (err) {
      const e = err as { status?: number; response?: unknown; message?: string };
      status = e.status ?? 0;
      text = typeof e.response === 'string' ? e.response : e.response instanceof ArrayBuffer ? Buffer.from(e.response).toString('utf8') : '';
      if (!status) throw new WardenError('UPSTREAM_UNAVAILABLE', `Could not reach ${opts.url}: ${e.message ?? String(err)}`);
    }
    let body: Record<string, { Value?: Item[] }> = {};
    try { const j = JSON.parse(text); body = Array.isArray(j) ? j[0] ?? {} : j; } catch { /* not JSON */ }
    // Warden numbers each item by its part (0009,1003); other servers are matched by SOP Instance UID.
    const keyOf = (it: Item): string => {
      const part = it[TAG.WardenPartNumber]?.Value?.[0];
      return part !== undefined ? `#${String(part)}` : String(it[TAG.ReferencedSOPInstanceUID]?.Value?.[0]);
    };
    const referenced = new Map((body[TAG.ReferencedSOPSequence]?.Value ?? []).map((it) => [keyOf(it), it]));
    const failed = new Map((body[TAG.FailedSOPSequence]?.Value ?? []).map((it) => [keyOf(it), it]));
    if (status === 200 && failed.size > 0) status = 202;
    items.forEach((i, n) => {
      const ref = referenced.get(`#${n + 1}`) ?? (i.sop ? referenced.get(i.sop) : undefined);
      const fail = failed.get(`#${n + 1}`) ?? (i.sop ? failed.get(i.sop) : undefined);
      const reasonText = (it?: Item): string | undefined => (it?.[TAG.WardenReason]?.Value?.[0] as string | undefined);
      if (ref) {
        const flagged = ref[TAG.WardenVerdict]?.Value?.[0] === 'FLAG';
        outcomes.push({ file: i.file, study, httpStatus: status, outcome: flagged ? 'flagged' : 'stored', reason: reasonText(ref) });
      } else if (fail) {
        const code = Number(fail[TAG.FailureReason]?.Value?.[0]);
        outcomes.push({ file: i.file, study, httpStatus: status, outcome: 'failed', failureReason: `0x${code.toString(16).toUpperCase().padStart(4, '0')}`, reason: reasonText(fail) });
      } else {
        outcomes.push({ file: i.file, study, httpStatus: status, outcome: status === 200 ? 'stored' : 'unknown', reason: status === 200 ? undefined : `HTTP ${status}: ${text.slice(0, 200)}` });
      }
    });
  }
  return outcomes;
}

export function register(program: Command): void {
  program
    .command('send')
    .description('Send DICOM files (grouped by study) over STOW-RS and print each instance\'s outcome')
    .argument('<paths...>', 'DICOM files or folders (walked recursively)')
    .requiredOption('-u, --url <url>', 'DICOMweb base URL, e.g. http://127.0.0.1:8080/dicom-web')
    .option('-t, --token <token>', 'bearer token for the DICOMweb routes')
    .option('--json', 'print one JSON record per instance')
    .option('--strict', 'exit 3 when any instance was not stored')
    .action(async (paths: string[], opts: SendOptions) => {
      const outcomes = await sendFiles(paths, opts);
      for (const o of outcomes) {
        if (opts.json) console.log(JSON.stringify(o));
        else console.log(`${o.outcome.toUpperCase().padEnd(8)} ${String(o.httpStatus).padEnd(4)} ${o.failureReason ?? ''.padEnd(6)} ${o.file}${o.reason && o.outcome !== 'stored' ? `  — ${o.reason}` : ''}`);
      }
      const count = (k: InstanceOutcome['outcome']): number => outcomes.filter((o) => o.outcome === k).length;
      if (!opts.json) console.log(`${outcomes.length} instances: ${count('stored')} stored, ${count('flagged')} flagged (stored), ${count('failed')} failed${count('unknown') ? `, ${count('unknown')} unknown` : ''}`);
      if (opts.strict && outcomes.some((o) => o.outcome === 'failed' || o.outcome === 'unknown')) process.exitCode = 3;
    });
}

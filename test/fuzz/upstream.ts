import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import dcmjs from 'dcmjs';
import { readHeader } from '../../src/dicom';
import { multipartParts } from '../helpers/orthanc-client';

/**
 * The gateway target's upstream: an in-process DICOMweb server that records what reached it (every request's method
 * and path; for STOW-RS each part's sha256 and SOP Instance UID) and answers as the case asks — a normal PS3.18
 * answer, one listing only some instances, an error status, a body that is not JSON, a hang-up or a stall — and
 * serves WADO-RS retrieves (multipart/related of seed instances) and QIDO-RS searches.
 */
// the upstream reads headers of mutated parts: dcmjs' complaints about them are noise here
dcmjs.log.setLevel('silent');

export type StowBehaviour = 'normal' | 'partial' | 'failedList' | 'status500' | 'status503' | 'notJson' | 'hangUp' | 'stall';

export interface ReceivedPart { sha256: string; sopInstanceUid?: string }
export interface UpstreamRecord {
  method: string;
  url: string;
  parts: ReceivedPart[];
  /** SOP Instance UIDs this upstream's answer listed as stored. */
  listedStored: string[];
}

export interface FuzzUpstream {
  url: string;
  records: UpstreamRecord[];
  /** How the next STOW-RS requests are answered. */
  behaviour: StowBehaviour;
  /** The instances WADO-RS retrieves return (raw multipart bodies may replace them: `wadoBody`). */
  wadoInstances: Buffer[];
  wadoBody: { contentType: string; body: Buffer } | null;
  close(): Promise<void>;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function startFuzzUpstream(): Promise<FuzzUpstream> {
  const state: Omit<FuzzUpstream, 'url' | 'close'> = { records: [], behaviour: 'normal', wadoInstances: [], wadoBody: null };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => { /* the gateway gave up on this request */ });
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const record: UpstreamRecord = { method: req.method ?? '', url: req.url ?? '', parts: [], listedStored: [] };
      state.records.push(record);
      if (req.method === 'POST') {
        const parts = req.headers['content-type'] ? multipartParts(body, req.headers['content-type']) : [];
        record.parts = parts.map((p) => ({ sha256: sha256(p), sopInstanceUid: readHeader(p)?.sopInstanceUid }));
        answerStow(state.behaviour, record, parts, res);
        return;
      }
      answerGet(state, req.url ?? '', res);
    });
  });
  server.keepAliveTimeout = 500;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/dicom-web`,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  });
}

function item(p: Buffer): Record<string, unknown> {
  const h = readHeader(p);
  return { '00081150': { vr: 'UI', Value: [h?.sopClassUid ?? ''] }, '00081155': { vr: 'UI', Value: [h?.sopInstanceUid ?? ''] } };
}

function answerStow(behaviour: StowBehaviour, record: UpstreamRecord, parts: Buffer[], res: http.ServerResponse): void {
  switch (behaviour) {
    case 'stall': return; // never answers: the gateway's upstream timeout decides
    case 'hangUp': res.socket?.destroy(); return;
    case 'status500': res.writeHead(500, { 'content-type': 'text/plain' }).end('boom'); return;
    case 'status503': res.writeHead(503, { 'retry-after': '3' }).end(); return;
    case 'notJson': res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('<html>ok</html>'); return;
    default: break;
  }
  const listed = behaviour === 'partial' ? parts.slice(0, Math.ceil(parts.length / 2)) : behaviour === 'failedList' ? [] : parts;
  const failed = behaviour === 'failedList' ? parts : [];
  record.listedStored = listed.map((p) => readHeader(p)?.sopInstanceUid ?? '').filter(Boolean);
  const body: Record<string, unknown> = {};
  if (listed.length) body['00081199'] = { vr: 'SQ', Value: listed.map(item) };
  if (failed.length) body['00081198'] = { vr: 'SQ', Value: failed.map((p) => ({ ...item(p), '00081197': { vr: 'US', Value: [0xa700] } })) };
  res.writeHead(failed.length && !listed.length ? 409 : 200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(body));
}

function answerGet(state: Omit<FuzzUpstream, 'url' | 'close'>, url: string, res: http.ServerResponse): void {
  const path = url.split('?')[0];
  if (/\/(studies|series|instances)\/?$/.test(path)) {
    // QIDO-RS: one result, with a Retrieve URL under this upstream's base (Warden rewrites it)
    const json = [{ '0020000D': { vr: 'UI', Value: ['1.2.3'] }, '00081190': { vr: 'UR', Value: [`http://127.0.0.1/dicom-web/studies/1.2.3`] } }];
    res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(json));
    return;
  }
  if (/\/studies\/[^/]+(\/series\/[^/]+(\/instances\/[^/]+)?)?\/?$/.test(path)) {
    if (state.wadoBody) {
      res.writeHead(200, { 'content-type': state.wadoBody.contentType, 'content-length': state.wadoBody.body.length }).end(state.wadoBody.body);
      return;
    }
    const boundary = 'fuzz-wado-boundary';
    const body = Buffer.concat([
      ...state.wadoInstances.flatMap((p) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), p, Buffer.from('\r\n')]),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    res.writeHead(200, { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, 'content-length': body.length }).end(body);
    return;
  }
  if (/\/metadata\/?$/.test(path)) {
    res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('[]');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
}

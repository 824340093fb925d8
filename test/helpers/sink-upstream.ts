import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { multipartParts } from './orthanc-client';
import { readHeader } from '../../src/dicom';

/**
 * A tiny in-process STOW-RS upstream. mode 'record' keeps each request (headers + parts) and answers PS3.18
 * JSON referencing every part; mode 'count' streams the body away (bytes + sha256 only) and answers 200 {} —
 * for the memory benchmark. `status` forces an answer (e.g. 503). `behaviour`: 'partial' answers 200 but lists
 * only the first part as stored; 'stall' reads the request and never answers.
 */
export interface SinkRequest { method: string; url: string; headers: http.IncomingHttpHeaders; parts: Buffer[]; bytes: number; sha256: string }

export async function startSink(mode: 'record' | 'count' = 'record'): Promise<{ url: string; requests: SinkRequest[]; status?: number; behaviour: 'normal' | 'partial' | 'stall'; close(): Promise<void> }> {
  const requests: SinkRequest[] = [];
  const state: { status?: number; behaviour: 'normal' | 'partial' | 'stall' } = { behaviour: 'normal' };
  const server = http.createServer((req, res) => {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (c: Buffer) => { bytes += c.length; hash.update(c); if (mode === 'record') chunks.push(c); });
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const parts = mode === 'record' && req.headers['content-type'] ? multipartParts(body, req.headers['content-type']) : [];
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, parts, bytes, sha256: hash.digest('hex') });
      if (state.behaviour === 'stall') return;
      if (state.status) { res.writeHead(state.status, { 'retry-after': '7' }).end(); return; }
      if (req.method !== 'POST') { res.writeHead(200, { 'content-type': 'application/dicom+json' }).end('[]'); return; }
      const listed = state.behaviour === 'partial' ? parts.slice(0, 1) : parts;
      const items = listed.map((p) => { const id = readHeader(p); return { '00081150': { vr: 'UI', Value: [id?.sopClassUid] }, '00081155': { vr: 'UI', Value: [id?.sopInstanceUid] } }; });
      res.writeHead(200, { 'content-type': 'application/dicom+json' }).end(JSON.stringify(items.length ? { '00081199': { vr: 'SQ', Value: items } } : {}));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/dicom-web`,
    requests,
    get status() { return state.status; },
    set status(s: number | undefined) { state.status = s; },
    get behaviour() { return state.behaviour; },
    set behaviour(b: 'normal' | 'partial' | 'stall') { state.behaviour = b; },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

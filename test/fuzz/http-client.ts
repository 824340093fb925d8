import * as net from 'node:net';

/**
 * A raw HTTP/1.1 client on one socket, for requests no ordinary client would send: the fuzzer writes the request
 * head and body exactly as given (lying lengths, broken chunking, conflicting framing), in the chunks and with the
 * pauses given, may abort after a byte count, and reads back the answer (Content-Length, chunked or to close).
 */
export interface RawRequest {
  port: number;
  /** Request line and headers, CRLF-terminated, blank line included. */
  head: Buffer;
  /** The body as it goes on the wire (already chunk-encoded when the head says so). */
  body: Buffer;
  /** Write in pieces of this size (0 = all at once), pausing `gapMs` between them. */
  pieceBytes?: number;
  gapMs?: number;
  /** Stop writing after this many bytes of head + body and destroy the socket (a client that goes away). */
  abortAfter?: number;
  /** Stop writing after this many bytes, wait `stallMs`, then go on (a stalled client). */
  stallAfter?: number;
  stallMs?: number;
  /** Half-close the socket after the last byte is written. */
  endAfterWrite?: boolean;
  /** Give up waiting for an answer after this long. */
  deadlineMs: number;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  /** Header names in order, lower-cased, repeats kept. */
  headerNames: string[];
  body: Buffer;
}

export interface RawResult {
  response?: RawResponse;
  /** Bytes that came back but do not parse as an HTTP response. */
  garbage?: string;
  aborted: boolean;
  timedOut: boolean;
  /** The server closed without a whole answer. */
  closedEarly: boolean;
  written: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Parses one HTTP/1.1 response from `buf`; null while incomplete (unless `atEnd`: then to-close bodies end). */
export function parseResponse(buf: Buffer, atEnd: boolean, head = false): RawResponse | 'garbage' | null {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return atEnd && buf.length > 0 ? 'garbage' : null;
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]);
  if (!m) return 'garbage';
  const status = Number(m[1]);
  const headers: Record<string, string> = {};
  const headerNames: string[] = [];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) return 'garbage';
    const name = line.slice(0, i).trim().toLowerCase();
    headerNames.push(name);
    const value = line.slice(i + 1).trim();
    headers[name] = headers[name] !== undefined ? `${headers[name]}, ${value}` : value;
  }
  if (status === 100) {
    // an interim answer: the real one follows
    const rest = parseResponse(buf.subarray(headEnd + 4), atEnd, head);
    return rest;
  }
  const start = headEnd + 4;
  if (status === 204 || status === 304 || head) return { status, headers, headerNames, body: Buffer.alloc(0) };
  if (headers['transfer-encoding']?.toLowerCase().includes('chunked')) {
    const chunks: Buffer[] = [];
    let p = start;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', p);
      if (lineEnd < 0) return atEnd ? 'garbage' : null;
      const size = parseInt(buf.subarray(p, lineEnd).toString('latin1').split(';')[0], 16);
      if (!Number.isFinite(size)) return 'garbage';
      if (size === 0) {
        const trailerEnd = buf.indexOf('\r\n\r\n', lineEnd);
        if (trailerEnd < 0 && buf.indexOf('\r\n', lineEnd + 2) !== lineEnd + 2) return atEnd ? 'garbage' : null;
        return { status, headers, headerNames, body: Buffer.concat(chunks) };
      }
      if (lineEnd + 2 + size + 2 > buf.length) return atEnd ? 'garbage' : null;
      chunks.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      p = lineEnd + 2 + size + 2;
    }
  }
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (!Number.isInteger(n) || n < 0) return 'garbage';
    if (buf.length - start < n) return atEnd ? 'garbage' : null;
    return { status, headers, headerNames, body: buf.subarray(start, start + n) };
  }
  return atEnd ? { status, headers, headerNames, body: buf.subarray(start) } : null;
}

export function sendRaw(req: RawRequest): Promise<RawResult> {
  return new Promise((resolve) => {
    const sock = net.connect(req.port, '127.0.0.1');
    sock.setNoDelay(true);
    const received: Buffer[] = [];
    let receivedBytes = 0;
    let written = 0;
    let finished = false;
    let aborted = false;
    const finish = (result: Omit<RawResult, 'written' | 'aborted'>): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...result, aborted, written });
    };
    const timer = setTimeout(() => finish({ timedOut: true, closedEarly: false }), req.deadlineMs);
    const tryParse = (atEnd: boolean): void => {
      const all = Buffer.concat(received, receivedBytes);
      const r = parseResponse(all, atEnd, req.head.subarray(0, 5).toString('latin1') === 'HEAD ');
      if (r === 'garbage') finish({ garbage: all.subarray(0, 200).toString('latin1'), timedOut: false, closedEarly: false });
      else if (r) finish({ response: r, timedOut: false, closedEarly: false });
      else if (atEnd) finish({ timedOut: false, closedEarly: true });
    };
    sock.on('data', (d: Buffer) => { received.push(d); receivedBytes += d.length; tryParse(false); });
    sock.on('end', () => tryParse(true));
    sock.on('close', () => tryParse(true));
    sock.on('error', () => { /* a reset: 'close' follows */ });

    void (async () => {
      await new Promise<void>((r) => { if (sock.connecting) sock.once('connect', () => r()); else r(); });
      const wire = Buffer.concat([req.head, req.body]);
      const piece = req.pieceBytes && req.pieceBytes > 0 ? req.pieceBytes : wire.length || 1;
      let stalled = false;
      for (let off = 0; off < wire.length && !finished;) {
        let end = Math.min(wire.length, off + piece);
        if (req.abortAfter !== undefined && end > req.abortAfter) end = Math.max(off, req.abortAfter);
        if (req.stallAfter !== undefined && !stalled && end > req.stallAfter) end = Math.max(off, req.stallAfter);
        if (end > off) {
          const ok = sock.write(wire.subarray(off, end));
          written += end - off;
          off = end;
          if (!ok) await new Promise<void>((r) => { sock.once('drain', () => r()); sock.once('close', () => r()); });
        }
        if (req.abortAfter !== undefined && off >= req.abortAfter) {
          await sleep(5);
          aborted = true;
          finish({ timedOut: false, closedEarly: false });
          return;
        }
        if (req.stallAfter !== undefined && !stalled && off >= req.stallAfter) {
          stalled = true;
          await sleep(req.stallMs ?? 0);
          continue;
        }
        if (req.gapMs && off < wire.length) await sleep(req.gapMs);
      }
      if (req.endAfterWrite && !finished) sock.end();
    })().catch(() => finish({ timedOut: false, closedEarly: true }));
  });
}

import { Transform, type Readable, type TransformCallback } from 'node:stream';
import Dicer from '@fastify/busboy/deps/dicer/lib/Dicer.js';
import { WardenError } from '../core/errors';
import { MemoryBudget, StoredPart, type SpoolOptions } from './spool';

/**
 * Streaming multipart/related ingest (PS3.18 STOW-RS request bodies). The parser is the Dicer bundled in
 * @fastify/busboy; this file adds the limits, the spooling of each part's original bytes and backpressure:
 * a part whose temp-file write is pending pauses the parser, which stops reading the socket.
 */

export interface MediaType {
  /** Lower-cased `type/subtype`. */
  mediaType: string;
  /** Parameters, names lower-cased, quotes removed. */
  params: Record<string, string>;
}

/** Parses a Content-Type header (RFC 9110 §8.3, quoted-string parameters included). */
export function parseMediaType(header: string | undefined): MediaType | null {
  if (!header) return null;
  const m = /^\s*([^\s;/]+\/[^\s;]+)\s*(.*)$/s.exec(header);
  if (!m) return null;
  const params: Record<string, string> = {};
  const re = /;\s*([^\s=;]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]*))/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2])) !== null) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  }
  return { mediaType: m[1].toLowerCase(), params };
}

export interface IngestedPart {
  index: number;
  /** Part headers, names lower-cased, first value of each. */
  headers: Record<string, string>;
  stored: StoredPart;
}

export interface IngestOptions {
  boundary: string;
  maxBodyBytes: number;
  spool: SpoolOptions;
  budget: MemoryBudget;
  /** The body may pause at most this long between two chunks (a stalled sender must not hold its slot). 0 = no limit. */
  idleTimeoutMs?: number;
  /** Called once per part when its last byte is stored (the part may then be scanned). */
  onPart: (part: IngestedPart) => void;
  /** Called for every part as soon as it starts, so the caller can dispose of it whatever happens. */
  onCreate?: (stored: StoredPart) => void;
}

export interface IngestResult {
  parts: IngestedPart[];
  bodyBytes: number;
}

/** RFC 2046 §5.1.1: 1 to 70 characters from bchars, not ending in a space. */
const BOUNDARY_RE = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

export function isValidBoundary(boundary: string): boolean {
  return BOUNDARY_RE.test(boundary);
}

class ByteLimit extends Transform {
  bytes = 0;
  constructor(private readonly limit: number) { super(); }
  _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      cb(new WardenError('BODY_TOO_LARGE', `The request body exceeds limits.maxBodyBytes (${this.limit} bytes).`));
      return;
    }
    cb(null, chunk);
  }
}

/**
 * Reads the whole body, storing each part. Always settles, whatever the sender does: a body cut mid-part, a body over
 * the limit, a stalled body or a malformed one rejects once every part started so far has settled (the caller
 * disposes of them through `onCreate`). Rejects with MULTIPART_MALFORMED, BODY_TOO_LARGE or REQUEST_TIMEOUT; the
 * message never carries the parser's own words.
 */
export async function ingestMultipart(body: Readable, opts: IngestOptions): Promise<IngestResult> {
  if (!isValidBoundary(opts.boundary)) throw new WardenError('MULTIPART_MALFORMED', 'The multipart boundary is not a valid RFC 2046 boundary (1 to 70 characters).');
  const parts: IngestedPart[] = [];
  /** Per started part: its settlement, and how to settle it early when the body fails. */
  const open = new Map<number, () => void>();
  const pending: Promise<void>[] = [];
  const limit = new ByteLimit(opts.maxBodyBytes);
  const dicer = new Dicer({ boundary: opts.boundary, maxHeaderPairs: 100, maxHeaderSize: 16 * 1024 });
  let partError: Error | null = null;
  let failed = false;
  let counter = 0;

  dicer.on('part', (stream: Readable) => {
    const index = counter++;
    let headers: Record<string, string> = {};
    const stored = new StoredPart(opts.spool, opts.budget);
    opts.onCreate?.(stored);
    let writing: Promise<void> | null = null;
    pending.push(new Promise<void>((resolve) => {
      let settled = false;
      const settle = (): void => { if (!settled) { settled = true; open.delete(index); resolve(); } };
      open.set(index, settle);
      stream.on('header', (h: Record<string, string[]>) => {
        headers = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), String(v[0] ?? '')]));
      });
      stream.on('data', (chunk: Buffer) => {
        if (failed) return;
        const w = stored.write(chunk);
        if (w) {
          stream.pause();
          writing = w.then(() => { writing = null; if (!failed) stream.resume(); });
        }
      });
      stream.on('error', (err: Error) => { partError ??= err; });
      stream.on('end', () => {
        void (async () => {
          try {
            if (writing) await writing;
            await stored.finish();
          } catch (err) {
            partError ??= err as Error;
          }
          if (!failed && !settled) {
            const part = { index, headers, stored };
            parts.push(part);
            parts.sort((a, b) => a.index - b.index);
            if (!partError) opts.onPart(part);
          }
          settle();
        })();
      });
    }));
  });
  // Preamble and epilogue are legal and ignored.
  dicer.on('preamble', (s: Readable) => { s.on('error', () => { /* reported by the parser's own error */ }); s.resume(); });
  dicer.on('trailer', () => {});

  try {
    // Dicer emits its own 'finish' once the last part is consumed (not the Writable's): wait for that event
    // rather than stream.pipeline, which tracks the Writable state.
    await new Promise<void>((resolve, reject) => {
      let idle: NodeJS.Timeout | null = null;
      const done = (err?: Error): void => {
        if (failed) return;
        if (idle) clearTimeout(idle);
        body.off('data', touch);
        if (!err) { resolve(); return; }
        failed = true;
        body.unpipe(limit);
        limit.unpipe(dicer);
        reject(err);
      };
      const touch = (): void => {
        if (!opts.idleTimeoutMs) return;
        if (idle) clearTimeout(idle);
        idle = setTimeout(() => done(new WardenError('REQUEST_TIMEOUT', `The body stalled for more than ${opts.idleTimeoutMs} ms (limits.bodyIdleTimeoutMs).`)), opts.idleTimeoutMs);
        idle.unref();
      };
      touch();
      body.on('data', touch);
      // Done when the multipart has closed AND the HTTP body has ended by its own framing: a body whose closing
      // delimiter comes before the end its Content-Length announces is not complete (found by npm run fuzz: such a
      // request was forwarded and stored while Node answered the client 400 at its early end of stream).
      let multipartClosed = false;
      let bodyEnded = false;
      body.once('end', () => { bodyEnded = true; if (multipartClosed) done(); });
      dicer.on('finish', () => {
        multipartClosed = true;
        if (bodyEnded) { done(); return; }
        // the epilogue still flows through the byte limit (and the idle timer) until the body ends
        limit.unpipe(dicer);
        limit.on('data', () => { /* epilogue, ignored */ });
      });
      dicer.on('error', (err: Error) => done(err));
      limit.on('error', (err: Error) => done(err));
      body.on('error', (err: Error) => done(err));
      body.on('aborted', () => done(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
      body.on('close', () => { if (!(body as Readable & { complete?: boolean }).complete && !body.readableEnded) done(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })); });
      body.pipe(limit).pipe(dicer);
    });
  } catch (err) {
    // Parts cut off by the failure never end on their own: settle them so nothing waits for them.
    for (const settle of [...open.values()]) settle();
    await Promise.allSettled(pending);
    const code = (err as { code?: string }).code;
    if (code === 'BODY_TOO_LARGE' || code === 'REQUEST_TIMEOUT') throw err;
    if (code === 'ECONNRESET' || (err as Error).name === 'AbortError' || code === 'ERR_STREAM_PREMATURE_CLOSE') {
      throw new WardenError('MULTIPART_MALFORMED', 'The client closed the connection before the body ended.', { cause: err, detail: { aborted: true } });
    }
    throw new WardenError('MULTIPART_MALFORMED', 'The multipart/related body is malformed (its framing or part headers cannot be read).', { cause: err });
  }
  await Promise.all(pending);
  if (partError) {
    throw new WardenError('MULTIPART_MALFORMED', 'A part of the multipart/related body is malformed (it ends early or its headers cannot be read).', { cause: partError });
  }
  return { parts, bodyBytes: limit.bytes };
}

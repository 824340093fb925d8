import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

/**
 * Writes a multipart/related body of instances whose bytes are already stored (STOW-RS forward to the upstream,
 * scanned WADO-RS answer to the client): known Content-Length, parts streamed from memory or their temp files.
 */
export interface OutgoingPart {
  /** Part headers (name → value), already sanitised. */
  headers: Record<string, string>;
  size: number;
  stream(): Readable;
  /** Called once the part's bytes went out (frees memory or the temp file early). */
  done?(): Promise<void>;
}

export interface MultipartBody {
  contentType: string;
  length: number;
  body(): Readable;
}

const CRLF = '\r\n';

/** Header values that reach the wire: printable ASCII, bounded. */
export function sanitizeHeader(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

export function multipartBody(parts: OutgoingPart[], type = 'application/dicom'): MultipartBody {
  const boundary = `warden-${randomBytes(16).toString('hex')}`;
  const heads = parts.map((p) => Buffer.from(`--${boundary}${CRLF}${Object.entries(p.headers).map(([k, v]) => `${k}: ${v}${CRLF}`).join('')}${CRLF}`, 'latin1'));
  const sep = Buffer.from(CRLF, 'latin1');
  const tail = Buffer.from(`--${boundary}--${CRLF}`, 'latin1');
  const length = heads.reduce((n, h, i) => n + h.length + parts[i].size + sep.length, 0) + tail.length;
  async function* generate(): AsyncGenerator<Buffer> {
    for (let i = 0; i < parts.length; i++) {
      yield heads[i];
      for await (const chunk of parts[i].stream()) yield chunk as Buffer;
      yield sep;
      await parts[i].done?.();
    }
    yield tail;
  }
  return {
    contentType: `multipart/related; type="${type}"; boundary=${boundary}`,
    length,
    body: () => Readable.from(generate(), { objectMode: false }),
  };
}

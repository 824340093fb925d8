import type { Request, Response } from 'express';
import type { AppContext } from './context';
import { upstreamPath } from './paths';
import { Writable } from 'node:stream';
import { WardenError, isWardenError } from '../core/errors';
import { sendError } from './http-errors';
import { isQidoPath, publicBaseUrl, rewriteRetrieveUrls } from './urls';

/** QIDO-RS JSON bodies up to this size are buffered to rewrite their Retrieve URLs; larger ones stream as-is. */
const QIDO_REWRITE_MAX_BYTES = 16 * 1024 * 1024;

/**
 * QIDO-RS and WADO-RS pass-through: the request goes upstream with its headers (Accept with its
 * transfer-syntax parameter included), the response comes back streamed with status and headers as they
 * were, upstream errors included. Nothing is buffered.
 */

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'trailers',
  'transfer-encoding', 'upgrade', 'host', 'content-length',
]);

/** The client's request headers minus hop-by-hop ones and its Authorization (which is Warden's, not the upstream's). */
export function forwardableRequestHeaders(req: Request): Record<string, string> {
  const headers: Record<string, string> = {};
  const connectionTokens = new Set(String(req.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()));
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || connectionTokens.has(name) || name === 'authorization') continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  headers['x-forwarded-for'] = [req.headers['x-forwarded-for'], req.socket.remoteAddress].filter(Boolean).join(', ');
  return headers;
}

/** Copies upstream response headers onto `res`, hop-by-hop ones excepted (Content-Length kept when asked). */
export function copyResponseHeaders(upstreamHeaders: Record<string, string | string[] | undefined>, res: Response, keepContentLength: boolean): void {
  for (const [name, value] of Object.entries(upstreamHeaders)) {
    if (value === undefined || (HOP_BY_HOP.has(name) && !(keepContentLength && name === 'content-length'))) continue;
    res.setHeader(name, value);
  }
}

export async function handlePassThrough(ctx: AppContext, req: Request, res: Response): Promise<void> {
  const path = upstreamPath(req);
  const headers = forwardableRequestHeaders(req);
  const qido = req.method === 'GET' && isQidoPath(path);
  if (qido) headers['accept-encoding'] = 'identity'; // the JSON is rewritten (Retrieve URLs), so it must be plain
  const abort = new AbortController();
  const onClose = (): void => { if (!res.writableFinished) abort.abort(); };
  res.on('close', onClose);
  let started = false;
  try {
    await ctx.upstream.stream(req.method, path, headers, abort.signal, (statusCode, upstreamHeaders) => {
      started = true;
      res.status(statusCode);
      const type = String(upstreamHeaders['content-type'] ?? '').toLowerCase();
      const encoded = upstreamHeaders['content-encoding'] !== undefined && String(upstreamHeaders['content-encoding']).toLowerCase() !== 'identity';
      if (qido && statusCode === 200 && !encoded && /^application\/(dicom\+)?json\b/.test(type)) {
        return retrieveUrlRewriter(res, upstreamHeaders, ctx.upstream.basePath, publicBaseUrl(ctx, req));
      }
      copyResponseHeaders(upstreamHeaders, res, true);
      return res;
    });
  } catch (err) {
    if (abort.signal.aborted) return;
    if (!started) {
      sendError(res, isWardenError(err) ? WardenError.fromSerialized(err) : new WardenError('UPSTREAM_UNAVAILABLE', (err as Error).message), { 'Retry-After': String(ctx.config.limits.retryAfterSeconds) });
      return;
    }
    res.destroy(); // upstream broke mid-body: the client must not take a truncated body for a whole one
  } finally {
    res.off('close', onClose);
  }
}

/**
 * A Writable that buffers a QIDO-RS JSON body (up to QIDO_REWRITE_MAX_BYTES), rewrites its Retrieve URLs to
 * Warden's public base and answers with the new length. Beyond the cap, or when the body is not JSON, the bytes
 * go out unchanged.
 */
function retrieveUrlRewriter(res: Response, upstreamHeaders: Record<string, string | string[] | undefined>, upstreamBasePath: string, publicBase: string): Writable {
  const chunks: Buffer[] = [];
  let size = 0;
  let raw = false;
  const goRaw = (): void => {
    raw = true;
    copyResponseHeaders(upstreamHeaders, res, true);
    for (const c of chunks.splice(0)) res.write(c);
  };
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (raw) { if (res.write(chunk)) cb(); else res.once('drain', () => cb()); return; }
      chunks.push(chunk);
      size += chunk.length;
      if (size > QIDO_REWRITE_MAX_BYTES) goRaw();
      cb();
    },
    final(cb) {
      if (raw) { res.end(() => cb()); return; }
      const body = Buffer.concat(chunks, size);
      let out = body;
      try {
        const json = JSON.parse(body.toString('utf8')) as unknown;
        if (rewriteRetrieveUrls(json, upstreamBasePath, publicBase) > 0) out = Buffer.from(JSON.stringify(json), 'utf8');
      } catch { /* not JSON after all: unchanged */ }
      copyResponseHeaders(upstreamHeaders, res, false);
      res.setHeader('content-length', String(out.length));
      res.end(out, () => cb());
    },
    destroy(err, cb) { cb(err); },
  });
}

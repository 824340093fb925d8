import type { Request, Response } from 'express';
import type { AppContext } from './context';
import { sendError } from './stow';

/**
 * QIDO-RS and WADO-RS pass-through: the request goes upstream with its headers (Accept with its
 * transfer-syntax parameter included), the response comes back streamed with status and headers as they
 * were, upstream errors included. Nothing is buffered.
 */

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'trailers',
  'transfer-encoding', 'upgrade', 'host', 'content-length',
]);

export async function handlePassThrough(ctx: AppContext, req: Request, res: Response): Promise<void> {
  const path = req.originalUrl.slice(ctx.config.server.basePath.length) || '/';
  const headers: Record<string, string> = {};
  const connectionTokens = new Set(String(req.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()));
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || connectionTokens.has(name) || name === 'authorization') continue;
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  headers['x-forwarded-for'] = [req.headers['x-forwarded-for'], req.socket.remoteAddress].filter(Boolean).join(', ');
  const abort = new AbortController();
  const onClose = (): void => { if (!res.writableFinished) abort.abort(); };
  res.on('close', onClose);
  let started = false;
  try {
    await ctx.upstream.stream(req.method, path, headers, abort.signal, (statusCode, upstreamHeaders) => {
      started = true;
      res.status(statusCode);
      for (const [name, value] of Object.entries(upstreamHeaders)) {
        if (value === undefined || (HOP_BY_HOP.has(name) && name !== 'content-length')) continue;
        res.setHeader(name, value);
      }
      return res;
    });
  } catch (err) {
    if (abort.signal.aborted) return;
    if (!started) { sendError(res, 502, 'UPSTREAM_UNAVAILABLE', (err as Error).message); return; }
    res.destroy(); // upstream broke mid-body: the client must not take a truncated body for a whole one
  } finally {
    res.off('close', onClose);
  }
}

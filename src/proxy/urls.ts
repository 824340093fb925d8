import type { Request } from 'express';
import type { AppContext } from './context';

/**
 * Retrieve URLs (0008,1190) that Warden hands to clients point at Warden, never at the upstream behind it.
 *
 * The external base is `server.publicBaseUrl` when configured (set it behind a reverse proxy or ingress),
 * else derived from the request: `{protocol}://{Host}{server.basePath}` (protocol and host honour
 * X-Forwarded-* only as far as Express's `trust proxy` allows, which Warden leaves off).
 */
export function publicBaseUrl(ctx: AppContext, req: Request): string {
  const configured = ctx.config.server.publicBaseUrl;
  if (configured) return configured.replace(/\/+$/, '');
  const host = req.headers.host ?? `${req.socket.localAddress}:${req.socket.localPort}`;
  return `${req.protocol}://${host}${ctx.config.server.basePath}`;
}

const QIDO_RE = /^\/(?:studies(?:\/[^/?]+\/(?:series(?:\/[^/?]+\/instances)?|instances))?|series|instances)\/?(?:\?.*)?$/;

/** True for a QIDO-RS search path below the base path (`/studies`, `/studies/{s}/series`, `/instances?…`, …). */
export function isQidoPath(path: string): boolean {
  return QIDO_RE.test(path);
}

/**
 * Rewrites, in a DICOM JSON value (a dataset or an array of them, nested sequences included), every
 * Retrieve URL (0008,1190) whose path lies under the upstream base path to the same resource under `publicBase`.
 * Returns how many values were rewritten. URLs elsewhere are left alone.
 */
export function rewriteRetrieveUrls(json: unknown, upstreamBasePath: string, publicBase: string): number {
  let n = 0;
  const prefix = `${upstreamBasePath}/`;
  const rewrite = (u: unknown): unknown => {
    if (typeof u !== 'string') return u;
    let url: URL;
    try { url = new URL(u); } catch { return u; }
    if (!url.pathname.startsWith(prefix)) return u;
    n++;
    return `${publicBase}/${url.pathname.slice(prefix.length)}${url.search}`;
  };
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) { for (const x of node) walk(x); return; }
    if (node === null || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      if (key === '00081190' && value && typeof value === 'object' && Array.isArray((value as { Value?: unknown[] }).Value)) {
        const v = value as { Value: unknown[] };
        v.Value = v.Value.map(rewrite);
      } else {
        walk(value);
      }
    }
  };
  walk(json);
  return n;
}

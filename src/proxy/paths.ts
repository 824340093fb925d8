import type { NextFunction, Request, Response } from 'express';
import { WardenError } from '../core/errors';
import { sendError } from './http-errors';

/**
 * One path rule for every route, applied before routing and before any scanning decision: what Warden routes,
 * scans and forwards is the same canonical path the upstream will resolve. Repeated slashes are collapsed (a client
 * whose base URL ends in `/` sends `//studies`); dot segments (`.`, `..`, also %2E-encoded), encoded separators
 * (%2F, %5C) and backslashes are refused, since an upstream that normalises them would serve a resource other
 * than the one Warden judged (a WADO retrieve that skips the scanner, or a path out of the DICOMweb base).
 */
export function canonicalPath(rawPath: string): string | WardenError {
  if (rawPath.includes('\\') || /%(2f|5c)/i.test(rawPath)) {
    return new WardenError('PATH_REFUSED', 'The request path contains an encoded separator or a backslash.');
  }
  const segments = rawPath.split('/').filter((s) => s.length > 0);
  for (const s of segments) {
    const decoded = s.replace(/%2e/gi, '.');
    if (decoded === '.' || decoded === '..') return new WardenError('PATH_REFUSED', 'The request path contains a dot segment (. or ..).');
    // a segment that does not percent-decode would throw wherever it is decoded later (found by npm run fuzz: a
    // scanned WADO-RS retrieve of /studies/%zz answered 500)
    try { decodeURIComponent(s); } catch { return new WardenError('PATH_REFUSED', 'The request path contains a malformed percent-encoding.'); }
  }
  return `/${segments.join('/')}`;
}

/** Express middleware: rewrites req.url to its canonical path (query kept) or answers 400 PATH_REFUSED. */
export function canonicalPaths() {
  return (req: Request, res: Response, next: NextFunction): void => {
    const q = req.url.indexOf('?');
    const rawPath = q < 0 ? req.url : req.url.slice(0, q);
    const path = canonicalPath(rawPath);
    if (path instanceof WardenError) { sendError(res, path); return; }
    req.url = path + (q < 0 ? '' : req.url.slice(q));
    next();
  };
}

/** The DICOMweb resources that may reach the upstream (below the base path): studies, series, instances. */
const DICOMWEB_RESOURCE = /^\/(studies|series|instances)(\/|$|\?)/;

export function isDicomwebResource(pathBelowBase: string): boolean {
  return DICOMWEB_RESOURCE.test(pathBelowBase);
}

/** The path (and query) below the base path of a request routed by the DICOMweb router: canonical, as forwarded. */
export function upstreamPath(req: Request): string {
  return req.url || '/';
}

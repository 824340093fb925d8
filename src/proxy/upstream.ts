import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { WardenError } from '../core/errors';
import { publish, type EventScope } from '../core/events';

/**
 * The one way out: every request to the upstream DICOMweb server (AI endpoint or PACS) goes through here, on one
 * undici Pool, and announces its answer (`upstreamAnswered`: method, status or 'error', seconds to the headers).
 */
export interface UpstreamOptions {
  url: string;
  timeoutMs: number;
  connections: number;
  /** Static headers for every upstream request (e.g. the upstream's own Authorization). */
  headers: Record<string, string>;
  readinessPath: string;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable & { text(): Promise<string>; dump(): Promise<void> };
}

export interface UpstreamClient {
  /** `path` is relative to the upstream base URL (e.g. `/studies/1.2.3?x=y`). */
  request(method: string, path: string, headers: Record<string, string>, body?: Readable | Buffer | null, signal?: AbortSignal): Promise<UpstreamResponse>;
  /**
   * Streams a bodiless request's response straight into `factory`'s Writable (undici's stream(): no
   * intermediate Readable, the fastest path for WADO-RS). The factory sees status and headers first.
   */
  stream(method: string, path: string, headers: Record<string, string>, signal: AbortSignal,
    factory: (statusCode: number, headers: Record<string, string | string[] | undefined>) => NodeJS.WritableStream): Promise<void>;
  /** True when the upstream answers a cheap QIDO request with a status below 500. */
  ping(): Promise<boolean>;
  /** The upstream base path (e.g. `/dicom-web`), for rewriting. */
  readonly basePath: string;
  readonly origin: string;
  close(): Promise<void>;
}

export function createUpstreamClient(opts: UpstreamOptions, scope?: EventScope): UpstreamClient {
  const url = new URL(opts.url);
  const origin = url.origin;
  const basePath = url.pathname.replace(/\/+$/, '');
  const pool = new Pool(origin, {
    connections: opts.connections,
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
    // Orthanc (civetweb) closes idle keep-alive connections after ~1 s; reusing one it closed fails the
    // request with "other side closed", so idle connections are dropped first.
    keepAliveTimeout: 800,
    keepAliveMaxTimeout: 800,
  });

  const answered = (method: string, status: number | 'error', started: bigint): void => {
    if (!scope) return;
    publish('upstreamAnswered', () => ({ scope, method, status, seconds: Number(process.hrtime.bigint() - started) / 1e9 }));
  };

  async function request(method: string, path: string, headers: Record<string, string>, body?: Readable | Buffer | null, signal?: AbortSignal): Promise<UpstreamResponse> {
    const started = process.hrtime.bigint();
    const m = method.toUpperCase();
    try {
      const res = await pool.request({
        method: m as Dispatcher.HttpMethod,
        path: basePath + path,
        headers: { ...opts.headers, ...headers },
        body: body ?? undefined,
        signal,
      });
      answered(m, res.statusCode, started);
      return { statusCode: res.statusCode, headers: res.headers, body: res.body as unknown as UpstreamResponse['body'] };
    } catch (err) {
      answered(m, 'error', started);
      throw upstreamFailure(err, origin, opts.timeoutMs);
    }
  }

  async function stream(method: string, path: string, headers: Record<string, string>, signal: AbortSignal,
    factory: (statusCode: number, headers: Record<string, string | string[] | undefined>) => NodeJS.WritableStream): Promise<void> {
    const started = process.hrtime.bigint();
    const m = method.toUpperCase();
    let headersSeen = false;
    try {
      await pool.stream({ method: m as Dispatcher.HttpMethod, path: basePath + path, headers: { ...opts.headers, ...headers }, signal },
        ({ statusCode, headers: h }) => {
          headersSeen = true;
          answered(m, statusCode, started);
          return factory(statusCode, h) as unknown as import('node:stream').Writable;
        });
    } catch (err) {
      if (headersSeen) throw err;
      answered(m, 'error', started);
      throw upstreamFailure(err, origin, opts.timeoutMs);
    }
  }

  return {
    basePath,
    origin,
    request,
    stream,
    async ping() {
      try {
        const res = await request('GET', opts.readinessPath, { accept: 'application/dicom+json' });
        await res.body.dump();
        return res.statusCode < 500;
      } catch {
        return false;
      }
    },
    async close() {
      await pool.close();
    },
  };
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);
const TIMED_OUT = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** What went wrong on the way to the upstream, in words that say which: not reached, reached but silent, or hung up. */
export function upstreamFailure(err: unknown, origin: string, timeoutMs: number): WardenError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (TIMED_OUT.has(code)) {
    return new WardenError('UPSTREAM_TIMEOUT', `The upstream DICOMweb server at ${origin} did not answer within upstream.timeoutMs (${timeoutMs} ms).`, { cause: err });
  }
  if (UNREACHABLE.has(code)) {
    return new WardenError('UPSTREAM_UNAVAILABLE', `The upstream DICOMweb server at ${origin} could not be reached (${code}).`, { cause: err });
  }
  if ((err as Error).name === 'AbortError') return new WardenError('UPSTREAM_UNAVAILABLE', `The request to the upstream at ${origin} was cancelled.`, { cause: err });
  return new WardenError('UPSTREAM_UNAVAILABLE', `The upstream DICOMweb server at ${origin} closed the connection before it answered (${code || (err as Error).message}).`, { cause: err });
}

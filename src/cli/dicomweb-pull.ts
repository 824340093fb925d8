import type { Readable } from 'node:stream';
import Dicer from '@fastify/busboy/deps/dicer/lib/Dicer.js';
import { Agent, request, type Dispatcher } from 'undici';
import { WardenError } from '../core/errors';
import { hashUid } from '../dicom';
import { parseMediaType } from '../proxy';

/**
 * A small DICOMweb client for pulling a site's studies (`warden calibrate --from-dicomweb`): QIDO-RS study search,
 * paged with limit/offset, newest first; WADO-RS retrieve of one study as multipart/related with
 * `transfer-syntax=*` (the stored bytes, not a transcoding), parsed part by part with the Dicer bundled in
 * @fastify/busboy. Memory stays bounded: one instance's bytes at a time; the next part is not read from the socket
 * before the previous one was handled (Dicer's backpressure). Errors are typed; messages carry hashed UIDs only.
 */

export interface DicomwebSource {
  /** DICOMweb base URL, e.g. https://pacs.example.org/dicom-web */
  baseUrl: string;
  /** Bearer token for the Authorization header. */
  token?: string;
  /** Time allowed for the response headers and between two body chunks, ms. */
  timeoutMs?: number;
}

export interface StudyQuery {
  /** ModalitiesInStudy values (any of them); empty = any modality. */
  modalities: string[];
  /** DICOM date range matching for StudyDate: 'YYYYMMDD-' (since), 'YYYYMMDD-YYYYMMDD', or one date. */
  studyDate?: string;
  /** Keep the newest N studies (by StudyDate, StudyTime). */
  limitStudies?: number;
  /** QIDO page size (limit); pages are fetched until one comes back short. */
  pageSize: number;
}

export interface StudyRef {
  uid: string;
  /** YYYYMMDD or '' when the server does not say. */
  date: string;
  time: string;
  /** NumberOfStudyRelatedInstances when the server says. */
  instances?: number;
  /** ModalitiesInStudy when the server says. */
  modalities?: string[];
}

/** What a retrieve handed to `onInstance` and what it left out. */
export interface RetrieveResult {
  instances: number;
  skipped: Record<string, number>;
}

/** A source URL as it may be written down (header, report): no credentials, no query. */
export function describeSource(baseUrl: string): string {
  const u = new URL(baseUrl);
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

/** The QIDO-RS query string of one page; `matchModalities` false leaves ModalitiesInStudy to the client. */
export function qidoQuery(query: StudyQuery, offset: number, matchModalities = true): string {
  const p = new URLSearchParams();
  p.set('limit', String(query.pageSize));
  p.set('offset', String(offset));
  if (matchModalities && query.modalities.length) p.set('ModalitiesInStudy', query.modalities.join(','));
  if (query.studyDate) p.set('StudyDate', query.studyDate);
  for (const tag of ['00080020', '00080030', '00080061', '00201208']) p.append('includefield', tag);
  return p.toString();
}

/** `--since YYYYMMDD` / `--date-range A-B` → DICOM range matching for StudyDate. @throws USAGE */
export function studyDateRange(since?: string, range?: string): string | undefined {
  const date = /^\d{8}$/;
  if (since !== undefined && range !== undefined) throw new WardenError('USAGE', 'Give --since or --date-range, not both.');
  if (since !== undefined) {
    if (!date.test(since)) throw new WardenError('USAGE', `--since must be a date YYYYMMDD (got ${since}).`);
    return `${since}-`;
  }
  if (range !== undefined) {
    const m = /^(\d{8})-(\d{8})$/.exec(range);
    if (!m || m[1] > m[2]) throw new WardenError('USAGE', `--date-range must be YYYYMMDD-YYYYMMDD with the first date not after the second (got ${range}).`);
    return range;
  }
  return undefined;
}

type DicomJson = Record<string, { Value?: unknown[] }>;

const first = (item: DicomJson, tag: string): string => {
  const v = item[tag]?.Value?.[0];
  return v === undefined || v === null ? '' : String(v).trim();
};

const all = (item: DicomJson, tag: string): string[] | undefined => {
  const v = item[tag]?.Value;
  return Array.isArray(v) ? v.flatMap((x) => (typeof x === 'string' && x.trim() ? [x.trim().toUpperCase()] : [])) : undefined;
};

/** Newest first: StudyDate, then StudyTime, descending; studies without a date last. */
export function newestFirst(a: StudyRef, b: StudyRef): number {
  const ka = `${a.date || '00000000'}${a.time.padEnd(13, '0')}`;
  const kb = `${b.date || '00000000'}${b.time.padEnd(13, '0')}`;
  return ka < kb ? 1 : ka > kb ? -1 : a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0;
}

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNRESET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

/** Safety stop for servers that ignore `offset` or never return a short page. */
const MAX_PAGES = 100000;

export class DicomwebPuller {
  readonly origin: string;
  readonly #basePath: string;
  readonly #headers: Record<string, string>;
  readonly #agent: Agent;
  readonly #timeoutMs: number;

  constructor(source: DicomwebSource) {
    let url: URL;
    try {
      url = new URL(source.baseUrl);
    } catch {
      throw new WardenError('USAGE', `--from-dicomweb must be an http(s) URL (got ${source.baseUrl}).`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new WardenError('USAGE', `--from-dicomweb must be an http(s) URL (got ${url.protocol}).`);
    this.origin = url.origin;
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.#headers = source.token ? { authorization: `Bearer ${source.token}` } : {};
    this.#timeoutMs = source.timeoutMs ?? 60000;
    this.#agent = new Agent({ headersTimeout: this.#timeoutMs, bodyTimeout: this.#timeoutMs, keepAliveTimeout: 800, keepAliveMaxTimeout: 800 });
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  async #get(path: string, accept: string, what: string): Promise<Dispatcher.ResponseData> {
    try {
      return await request(`${this.origin}${this.#basePath}${path}`, { method: 'GET', headers: { ...this.#headers, accept }, dispatcher: this.#agent });
    } catch (err) {
      throw this.#failure(err, what);
    }
  }

  #failure(err: unknown, what: string): WardenError {
    if (err instanceof WardenError) return err;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      return new WardenError('DICOMWEB_SOURCE_UNREACHABLE', `The DICOMweb server at ${this.origin} stalled during ${what} (no data for ${this.#timeoutMs} ms).`, { cause: err });
    }
    const why = UNREACHABLE_CODES.has(code) ? code : (err as Error).message || code;
    return new WardenError('DICOMWEB_SOURCE_UNREACHABLE', `The DICOMweb server at ${this.origin} could not be reached for ${what} (${why}).`, { cause: err });
  }

  async #refuse(res: Dispatcher.ResponseData, what: string): Promise<never> {
    await res.body.dump().catch(() => undefined);
    const hint = res.statusCode === 401 || res.statusCode === 403 ? ' (check --token)' : '';
    throw new WardenError('DICOMWEB_SOURCE_ERROR', `The DICOMweb server at ${this.origin} answered ${what} with HTTP ${res.statusCode}${hint}.`, { detail: { status: res.statusCode } });
  }

  /** One QIDO-RS page of studies. @throws DICOMWEB_SOURCE_UNREACHABLE, DICOMWEB_SOURCE_ERROR */
  async searchPage(query: StudyQuery, offset: number, matchModalities = true): Promise<StudyRef[]> {
    const what = 'the QIDO-RS study search';
    const res = await this.#get(`/studies?${qidoQuery(query, offset, matchModalities)}`, 'application/dicom+json', what);
    if (res.statusCode === 204) {
      await res.body.dump();
      return [];
    }
    if (res.statusCode !== 200) return this.#refuse(res, what);
    let items: unknown;
    try {
      const text = await res.body.text();
      items = text.trim() ? JSON.parse(text) : [];
    } catch (err) {
      throw new WardenError('DICOMWEB_SOURCE_ERROR', `The DICOMweb server at ${this.origin} answered ${what} with a body that is not DICOM JSON.`, { cause: err });
    }
    if (!Array.isArray(items)) throw new WardenError('DICOMWEB_SOURCE_ERROR', `The DICOMweb server at ${this.origin} answered ${what} with JSON that is not an array of studies.`);
    return (items as DicomJson[]).flatMap((item) => {
      const uid = first(item, '0020000D');
      if (!uid) return [];
      const count = Number(first(item, '00201208'));
      const modalities = all(item, '00080061');
      return [{ uid, date: first(item, '00080020'), time: first(item, '00080030'), ...(Number.isFinite(count) && count > 0 ? { instances: count } : {}), ...(modalities ? { modalities } : {}) }];
    });
  }

  /**
   * Whether the server pages correctly when ModalitiesInStudy is a query key: the second study of a two-study page must
   * be the first of the page at offset 1. (Orthanc 1.10 with DICOMweb 1.7 returns nothing past the first page when
   * ModalitiesInStudy is matched; StudyDate pages fine.)
   */
  async pagesWithModalities(query: StudyQuery): Promise<boolean> {
    if (query.modalities.length === 0) return true;
    const two = await this.searchPage({ ...query, pageSize: 2 }, 0);
    if (two.length < 2) return true;
    const second = await this.searchPage({ ...query, pageSize: 1 }, 1);
    return second[0]?.uid === two[1].uid;
  }

  /**
   * Every study matching `query`, newest first, at most `limitStudies` (kept while paging: memory holds N studies,
   * not the whole archive). ModalitiesInStudy is matched by the server when it pages correctly with it, else here, on
   * the ModalitiesInStudy each study comes back with (`onNote` says so). @throws DICOMWEB_SOURCE_UNREACHABLE,
   * DICOMWEB_SOURCE_ERROR
   */
  async searchStudies(query: StudyQuery, onNote?: (note: string) => void): Promise<StudyRef[]> {
    const serverMatches = await this.pagesWithModalities(query);
    if (!serverMatches) onNote?.(`${this.origin} does not page correctly when it matches ModalitiesInStudy: matching it here instead (more QIDO-RS pages).`);
    const wanted = new Set(query.modalities);
    const kept = new Map<string, StudyRef>();
    let previous = new Set<string>();
    for (let page = 0, offset = 0; page < MAX_PAGES; page++) {
      const studies = await this.searchPage(query, offset, serverMatches);
      // a server that ignores offset sends the same page again: stop rather than loop (memory: one page of UIDs)
      const fresh = studies.filter((s) => !previous.has(s.uid));
      previous = new Set(studies.map((s) => s.uid));
      for (const s of fresh) {
        // without a ModalitiesInStudy answer the study is kept; its instances are filtered one by one
        if (!serverMatches && wanted.size && s.modalities && !s.modalities.some((m) => wanted.has(m))) continue;
        kept.set(s.uid, s);
      }
      if (query.limitStudies !== undefined && kept.size > query.limitStudies) {
        const newest = [...kept.values()].sort(newestFirst).slice(0, query.limitStudies);
        kept.clear();
        for (const s of newest) kept.set(s.uid, s);
      }
      if (studies.length < query.pageSize || fresh.length === 0) break;
      offset += studies.length;
    }
    return [...kept.values()].sort(newestFirst);
  }

  /**
   * WADO-RS retrieve of one study, every instance as stored (`transfer-syntax=*`). Each instance's bytes go to
   * `onInstance` in turn; the next part is read only when its promise settles. A study the server no longer has
   * (404) yields no instance. @throws DICOMWEB_SOURCE_UNREACHABLE, DICOMWEB_SOURCE_ERROR
   */
  async retrieveStudy(uid: string, onInstance: (bytes: Buffer) => Promise<void>, maxInstanceBytes: number): Promise<RetrieveResult> {
    const what = `the WADO-RS retrieve of study ${hashUid(uid)}`;
    const res = await this.#get(`/studies/${encodeURIComponent(uid)}`, 'multipart/related; type="application/dicom"; transfer-syntax=*', what);
    if (res.statusCode === 404 || res.statusCode === 204) {
      await res.body.dump();
      return { instances: 0, skipped: { 'study not found on the server': 1 } };
    }
    if (res.statusCode !== 200 && res.statusCode !== 206) return this.#refuse(res, what);
    const type = parseMediaType(String(res.headers['content-type'] ?? ''));
    const boundary = type?.params.boundary;
    if (type?.mediaType !== 'multipart/related' || !boundary) {
      await res.body.dump().catch(() => undefined);
      throw new WardenError('DICOMWEB_SOURCE_ERROR', `The DICOMweb server at ${this.origin} answered ${what} with ${type?.mediaType ?? 'no content type'}, not multipart/related.`);
    }
    try {
      return await readParts(res.body, boundary, onInstance, maxInstanceBytes);
    } catch (err) {
      if (err instanceof WardenError) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code.startsWith('UND_ERR') || UNREACHABLE_CODES.has(code)) throw this.#failure(err, what);
      throw new WardenError('DICOMWEB_SOURCE_ERROR', `The DICOMweb server at ${this.origin} answered ${what} with a malformed multipart body.`, { cause: err });
    }
  }
}

/**
 * Parses a multipart/related body one part at a time: a part is read into memory (up to `maxBytes`; larger ones are
 * drained and counted), handed to `onPart`, and only then is the next one read (Dicer holds the socket meanwhile).
 */
export async function readParts(body: Readable, boundary: string, onPart: (bytes: Buffer) => Promise<void>, maxBytes: number): Promise<RetrieveResult> {
  const result: RetrieveResult = { instances: 0, skipped: {} };
  const skip = (why: string) => { result.skipped[why] = (result.skipped[why] ?? 0) + 1; };
  const dicer = new Dicer({ boundary, maxHeaderPairs: 100, maxHeaderSize: 16 * 1024 });
  const parts: Readable[] = [];
  let wake: (() => void) | null = null;
  let ended = false;
  let failure: Error | null = null;
  const notify = () => { const w = wake; wake = null; w?.(); };
  dicer.on('part', (part: Readable) => {
    let contentType = '';
    part.on('header', (h: Record<string, string[]>) => {
      for (const [k, v] of Object.entries(h)) if (k.toLowerCase() === 'content-type') contentType = String(v[0] ?? '');
    });
    part.on('error', (err: Error) => { failure ??= err; notify(); });
    (part as Readable & { contentType?: () => string }).contentType = () => contentType;
    part.pause();
    parts.push(part);
    notify();
  });
  dicer.on('preamble', (s: Readable) => { s.on('error', () => undefined); s.resume(); });
  dicer.on('trailer', () => undefined);
  dicer.on('finish', () => { ended = true; notify(); });
  dicer.on('error', (err: Error) => { failure ??= err; notify(); });
  body.on('error', (err: Error) => { failure ??= err; notify(); });
  body.pipe(dicer);
  try {
    for (;;) {
      if (failure) throw failure;
      const part = parts.shift();
      if (!part) {
        if (ended) break;
        await new Promise<void>((resolve) => { wake = resolve; });
        continue;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of part) {
        size += (chunk as Buffer).length;
        if (size <= maxBytes) chunks.push(chunk as Buffer);
        else chunks.length = 0;
      }
      if (failure) throw failure;
      const type = parseMediaType((part as Readable & { contentType: () => string }).contentType());
      if (size > maxBytes) skip(`larger than ${maxBytes} bytes`);
      else if (type && type.mediaType !== 'application/dicom') skip(`part of type ${type.mediaType}`);
      else {
        await onPart(Buffer.concat(chunks, size));
        result.instances++;
      }
    }
  } finally {
    body.unpipe(dicer);
    if (!body.readableEnded) body.destroy();
  }
  return result;
}

import { isWardenError, type WardenError } from '../../src/core/errors';
import { decodeInstance, isSkipped, readHeader } from '../../src/dicom';
import { mutateDicom } from './dicom-mutate';
import { Rng } from './rng';
import { seedFiles, type SeedFile } from './seeds';

/**
 * The parser target's cases: case `index` of a run seeded `seed` is one seed file with stacked structure-aware
 * mutations (3 % of cases are the seed file as it is, so the decode path stays covered), fed to `readHeader` (the
 * proxy's header reader) and `decodeInstance` (the scan's decoder). A case passes when the header reader returns
 * (null, or a header of strings and numbers) and the decoder ends in a decode whose frames match its geometry, a
 * skip, or a typed WardenError that is neither INTERNAL, nor a bug of Warden's own code wrapped by the decoder's
 * catch-all, nor a message quoting the instance's UIDs.
 */

export interface ParserCase {
  index: number;
  file: string;
  ops: string[];
  bytes: Buffer;
  /** UIDs of the seed file (an error message must never quote them). */
  uids: string[];
}

export interface ParserOutcome {
  /** e.g. `decode`, `skip`, `error:DICOM_TRUNCATED`. */
  outcome: string;
  /** Set when the case is a finding. */
  finding?: { kind: string; detail: string };
}

export function parserCase(seed: number, index: number, seeds: SeedFile[] = seedFiles()): ParserCase {
  const rng = Rng.forCase(seed, 'parser', index);
  const file = rng.pick(seeds);
  const uids = seedUids(file);
  if (rng.chance(0.03)) return { index, file: file.name, ops: [], bytes: Buffer.from(file.bytes), uids };
  const { bytes, ops } = mutateDicom(rng, file.bytes, () => rng.pick(seeds).bytes);
  return { index, file: file.name, ops, bytes, uids };
}

const uidCache = new WeakMap<SeedFile, string[]>();
function seedUids(file: SeedFile): string[] {
  let uids = uidCache.get(file);
  if (!uids) {
    const h = readHeader(file.bytes);
    uids = [h?.sopInstanceUid, h?.studyInstanceUid, h?.seriesInstanceUid].filter((u): u is string => typeof u === 'string' && u.length >= 8);
    uidCache.set(file, uids);
  }
  return uids;
}

const HEADER_STRINGS = ['sopClassUid', 'sopInstanceUid', 'studyInstanceUid', 'seriesInstanceUid', 'transferSyntaxUid', 'modality', 'photometricInterpretation', 'bodyPartExamined'];
const HEADER_NUMBERS = ['rows', 'columns', 'frames', 'samplesPerPixel', 'bitsAllocated'];

/** Runs one case through the header reader and the decoder and judges the ending. */
export async function runParserCase(c: ParserCase): Promise<ParserOutcome> {
  let header: ReturnType<typeof readHeader>;
  try {
    header = readHeader(c.bytes);
  } catch (err) {
    return { outcome: 'header-threw', finding: { kind: 'untyped-throw', detail: `readHeader threw ${describe(err)}` } };
  }
  if (header !== null) {
    if (typeof header !== 'object') return { outcome: 'header-invalid', finding: { kind: 'invariant', detail: `readHeader returned ${typeof header}` } };
    for (const k of HEADER_STRINGS) {
      const v = (header as Record<string, unknown>)[k];
      if (v !== undefined && typeof v !== 'string') return { outcome: 'header-invalid', finding: { kind: 'invariant', detail: `readHeader ${k} is a ${typeof v}` } };
    }
    for (const k of HEADER_NUMBERS) {
      const v = (header as Record<string, unknown>)[k];
      if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) return { outcome: 'header-invalid', finding: { kind: 'invariant', detail: `readHeader ${k} = ${String(v)}` } };
    }
  }

  let decoded: Awaited<ReturnType<typeof decodeInstance>>;
  try {
    decoded = await decodeInstance(c.bytes);
  } catch (err) {
    if (!isWardenError(err)) return { outcome: 'untyped', finding: { kind: 'untyped-throw', detail: `decodeInstance threw ${describe(err)}` } };
    const e = err as WardenError;
    if (e.code === 'INTERNAL') return { outcome: 'error:INTERNAL', finding: { kind: 'internal', detail: `INTERNAL: ${e.message} (cause: ${describe(e.cause)})` } };
    const masked = ownBug(e.cause);
    if (masked) return { outcome: `error:${e.code}`, finding: { kind: 'masked-bug', detail: `${e.code} wraps a ${masked}` } };
    const leaked = c.uids.find((u) => e.message.includes(u));
    if (leaked) return { outcome: `error:${e.code}`, finding: { kind: 'identifier-in-message', detail: `${e.code}: the message quotes a UID of the instance` } };
    return { outcome: `error:${e.code}` };
  }
  if (isSkipped(decoded)) {
    if (typeof decoded.reason !== 'string' || !decoded.reason) return { outcome: 'skip', finding: { kind: 'invariant', detail: 'a skip without a reason' } };
    return { outcome: 'skip' };
  }
  const d = decoded;
  const perFrame = d.rows * d.columns * d.samplesPerPixel;
  if (!(d.rows > 0 && d.columns > 0 && d.numberOfFrames >= 1)) return { outcome: 'decode', finding: { kind: 'invariant', detail: `decoded geometry ${d.rows}x${d.columns}x${d.numberOfFrames}` } };
  if (d.frames.length !== d.numberOfFrames) return { outcome: 'decode', finding: { kind: 'invariant', detail: `${d.frames.length} frames decoded for Number of Frames ${d.numberOfFrames}` } };
  const wrong = d.frames.findIndex((f) => !(f instanceof Float32Array) || f.length !== perFrame);
  if (wrong >= 0) return { outcome: 'decode', finding: { kind: 'invariant', detail: `frame ${wrong} holds ${d.frames[wrong].length} values; ${d.rows}x${d.columns}x${d.samplesPerPixel} expected` } };
  return { outcome: 'decode' };
}

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message.slice(0, 200)}${err.stack ? ` @ ${topFrame(err.stack)}` : ''}`;
  return String(err).slice(0, 200);
}

function topFrame(stack: string): string {
  const line = stack.split('\n').find((l) => l.trim().startsWith('at '));
  return (line ?? '').trim().replace(/^at /, '').replace(/.*[\\/](src|node_modules)[\\/]/, '$1/').slice(0, 160);
}

/**
 * A TypeError, ReferenceError or an out-of-range read thrown by Warden's own code (src/) — a bug the decoder's
 * catch-all would otherwise report as DICOM_MALFORMED. Errors from the DICOM and codec libraries are theirs to
 * throw on bad input.
 */
function ownBug(cause: unknown): string | null {
  if (!(cause instanceof Error) || !cause.stack) return null;
  if (!(cause instanceof TypeError || cause instanceof ReferenceError || cause instanceof RangeError)) return null;
  if (/Maximum call stack size exceeded/.test(cause.message)) return null;
  const frame = cause.stack.split('\n').find((l) => l.trim().startsWith('at '));
  if (!frame || !/[\\/]src[\\/]/.test(frame) || /node_modules/.test(frame)) return null;
  return describe(cause);
}

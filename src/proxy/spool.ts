import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import { WardenError } from '../core/errors';

/**
 * Where a part's original bytes live while it is scanned: in memory while small and while the process-wide
 * in-memory budget allows, otherwise in a temporary file. Memory stays flat in the size of the study: at most
 * `memoryBudgetBytes` of parts are held in memory at once, whatever the request size.
 */
export interface SpoolOptions {
  /** Parts up to this size may stay in memory. */
  memoryPartBytes: number;
  /** Process-wide cap on bytes of parts held in memory. */
  memoryBudgetBytes: number;
  /** A part larger than this is discarded as it streams (the instance fails, the request goes on). */
  maxInstanceBytes: number;
  dir: string;
}

export class MemoryBudget {
  used = 0;
  constructor(readonly limit: number) {}
  tryTake(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

/** A part's original bytes, stored. `dispose()` frees the memory or removes the file. */
export class StoredPart {
  #chunks: Buffer[] | null = [];
  #memBytes = 0;
  #file: string | null = null;
  #fd: fs.WriteStream | null = null;
  #size = 0;
  #oversized = false;
  #disposed = false;
  #budget: MemoryBudget;
  #opts: SpoolOptions;
  /** sha256 of the original bytes, computed as they stream in (the audit trail and the quarantine's address). */
  #hash: Hash | null = createHash('sha256');
  #sha256: string | null = null;

  constructor(opts: SpoolOptions, budget: MemoryBudget) {
    this.#opts = opts;
    this.#budget = budget;
  }

  get size(): number { return this.#size; }
  get oversized(): boolean { return this.#oversized; }
  get spooled(): boolean { return this.#file !== null; }

  /** Appends a chunk; resolves when it may take the next one (file write backpressure). */
  write(chunk: Buffer): Promise<void> | void {
    this.#size += chunk.length;
    if (this.#oversized) return;
    this.#hash?.update(chunk);
    if (this.#size > this.#opts.maxInstanceBytes) {
      this.#oversized = true;
      this.#dropData();
      return;
    }
    if (this.#fd) return this.#writeFile(chunk);
    if (this.#size <= this.#opts.memoryPartBytes && this.#budget.tryTake(chunk.length)) {
      this.#chunks!.push(chunk);
      this.#memBytes += chunk.length;
      return;
    }
    // spill: what is in memory goes to the file first
    this.#file = path.join(this.#opts.dir, `warden-part-${process.pid}-${randomBytes(8).toString('hex')}.dcm`);
    this.#fd = fs.createWriteStream(this.#file, { flags: 'wx', mode: 0o600 });
    this.#fd.on('error', () => { /* surfaced by finish() */ });
    const held = this.#chunks!;
    this.#chunks = null;
    for (const c of held) this.#fd.write(c);
    this.#budget.give(this.#memBytes);
    this.#memBytes = 0;
    return this.#writeFile(chunk);
  }

  #writeFile(chunk: Buffer): Promise<void> | void {
    if (this.#fd!.write(chunk)) return;
    return new Promise((resolve) => this.#fd!.once('drain', resolve));
  }

  /** sha256 (hex) of the part's bytes once it is finished; undefined before, or for an oversized part. */
  get sha256(): string | undefined {
    return this.#sha256 ?? undefined;
  }

  /** The temp file holding a spooled part (to copy it without reading it into memory); null in memory. */
  get filePath(): string | null {
    return this.#oversized || this.#disposed ? null : this.#file;
  }

  /** Closes the temp file, if any. */
  async finish(): Promise<void> {
    if (this.#hash && !this.#oversized) this.#sha256 = this.#hash.digest('hex');
    this.#hash = null;
    const fd = this.#fd;
    if (!fd) return;
    this.#fd = null;
    await new Promise<void>((resolve, reject) => {
      fd.once('error', reject);
      fd.end(resolve);
    });
  }

  /** The whole part in one buffer (for scanning). For a spooled part, read from its file. */
  async read(): Promise<Buffer> {
    if (this.#oversized || this.#disposed) throw new Error('part bytes are not available');
    if (this.#file) return fsp.readFile(this.#file);
    return this.#chunks!.length === 1 ? this.#chunks![0] : Buffer.concat(this.#chunks!, this.#memBytes);
  }

  /** The first `n` bytes (for reading the header cheaply). */
  async head(n: number): Promise<Buffer> {
    if (this.#oversized || this.#disposed) throw new Error('part bytes are not available');
    if (!this.#file) {
      const all = await this.read();
      return all.subarray(0, Math.min(n, all.length));
    }
    const handle = await fsp.open(this.#file, 'r');
    try {
      const buf = Buffer.allocUnsafe(Math.min(n, this.#size));
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  /** The original bytes as a stream (for forwarding), in 256 KiB reads for a file. */
  stream(): Readable {
    if (this.#oversized || this.#disposed) throw new Error('part bytes are not available');
    if (this.#file) return fs.createReadStream(this.#file, { highWaterMark: 256 * 1024 });
    return Readable.from(this.#chunks!, { objectMode: false });
  }

  /** Copies of the in-memory chunks or file reads, never shared with a scanner (which may transfer them). */
  #dropData(): void {
    if (this.#chunks) {
      this.#budget.give(this.#memBytes);
      this.#chunks = [];
      this.#memBytes = 0;
    }
    if (this.#fd) {
      const fd = this.#fd;
      this.#fd = null;
      const file = this.#file;
      fd.end(() => { if (file) fs.rm(file, { force: true }, () => {}); });
      this.#file = null;
    }
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    if (this.#chunks) {
      this.#budget.give(this.#memBytes);
      this.#chunks = null;
      this.#memBytes = 0;
    }
    const fd = this.#fd;
    this.#fd = null;
    if (fd) await new Promise<void>((resolve) => fd.end(() => resolve()));
    if (this.#file) {
      const file = this.#file;
      this.#file = null;
      await fsp.rm(file, { force: true });
    }
  }
}

/**
 * The spool directory Warden owns: `<base>/<pid>-<random>` (0700) inside `base` (`stow.spoolDir`, default
 * `<tmp>/warden-spool`, 0700, refused when it is a symlink or another user's). Spooled parts are whole DICOM files
 * with patient data, so nothing is left behind: the process's own directory is removed on close and at exit, and the
 * directories of processes that are gone (killed, crashed) are removed when the next Warden starts.
 */
export interface SpoolDir {
  readonly dir: string;
  /** Removes this process's spool directory (synchronous: safe in an 'exit' handler). */
  cleanup(): void;
  /** Stale directories removed at start-up. */
  readonly removedStale: number;
}

export function defaultSpoolBase(): string {
  return path.join(os.tmpdir(), 'warden-spool');
}

export function prepareSpoolDir(base: string = defaultSpoolBase()): SpoolDir {
  fs.mkdirSync(base, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(base);
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (!st.isDirectory() || st.isSymbolicLink()) throw new WardenError('CONFIG_INVALID', `The spool directory ${base} is not a directory (stow.spoolDir).`);
  if (uid !== undefined && st.uid !== uid) throw new WardenError('CONFIG_INVALID', `The spool directory ${base} belongs to another user (uid ${st.uid}); set stow.spoolDir to a directory of Warden's own.`);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(base, 0o700);
  let removedStale = 0;
  for (const name of fs.readdirSync(base)) {
    const m = /^(\d+)-[0-9a-f]{16}$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || !isAlive(pid)) {
      fs.rmSync(path.join(base, name), { recursive: true, force: true });
      removedStale++;
    }
  }
  const dir = path.join(base, `${process.pid}-${randomBytes(8).toString('hex')}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  let cleaned = false;
  return {
    dir,
    removedStale,
    cleanup() {
      if (cleaned) return;
      cleaned = true;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Content-addressed files of the quarantine: `<dir>/ab/cdef….dcm` named by the sha256 of the bytes, files
 * 0600 and folders 0700. A put is durable when it resolves: the bytes go to a temp file in `<dir>/.tmp`,
 * which is fsynced, renamed into place, and the folder fsynced; a crash leaves either nothing or a temp file
 * (removed by reconcile), never a partial file under a content address.
 *
 * Nothing here knows about records: the Quarantine (./quarantine.ts) pairs files with the audit store.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { WardenError, toWardenError } from '../core/errors';

export interface PutResult {
  sha256: string;
  size: number;
  path: string;
  /** false when the same bytes were already kept (their modification time is refreshed instead). */
  created: boolean;
}

export interface StoredFile {
  sha256: string;
  path: string;
  size: number;
  mtimeMs: number;
}

export interface DiskUsage {
  /** Bytes of all kept files. */
  bytes: number;
  count: number;
  /** Space left to an unprivileged writer on the volume, and its size. */
  freeBytes: number;
  totalBytes: number;
}

const SHA256 = /^[0-9a-f]{64}$/;
const SHARD = /^[0-9a-f]{2}$/;
const FILE = /^[0-9a-f]{62}\.dcm$/;
export const TEMP_DIR = '.tmp';
export const TRASH_DIR = '.trash';

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export function isSha256(value: unknown): value is string {
  return typeof value === 'string' && SHA256.test(value);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class QuarantineFiles {
  readonly dir: string;
  private ready?: Promise<void>;

  constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  /** Creates the folder layout (idempotent; called by every operation). */
  init(): Promise<void> {
    this.ready ??= (async () => {
      for (const d of [this.dir, path.join(this.dir, TEMP_DIR), path.join(this.dir, TRASH_DIR)]) {
        await fsp.mkdir(d, { recursive: true, mode: 0o700 });
        await fsp.chmod(d, 0o700);
      }
      await fsyncDir(this.dir);
      await fsyncDir(path.dirname(this.dir));
    })().catch((err) => {
      this.ready = undefined;
      throw toWardenError(err, 'QUARANTINE_WRITE_FAILED', 'The quarantine folder could not be created.');
    });
    return this.ready;
  }

  pathOf(sha256: string): string {
    if (!isSha256(sha256)) throw new WardenError('AUDIT_INPUT_INVALID', 'A quarantine address must be a sha256 in lower-case hex.');
    return path.join(this.dir, sha256.slice(0, 2), `${sha256.slice(2)}.dcm`);
  }

  /** Durable put of bytes already in memory. @throws QUARANTINE_WRITE_FAILED */
  async put(bytes: Uint8Array): Promise<PutResult> {
    await this.init();
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const target = this.pathOf(sha256);
    if (await this.refresh(target, bytes.length)) return { sha256, size: bytes.length, path: target, created: false };
    const tmp = this.tempName(sha256);
    try {
      const fh = await fsp.open(tmp, 'wx', 0o600);
      try {
        let off = 0;
        while (off < bytes.length) off += (await fh.write(bytes, off, bytes.length - off)).bytesWritten;
        await fh.sync();
      } finally {
        await fh.close();
      }
      await this.commit(tmp, target);
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw toWardenError(err, 'QUARANTINE_WRITE_FAILED', 'The quarantine could not write an instance durably.');
    }
    return { sha256, size: bytes.length, path: target, created: true };
  }

  /** Durable put of a file (e.g. an instance the proxy spooled to disk), streamed and hashed on the way. */
  async putFile(source: string): Promise<PutResult> {
    await this.init();
    const tmp = this.tempName('stream');
    const hash = createHash('sha256');
    let size = 0;
    try {
      const fh = await fsp.open(tmp, 'wx', 0o600);
      try {
        for await (const chunk of createReadStream(source, { highWaterMark: 1 << 20 })) {
          const buf = chunk as Buffer;
          hash.update(buf);
          let off = 0;
          while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
          size += buf.length;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const sha256 = hash.digest('hex');
      const target = this.pathOf(sha256);
      if (await this.refresh(target, size)) {
        await fsp.rm(tmp, { force: true });
        return { sha256, size, path: target, created: false };
      }
      await this.commit(tmp, target);
      return { sha256, size, path: target, created: true };
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw toWardenError(err, 'QUARANTINE_WRITE_FAILED', 'The quarantine could not write an instance durably.');
    }
  }

  /** The bytes, checked against their address. @throws QUARANTINE_BYTES_MISSING */
  async read(sha256: string): Promise<Buffer> {
    let bytes: Buffer;
    try {
      bytes = await fsp.readFile(this.pathOf(sha256));
    } catch (err) {
      throw toWardenError(err, 'QUARANTINE_BYTES_MISSING', `The quarantined bytes ${sha256.slice(0, 12)}… are missing.`);
    }
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) {
      throw new WardenError('QUARANTINE_BYTES_MISSING', `The quarantined bytes ${sha256.slice(0, 12)}… do not match their sha256.`);
    }
    return bytes;
  }

  async stat(sha256: string): Promise<Stats | null> {
    try {
      return await fsp.stat(this.pathOf(sha256));
    } catch (err) {
      if (errno(err) === 'ENOENT') return null;
      throw err;
    }
  }

  /** Every kept file, and the names under the folder that are not kept files (reported by reconcile). */
  async list(): Promise<{ files: StoredFile[]; strays: string[] }> {
    await this.init();
    const files: StoredFile[] = [];
    const strays: string[] = [];
    for (const shard of await fsp.readdir(this.dir)) {
      if (shard === TEMP_DIR || shard === TRASH_DIR) continue;
      const shardPath = path.join(this.dir, shard);
      if (!SHARD.test(shard)) {
        strays.push(shard);
        continue;
      }
      for (const name of await fsp.readdir(shardPath)) {
        const p = path.join(shardPath, name);
        if (!FILE.test(name)) {
          strays.push(path.join(shard, name));
          continue;
        }
        const st = await fsp.stat(p).catch(() => null);
        if (st?.isFile()) files.push({ sha256: shard + name.slice(0, 62), path: p, size: st.size, mtimeMs: st.mtimeMs });
      }
    }
    return { files, strays };
  }

  /** Temp files (interrupted puts) with their modification times. */
  async temps(): Promise<{ path: string; mtimeMs: number }[]> {
    await this.init();
    return this.entries(path.join(this.dir, TEMP_DIR));
  }

  /** Files a sweep had moved aside when it stopped. */
  async trash(): Promise<{ path: string; sha256: string | null; mtimeMs: number }[]> {
    await this.init();
    return (await this.entries(path.join(this.dir, TRASH_DIR))).map((e) => {
      const sha = path.basename(e.path).slice(0, 64);
      return { ...e, sha256: isSha256(sha) ? sha : null };
    });
  }

  /**
   * Moves a file aside before deleting it, so that a put racing with the sweep (which refreshes the file's
   * time) can be seen afterwards: returns the trash path, or null when the file is gone.
   */
  async moveToTrash(sha256: string): Promise<string | null> {
    const trashPath = path.join(this.dir, TRASH_DIR, `${sha256}.${randomBytes(6).toString('hex')}`);
    try {
      await fsp.rename(this.pathOf(sha256), trashPath);
      return trashPath;
    } catch (err) {
      if (errno(err) === 'ENOENT') return null;
      throw err;
    }
  }

  /** Puts a trashed file back unless the address was filled again meanwhile; then drops the trashed copy. */
  async restoreFromTrash(trashPath: string, sha256: string): Promise<boolean> {
    const target = this.pathOf(sha256);
    await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    let restored = false;
    try {
      await fsp.link(trashPath, target);
      restored = true;
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
    }
    await fsp.rm(trashPath, { force: true });
    await fsyncDir(path.dirname(target));
    return restored;
  }

  async removeTrashed(trashPath: string): Promise<void> {
    await fsp.rm(trashPath, { force: true });
    await fsyncDir(path.dirname(trashPath));
  }

  async mtimeOf(p: string): Promise<number> {
    return (await fsp.stat(p)).mtimeMs;
  }

  async removeTemp(p: string): Promise<void> {
    await fsp.rm(p, { force: true });
  }

  async usage(): Promise<DiskUsage> {
    const { files } = await this.list();
    const fs = await fsp.statfs(this.dir);
    return {
      bytes: files.reduce((s, f) => s + f.size, 0),
      count: files.length,
      freeBytes: fs.bavail * fs.bsize,
      totalBytes: fs.blocks * fs.bsize,
    };
  }

  private tempName(tag: string): string {
    return path.join(this.dir, TEMP_DIR, `${tag}.${process.pid}.${randomBytes(8).toString('hex')}.part`);
  }

  /**
   * When the address already holds a file of this size, refresh its time (the sweep never deletes a file put
   * recently) and report true. A file of another size is replaced by the caller's fresh write.
   */
  private async refresh(target: string, size: number): Promise<boolean> {
    try {
      const now = new Date();
      await fsp.utimes(target, now, now);
      const st = await fsp.stat(target);
      return st.size === size;
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw toWardenError(err, 'QUARANTINE_WRITE_FAILED', 'The quarantine could not check a kept instance.');
    }
  }

  private async commit(tmp: string, target: string): Promise<void> {
    const shard = path.dirname(target);
    let created = false;
    try {
      await fsp.mkdir(shard, { mode: 0o700 });
      created = true;
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
    }
    if (created) await fsyncDir(this.dir);
    await fsp.rename(tmp, target);
    await fsyncDir(shard);
  }

  private async entries(dir: string): Promise<{ path: string; mtimeMs: number }[]> {
    const out: { path: string; mtimeMs: number }[] = [];
    for (const name of await fsp.readdir(dir)) {
      const p = path.join(dir, name);
      const st = await fsp.stat(p).catch(() => null);
      if (st?.isFile()) out.push({ path: p, mtimeMs: st.mtimeMs });
    }
    return out;
  }
}

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './orthanc';

/**
 * A real PostgreSQL for tests: initdb in a temp dir, listening on 127.0.0.1 only (plus a socket in the same
 * dir), trust authentication, fsync off (a test cluster). Run as the postgres user when the tests run as root
 * (PostgreSQL refuses root). Stopped by PID (SIGINT = fast shutdown, SIGKILL after 10 s), the dir removed.
 * scripts/setup.sh installs the binaries when missing.
 */
export interface PostgresHandle {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  pid: number;
  dir: string;
  /** A fresh empty database on this server; returns its URL. */
  createDatabase(name: string): string;
  stop(): Promise<void>;
}

export function postgresBinDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions.length) throw new Error('PostgreSQL binaries not found under /usr/lib/postgresql: run bash scripts/setup.sh');
  return path.join(root, versions[0], 'bin');
}

function asPostgres(args: string[]): { cmd: string; args: string[] } {
  return process.getuid?.() === 0 ? { cmd: 'runuser', args: ['-u', 'postgres', '--', ...args] } : { cmd: args[0], args: args.slice(1) };
}

function run(args: string[], what: string): string {
  const { cmd, args: a } = asPostgres(args);
  const res = spawnSync(cmd, a, { encoding: 'utf8', timeout: 60000 });
  if (res.status !== 0) throw new Error(`${what} failed (${res.status}): ${res.stderr || res.stdout}`);
  return res.stdout;
}

export async function startPostgres(): Promise<PostgresHandle> {
  const bin = postgresBinDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-pg-'));
  fs.chmodSync(dir, 0o711);
  if (process.getuid?.() === 0) {
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    fs.chownSync(dir, uid, gid);
  }
  const data = path.join(dir, 'data');
  const port = await freePort();
  run([path.join(bin, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--no-instructions'], 'initdb');
  const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  run([path.join(bin, 'pg_ctl'), '-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '30', '-o', opts, 'start'], 'pg_ctl start');
  const pid = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url, port, pid, dir,
    createDatabase(name: string) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
      run([path.join(bin, 'psql'), '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-q', '-c', `CREATE DATABASE ${name}`], 'createdb');
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      const alive = (): boolean => {
        try { process.kill(pid, 0); return true; } catch { return false; }
      };
      try { process.kill(pid, 'SIGINT'); } catch { /* gone */ }
      const deadline = Date.now() + 10000;
      while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (alive()) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 50));
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

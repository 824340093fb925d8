import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * A real Orthanc (+ DICOMweb plugin) for integration tests: 127.0.0.1 only (RemoteAccessAllowed false), a free
 * port, a temp storage dir; stopped by PID with SIGTERM (SIGKILL after 10 s) and the dir removed.
 */
export const ORTHANC_BIN = process.env.ORTHANC_BIN ?? '/usr/sbin/Orthanc';
export const ORTHANC_DICOMWEB_PLUGIN = process.env.ORTHANC_DICOMWEB_PLUGIN ?? '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

export interface OrthancHandle {
  /** http://127.0.0.1:PORT */
  url: string;
  /** http://127.0.0.1:PORT/dicom-web */
  dicomWeb: string;
  pid: number;
  dir: string;
  port: number;
  stop(): Promise<void>;
  /** SIGKILL by PID, storage kept: `startOrthanc({ dir, port })` brings the same Orthanc back. */
  kill(): Promise<void>;
}

export function orthancAvailable(): boolean {
  return fs.existsSync(ORTHANC_BIN) && fs.existsSync(ORTHANC_DICOMWEB_PLUGIN);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function startOrthanc(opts: { dir?: string; port?: number } = {}): Promise<OrthancHandle> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'warden-orthanc-'));
  const port = opts.port ?? await freePort();
  const config = {
    Name: 'warden-test',
    StorageDirectory: path.join(dir, 'db'),
    IndexDirectory: path.join(dir, 'db'),
    Plugins: [ORTHANC_DICOMWEB_PLUGIN],
    HttpPort: port,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomServerEnabled: false,
    HttpTimeout: 60,
    StableAge: 3600,
    DicomWeb: { Enable: true, Root: '/dicom-web/', EnableWado: true },
  };
  const configFile = path.join(dir, 'orthanc.json');
  fs.writeFileSync(configFile, JSON.stringify(config));
  const log = fs.openSync(path.join(dir, 'orthanc.log'), 'a');
  const child: ChildProcess = spawn(ORTHANC_BIN, [configFile], { stdio: ['ignore', log, log], detached: false });
  fs.closeSync(log);
  const pid = child.pid!;
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20000;
  for (;;) {
    if (exited) throw new Error(`Orthanc exited during start-up; log: ${fs.readFileSync(path.join(dir, 'orthanc.log'), 'utf8').slice(-2000)}`);
    try {
      const res = await fetch(`${url}/dicom-web/studies`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) { process.kill(pid, 'SIGKILL'); throw new Error('Orthanc did not become ready in 20 s'); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url, dicomWeb: `${url}/dicom-web`, pid, dir, port,
    async kill() {
      if (!exited) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        await exit;
      }
    },
    async stop() {
      if (!exited) {
        try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ }
        const t = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, 10000);
        await exit;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

import { spawn } from 'node:child_process';
import * as path from 'node:path';

/**
 * `warden serve` as a user runs it: bin/warden.js in its own process, on 127.0.0.1, ready when /readyz answers 200;
 * stopped by PID (SIGTERM, then the gateway finishes in-flight requests and exits).
 */
export interface GatewayProcess {
  url: string;
  stop(): Promise<void>;
}

const ROOT = path.resolve(__dirname, '..', '..');

/** @param argv arguments after `node bin/warden.js` (they must include `serve` and `--port`) */
export async function startGatewayProcess(argv: string[], port: number, cwd: string): Promise<GatewayProcess> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), ...argv], {
    cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, WARDEN_HOST: '127.0.0.1', WARDEN_LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.on('data', (c) => { stderr += String(c); });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 150 && child.exitCode === null; i++) {
    if (await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) return { url, stop };
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop();
  throw new Error(`warden serve did not become ready: ${stderr}`);
}

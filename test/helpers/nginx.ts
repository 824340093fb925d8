import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './orthanc';

/**
 * Debian's nginx as a round-robin front (a stand-in for a Kubernetes Service) for multi-replica tests: 127.0.0.1
 * only, one listening port per named upstream group, settings for streamed STOW-RS bodies (no size limit, no request
 * or response buffering, HTTP/1.1 to the backends). Each answer says which backend served it in `X-Warden-Replica`.
 * POSTs are never retried on another backend once sent (nginx's default for non-idempotent requests): a request
 * in flight on a killed backend is answered 502, as a Service would drop it. Stopped by PID (SIGQUIT, SIGKILL after 10 s).
 * scripts/setup.sh --with-nginx installs it.
 */
export const NGINX_BIN = process.env.NGINX_BIN ?? '/usr/sbin/nginx';

export interface NginxHandle {
  /** Base URL of each group, e.g. { one: 'http://127.0.0.1:P1', two: 'http://127.0.0.1:P2' } */
  urls: Record<string, string>;
  dir: string;
  stop(): Promise<void>;
}

export function nginxAvailable(): boolean {
  return fs.existsSync(NGINX_BIN);
}

/** @param groups name → backend ports (round-robin over them) */
export async function startNginx(groups: Record<string, number[]>): Promise<NginxHandle> {
  if (!nginxAvailable()) throw new Error(`nginx not found at ${NGINX_BIN}: bash scripts/setup.sh --with-nginx`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-nginx-'));
  fs.chmodSync(dir, 0o755);
  const ports: Record<string, number> = {};
  for (const name of Object.keys(groups)) ports[name] = await freePort();
  const upstreams = Object.entries(groups).map(([name, backends]) => `
  upstream ${name} {
${backends.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=30s;`).join('\n')}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${ports[name]};
    location / {
      proxy_pass http://${name};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      client_max_body_size 0;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
      add_header X-Warden-Replica $upstream_addr always;
    }
  }`).join('\n');
  const conf = `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${upstreams}
}
`;
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const child: ChildProcess = spawn(NGINX_BIN, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c) => { stderr += String(c); });
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  const urls = Object.fromEntries(Object.entries(ports).map(([n, p]) => [n, `http://127.0.0.1:${p}`]));
  const deadline = Date.now() + 10000;
  for (;;) {
    if (exited) throw new Error(`nginx exited during start-up: ${stderr}`);
    const up = await Promise.all(Object.values(ports).map((p) => new Promise<boolean>((resolve) => {
      const s = net.connect(p, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    })));
    if (up.every(Boolean)) break;
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`nginx did not listen in 10 s: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    urls, dir,
    async stop() {
      if (!exited) {
        child.kill('SIGQUIT');
        const t = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exit;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

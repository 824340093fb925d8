/**
 * The container image, checked statically (building it takes minutes and a Debian mirror, so CI does not):
 * deploy/image/Dockerfile is multi-stage with a CPU default and a CUDA target, runs as a non-root user with tini as
 * PID 1 and the volumes the chart mounts; the offline build (build-offline.sh) configures the same user, entrypoint,
 * environment and volumes; the chart runs the image the way both set it up; the scripts parse (bash -n).
 * The build and the podman smoke run are documented in docs/deploy.md ("Image").
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';

const ROOT = path.resolve(__dirname, '..', '..');
const IMAGE = path.join(ROOT, 'deploy', 'image');
const dockerfile = fs.readFileSync(path.join(IMAGE, 'Dockerfile'), 'utf8');
const offline = fs.readFileSync(path.join(IMAGE, 'build-offline.sh'), 'utf8');
const values = parse(fs.readFileSync(path.join(ROOT, 'deploy/helm/warden/values.yaml'), 'utf8'));

/** The instructions of one stage of the Dockerfile (continuation lines joined). */
function stage(name: string): string[] {
  const lines = dockerfile.replace(/\\\n\s*/g, ' ').split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  const start = lines.findIndex((l) => new RegExp(`^FROM \\S+ AS ${name}$`).test(l));
  expect(start).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((l, i) => i > start && l.startsWith('FROM '));
  return lines.slice(start, end < 0 ? undefined : end);
}

describe('deploy/image', () => {
  it('the Dockerfile builds in stages: build (tsc, production dependencies), CPU runtime by default, CUDA runtime on request', () => {
    const froms = [...dockerfile.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gm)].map((m) => m[2] ?? `(final) ${m[1]}`);
    expect(froms).toEqual(['build', 'build-cuda', 'runtime-cpu', 'runtime-cuda', '(final) runtime-cpu']);
    const build = stage('build').join('\n');
    expect(build).toMatch(/ENV ONNXRUNTIME_NODE_INSTALL=skip/);
    expect(build).toMatch(/npm ci/);
    expect(build).toMatch(/npx tsc -p tsconfig.json/);
    expect(build).toMatch(/npm prune --omit=dev/);
    expect(stage('build-cuda').join('\n')).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12/);
    expect(stage('runtime-cuda').join('\n')).toMatch(/COPY --from=build-cuda \/out\/app \/app/);
    // base images are pinned to a version, never :latest
    for (const m of dockerfile.matchAll(/^ARG \w+_IMAGE=(\S+)$/gm)) expect(m[1]).toMatch(/:[0-9][^:]*$|:bookworm-slim$/);
  });

  it('both runtimes run as user 10001 under tini with the chart\'s volumes, and the offline build configures the same', () => {
    for (const name of ['runtime-cpu', 'runtime-cuda']) {
      const s = stage(name).join('\n');
      expect(s).toMatch(/^USER 10001:10001$/m);
      expect(s).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--", "\/usr\/local\/bin\/node", "\/app\/bin\/warden.js"\]$/m);
      expect(s).toMatch(/^CMD \["serve", "--config", "\/etc\/warden\/config\/warden.yaml"\]$/m);
      expect(s).toMatch(/^VOLUME \["\/tmp", "\/var\/lib\/warden\/state", "\/var\/lib\/warden\/quarantine", "\/var\/lib\/warden\/spool"\]$/m);
      for (const env of ['WARDEN_STATE_DIR=/var/lib/warden/state', 'TMPDIR=/tmp', 'MALLOC_MMAP_THRESHOLD_=131072', 'MALLOC_ARENA_MAX=2']) expect(s).toContain(env);
    }
    expect(offline).toMatch(/--user 10001:10001/);
    expect(offline).toContain(`--entrypoint '["/usr/bin/tini", "--", "/usr/local/bin/node", "/app/bin/warden.js"]'`);
    expect(offline).toContain(`--cmd '["serve", "--config", "/etc/warden/config/warden.yaml"]'`);
    for (const v of ['/tmp', '/var/lib/warden/state', '/var/lib/warden/quarantine', '/var/lib/warden/spool']) expect(offline).toContain(`--volume ${v}`);
    for (const env of ['WARDEN_STATE_DIR=/var/lib/warden/state', 'TMPDIR=/tmp', 'MALLOC_MMAP_THRESHOLD_=131072', 'MALLOC_ARENA_MAX=2']) expect(offline).toContain(`--env ${env}`);
    // the chart's pod matches: same user, the config where CMD reads it, read-only root
    expect(values.podSecurityContext).toMatchObject({ runAsUser: 10001, runAsGroup: 10001, runAsNonRoot: true });
    expect(values.securityContext.readOnlyRootFilesystem).toBe(true);
    const deployment = fs.readFileSync(path.join(ROOT, 'deploy/helm/warden/templates/deployment.yaml'), 'utf8');
    expect(deployment).toContain('args: ["serve", "--config", "/etc/warden/config/warden.yaml"]');
  });

  it('the build context leaves out what the build stage makes itself', () => {
    const ignored = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', 'data', '.git', '.cache']) expect(ignored).toContain(p);
    for (const copied of [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1].split(/\s+/))) {
      expect([copied, fs.existsSync(path.join(ROOT, copied))]).toEqual([copied, true]);
      expect(ignored).not.toContain(copied.split('/')[0]);
    }
  });

  it('the image scripts are valid bash', () => {
    for (const f of ['build-offline.sh', 'build-dockerfile-offline.sh', 'smoke.sh', 'prune-runtime.sh']) {
      const res = spawnSync('bash', ['-n', path.join(IMAGE, f)], { encoding: 'utf8' });
      expect([f, res.status, res.stderr]).toEqual([f, 0, '']);
    }
  });
});

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * Helm for the chart tests: the binary scripts/fetch-helm.sh put in .cache/helm (HELM_BIN overrides). Helm is not a
 * Debian package and not a project dependency; `bash scripts/setup.sh --with-helm` fetches it.
 */
export const ROOT = path.resolve(__dirname, '..', '..');
export const CHART = path.join(ROOT, 'deploy', 'helm', 'warden');
export const EXAMPLES = path.join(ROOT, 'deploy', 'helm', 'examples');
export const HELM = process.env.HELM_BIN ?? path.join(ROOT, '.cache', 'helm', 'helm');

export function helmAvailable(): boolean {
  return fs.existsSync(HELM);
}

export interface HelmRun { status: number; stdout: string; stderr: string }

/** Runs helm with a private home (no user config, no repositories), offline. */
export function helm(args: string[]): HelmRun {
  if (!helmAvailable()) throw new Error(`Helm not found at ${HELM}: run bash scripts/setup.sh --with-helm`);
  const home = path.join(ROOT, '.cache', 'helm', 'home');
  const res = spawnSync(HELM, args, {
    encoding: 'utf8', timeout: 60000,
    env: { PATH: process.env.PATH, HOME: home, HELM_CACHE_HOME: path.join(home, 'cache'), HELM_CONFIG_HOME: path.join(home, 'config'), HELM_DATA_HOME: path.join(home, 'data') },
  });
  // Helm logs an INFO line per symbolic link it follows (files/ links to deploy/prometheus and deploy/grafana)
  const stderr = (res.stderr ?? '').split('\n').filter((l) => l && !l.includes('found symbolic link in path')).join('\n');
  return { status: res.status ?? -1, stdout: res.stdout ?? '', stderr };
}

export interface K8sObject { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: any }

/** `helm template` with values files and --set flags; the rendered objects. Throws with Helm's message on failure. */
export function template(valuesFiles: string[] = [], sets: string[] = []): K8sObject[] {
  const args = ['template', 'warden', CHART, '--namespace', 'imaging'];
  for (const f of valuesFiles) args.push('-f', f);
  for (const s of sets) args.push('--set', s);
  const run = helm(args);
  if (run.status !== 0) throw new Error(`helm template failed (${run.status}): ${run.stderr}`);
  return parseAllDocuments(run.stdout).map((d) => d.toJSON()).filter((o): o is K8sObject => o !== null && typeof o === 'object');
}

import { combinePValues } from './decide';
import { formatP } from './reasons';
import type { Policy, SignalPolicy } from './schema';

/**
 * The policy's thresholds that the deciding detectors cannot reach. With n calibration scores a conformal p-value
 * is at least 1 / (n + 1), and the combination rule lifts the smallest combined p-value further (Bonferroni: k · min
 * floor; twice the mean: 2 · mean floor), so an instance's combined p-value never goes below it. `floors` maps each
 * predicted class (label) to the floor of every detector for instances of that class (class-calibrated detectors
 * differ by class). Returns one sentence per unreachable threshold (empty when all can be reached for every class).
 */
export function unreachableThresholds(policy: Policy, floors: Record<string, Record<string, number>>): string[] {
  const checks: { key: string; threshold: number; signal: SignalPolicy; action: 'blocked' | 'flagged' }[] = [
    { key: 'adversarial.blockFpr', threshold: policy.adversarial.blockFpr, signal: policy.adversarial, action: 'blocked' },
    { key: 'adversarial.flagFpr', threshold: policy.adversarial.flagFpr, signal: policy.adversarial, action: 'flagged' },
    { key: 'domain.flagFpr', threshold: policy.domain.flagFpr, signal: policy.domain, action: 'flagged' },
  ];
  const classes = Object.keys(floors);
  const problems: string[] = [];
  for (const { key, threshold, signal, action } of checks) {
    const hit: { label: string; floor: number; used: string[] }[] = [];
    for (const label of classes) {
      const used = signal.decideBy.filter((name) => floors[label][name] !== undefined);
      if (used.length === 0) continue;
      const floor = combinePValues(used.map((name) => floors[label][name]), signal.combine);
      if (threshold < floor) hit.push({ label, floor, used });
    }
    if (hit.length === 0) continue;
    const who = hit.length === classes.length ? 'any instance' : `instances predicted ${hit.map((h) => `"${h.label}"`).join(', ')}`;
    const floor = Math.min(...hit.map((h) => h.floor));
    problems.push(`policy.${key} ${threshold} is below ${formatP(floor)}, the smallest p-value that ${hit[0].used.join('+')} can give ${who} `
      + `with this bundle's calibration set: ${hit.length === classes.length ? 'no instance can ever' : 'those can never'} be `
      + `${action} by the detectors. Raise it, or refit the bundle with a larger calibration split.`);
  }
  return problems;
}

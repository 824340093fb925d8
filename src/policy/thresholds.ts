import { combinePValues } from './decide';
import { formatP } from './reasons';
import type { Policy } from './schema';

/**
 * The policy's thresholds that the deciding detectors cannot reach. With n calibration scores a conformal p-value
 * is at least 1 / (n + 1), and Bonferroni multiplies the smallest by the number of detectors, so the combined
 * p-value of an instance never goes below k · min floor. `floors` maps each predicted class (label) to the floor of
 * every detector for instances of that class (class-calibrated detectors differ by class). Returns one sentence
 * per unreachable threshold (empty when both can be reached for every class).
 */
export function unreachableThresholds(policy: Policy, floors: Record<string, Record<string, number>>): string[] {
  const classes = Object.keys(floors);
  const problems: string[] = [];
  for (const key of ['blockFpr', 'flagFpr'] as const) {
    const hit: { label: string; floor: number; used: string[] }[] = [];
    for (const label of classes) {
      const used = policy.decideBy.filter((name) => floors[label][name] !== undefined);
      if (used.length === 0) continue;
      const floor = combinePValues(used.map((name) => floors[label][name]));
      if (policy[key] < floor) hit.push({ label, floor, used });
    }
    if (hit.length === 0) continue;
    const who = hit.length === classes.length ? 'any instance' : `instances predicted ${hit.map((h) => `"${h.label}"`).join(', ')}`;
    const floor = Math.min(...hit.map((h) => h.floor));
    problems.push(`policy.${key} ${policy[key]} is below ${formatP(floor)}, the smallest p-value that ${hit[0].used.join('+')} can give ${who} `
      + `with this bundle's calibration set: ${hit.length === classes.length ? 'no instance can ever' : 'those can never'} be `
      + `${key === 'blockFpr' ? 'blocked' : 'flagged'} by the detectors. Raise it, or refit the bundle with a larger calibration split.`);
  }
  return problems;
}

import type { Signal } from '../core/types';
import type { Policy } from './schema';

/**
 * The policy against the bundle it will read, before any instance is scanned. Blocking needs adversarial evidence:
 * a domain detector named under `adversarial.decideBy` would block unfamiliar images, and an adversarial signal none
 * of whose detectors is in the bundle would turn every scan into an error (fail-closed: everything blocked). Both are
 * start-up errors; a signal missing some of its detectors is a warning (the ones present decide).
 *
 * @param signals the bundle's detector ids and the signal each answers
 */
export function policySignalProblems(policy: Policy, signals: Record<string, Signal>): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  const known = Object.keys(signals);
  for (const which of ['adversarial', 'domain'] as const) {
    const s = policy[which];
    const wrong = s.decideBy.filter((id) => signals[id] !== undefined && signals[id] !== which);
    if (wrong.length) {
      errors.push(`policy.${which}.decideBy names ${wrong.map((id) => `${id} (${signals[id] === 'adversarial' ? 'an' : 'a'} ${signals[id]} detector)`).join(', ')}; ` +
        `${which === 'adversarial' ? 'only adversarial-signal detectors may block: move it to policy.domain.decideBy' : 'move it to policy.adversarial.decideBy'}.`);
    }
    const absent = s.decideBy.filter((id) => signals[id] === undefined);
    if (s.decideBy.length > 0 && absent.length === s.decideBy.length) {
      const msg = `policy.${which}.decideBy names ${absent.join(', ')}, none of which is in the detector bundle (it has ${known.join(', ') || 'none'})`;
      if (which === 'adversarial') errors.push(`${msg}: every scan would fail and be handled by policy.onError.model. Refit the bundle with \`warden fit\` (its default detectors include them) or name the bundle's adversarial detectors.`);
      else warnings.push(`${msg}: the domain signal is off.`);
    } else if (absent.length) {
      warnings.push(`policy.${which}.decideBy names ${absent.join(', ')}, not in the detector bundle: the ${which} signal rests on ${s.decideBy.filter((id) => !absent.includes(id)).join(', ')}.`);
    }
  }
  return { errors, warnings };
}

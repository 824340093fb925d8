import { compose } from '../../src/pipeline';
import { DEFAULT_POLICY, policySignalProblems, type Policy } from '../../src/policy';
import { WardenError } from '../../src/core/errors';

const signals = { uad: 'domain', mgm: 'domain', squeeze: 'adversarial', coherence: 'adversarial', margin: 'adversarial' } as const;
const withSignals = (adversarial: string[], domain: string[]): Policy => ({
  ...DEFAULT_POLICY,
  adversarial: { ...DEFAULT_POLICY.adversarial, decideBy: adversarial },
  domain: { ...DEFAULT_POLICY.domain, decideBy: domain },
});

describe('the policy against the bundle at start-up', () => {
  it('accepts the shipped policy with the shipped detectors', () => {
    expect(policySignalProblems(DEFAULT_POLICY, signals)).toEqual({ errors: [], warnings: [] });
  });

  it('refuses a domain detector among the detectors that block, and the reverse', () => {
    const { errors } = policySignalProblems(withSignals(['squeeze', 'uad'], ['coherence']), signals);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/policy\.adversarial\.decideBy names uad \(a domain detector\); only adversarial-signal detectors may block/);
    expect(errors[1]).toMatch(/policy\.domain\.decideBy names coherence \(an adversarial detector\)/);
  });

  it('refuses an adversarial signal none of whose detectors is in the bundle (every scan would fail closed)', () => {
    const { errors } = policySignalProblems(withSignals(['squeeze'], []), { uad: 'domain' });
    expect(errors).toEqual([expect.stringMatching(/none of which is in the detector bundle \(it has uad\): every scan would fail/)]);
  });

  it('warns when some detectors of a signal are missing, or the domain signal has none', () => {
    const { errors, warnings } = policySignalProblems(withSignals(['squeeze', 'coherence'], ['kd']), { squeeze: 'adversarial', uad: 'domain' });
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      expect.stringMatching(/adversarial\.decideBy names coherence, not in the detector bundle: the adversarial signal rests on squeeze/),
      expect.stringMatching(/domain\.decideBy names kd, none of which is in the detector bundle.*the domain signal is off/),
    ]);
  });

  it('stops compose() with CONFIG_INVALID before any worker starts', async () => {
    const err = await compose({ workers: 1, policy: withSignals(['uad'], []) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WardenError);
    expect((err as WardenError).code).toBe('CONFIG_INVALID');
    expect((err as Error).message).toMatch(/names uad \(a domain detector\)/);
  });
});

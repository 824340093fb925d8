"""Score the adaptive examples with Warden (its real decode path) and print the table docs/adaptive.md carries.

    /usr/bin/python3 lab/adaptive/report.py [data/adaptive]

For each eps directory: `node bin/warden.js scan <dir> --json`; an example succeeds against the model when Warden's
prediction differs from the label, and against model + Warden at an operating point when it also passes that point:
not blocked (block at p <= 0.005) / not flagged by the adversarial signal (p <= 0.05). Non-adaptive reference rows
come from the test report (data/eval-test/report.json) when present.
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import DATA, REPO, read_splits  # noqa: E402


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DATA, 'adaptive')
    summary = json.load(open(os.path.join(root, 'summary.json')))
    test = [r for r in read_splits() if r['split'] == 'test']
    sel = np.load(os.path.join(DATA, 'attacks', 'subset.npz'))['sel'][:summary['n']]
    rows = []
    for e, row in sorted(summary['rows'].items(), key=lambda kv: int(kv[0])):
        d = os.path.join(root, 'eps%s' % e)
        recs = []
        if row['files']:
            out = subprocess.run(['node', os.path.join(REPO, 'bin', 'warden.js'), 'scan', d, '--json'], capture_output=True, text=True, cwd=REPO)
            recs = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
        n = summary['n']
        flipped = blocked = adv_flag = dom_flag = 0
        for r in recs:
            i = int(os.path.basename(r['file'])[3:6])
            label = int(test[sel[i]]['label'])
            if r.get('status') != 'scanned' or r['prediction']['index'] == label:
                continue
            flipped += 1
            reasons = r.get('reasons') or []
            blocked += r['verdict'] == 'block'
            adv_flag += any(x.get('signal') == 'adversarial' for x in reasons)
            dom_flag += any(x.get('signal') == 'domain' for x in reasons)
        rows.append(dict(eps=int(e), n=n, flipped=flipped, caught_flag=adv_flag, caught_block=blocked, domain_flag=dom_flag,
                         success_vs_model=flipped / n, success_vs_warden_flag=(flipped - adv_flag) / n,
                         success_vs_warden_block=(flipped - blocked) / n, mean_l2=row['mean_l2_flipped']))
    print('| ε | n | flips the model | caught at 5 % (flagged, adversarial) | caught at 0.5 % (blocked) | attack success vs model + Warden at 5 % / 0.5 % | flagged out of domain (UAD, not attacked) | mean L2 of flips |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        f = max(r['flipped'], 1)
        print('| %d/255 | %d | %d (%.0f %%) | %d of %d (%.0f %%) | %d of %d (%.0f %%) | %.0f %% / %.0f %% | %d of %d | %.2f |' % (
            r['eps'], r['n'], r['flipped'], 100 * r['success_vs_model'], r['caught_flag'], r['flipped'], 100 * r['caught_flag'] / f,
            r['caught_block'], r['flipped'], 100 * r['caught_block'] / f, 100 * r['success_vs_warden_flag'], 100 * r['success_vs_warden_block'],
            r['domain_flag'], r['flipped'], r['mean_l2'] or 0))
    json.dump({'budget': {k: summary[k] for k in ('n', 'steps', 'restarts', 'lam', 'kappa')}, 'rows': rows}, open(os.path.join(root, 'report.json'), 'w'), indent=1)


if __name__ == '__main__':
    main()

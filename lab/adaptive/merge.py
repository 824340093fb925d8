"""Merge a later full.py run into an earlier one: each of its rows replaces the earlier row of the same attack and eps
(a re-run at a larger budget), its example images join the earlier ones, and a note records the replacement.

    /usr/bin/python3 lab/adaptive/merge.py data/adaptive-full data/adaptive-full-eps3
"""
import json
import os
import sys

import numpy as np


def main():
    base, extra = sys.argv[1], sys.argv[2]
    p = os.path.join(base, 'summary.json')
    s, n = json.load(open(p)), json.load(open(os.path.join(extra, 'summary.json')))
    for new in n['rows']:
        new['eps'] = float(new['eps'])
        old = [r for r in s['rows'] if r['kind'] == new['kind'] and float(r['eps']) == new['eps']]
        if old:
            s['rows'][s['rows'].index(old[0])] = new
        else:
            s['rows'].append(new)
        s.setdefault('notes', []).append('%s at %g/255 was re-run at %d steps x %d restarts (%.0f s) in a later call of the same loan%s (%s).' % (
            new['kind'], new['eps'], new['steps'], new['restarts'], new['seconds'],
            '; it replaces the first call\'s %d-step row' % old[0]['steps'] if old else '', os.path.relpath(extra)))
    keep = {}
    for f in sorted(os.listdir(extra)):
        if f.startswith('adv_') and f.endswith('.npz'):
            z = np.load(os.path.join(extra, f))
            keep.update({k: z[k] for k in z.files})
    if keep:
        np.savez(os.path.join(base, 'adv_merged_%s.npz' % os.path.basename(os.path.normpath(extra))), **keep)
    os.chmod(p, 0o644)
    json.dump(s, open(p, 'w'))
    print('merged %d rows and %d example sets from %s' % (len(n['rows']), len(keep), extra))


if __name__ == '__main__':
    main()

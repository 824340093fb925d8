"""Group-wise split of the Kermany train split into model_train / detector_fit / calibration."""
import collections
import csv
import random

from common import SEED, SPLITS_CSV, log, read_labels

FRACS = (('model_train', 0.70), ('detector_fit', 0.15), ('calibration', 0.15))


def main():
    rows = read_labels()
    train = [r for r in rows if r['split'] == 'train']
    # union-find over source_id and exact_dup_group so that duplicates never straddle splits
    parent = {}

    def find(a):
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r in train:
        a = find('src:' + r['source_id'])
        if r['exact_dup_group']:
            b = find('dup:' + r['exact_dup_group'])
            parent[b] = a
    groups = collections.defaultdict(list)
    for r in train:
        groups[find('src:' + r['source_id'])].append(r)
    # stratify by majority label of the group
    rng = random.Random(SEED)
    assign = {}
    for lab in ('0', '1'):
        gs = sorted(k for k, v in groups.items() if collections.Counter(x['label'] for x in v).most_common(1)[0][0] == lab)
        rng.shuffle(gs)
        total = sum(len(groups[g]) for g in gs)
        acc = 0
        for g in gs:
            frac = acc / total
            split = 'model_train' if frac < FRACS[0][1] else ('detector_fit' if frac < FRACS[0][1] + FRACS[1][1] else 'calibration')
            assign[g] = split
            acc += len(groups[g])
    out = []
    for r in rows:
        s = assign[find('src:' + r['source_id'])] if r['split'] == 'train' else 'test'
        out.append((r['path'], s))
    with open(SPLITS_CSV, 'w', newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(['path', 'split'])
        w.writerows(out)
    c = collections.Counter((s, r['label']) for (p, s), r in zip(out, rows))
    for s in ('model_train', 'detector_fit', 'calibration', 'test'):
        log('%-13s n=%4d normal=%4d pneumonia=%4d' % (s, c[(s, '0')] + c[(s, '1')], c[(s, '0')], c[(s, '1')]))


if __name__ == '__main__':
    main()

"""Markdown tables from data/adversarial/{dev,test}.json (eval_adversarial.py), for lab/detectors/ADVERSARIAL.md.

    /usr/bin/python3 lab/detectors/report_adversarial.py dev [--top 25] [--policies a,b]
    /usr/bin/python3 lab/detectors/report_adversarial.py test
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import DATA  # noqa: E402

ATTACK_ORDER = ['fgsm', 'bim', 'pgd_linf', 'mim', 'pgd_l2', 'cw_l2', 'cw_l2_k0', 'cw_l2_k5', 'cw_l2_k20', 'deepfool', 'uap',
                'patch', 'transfer_pgd_linf']
CORR_ORDER = ['jpeg', 'gaussian_noise', 'poisson_noise', 'speckle', 'gaussian_blur', 'unsharp_mask', 'contrast', 'gamma',
              'resample', 'requant12', 'gaussian_noise_orig', 'jpeg50', 'exposure_0.9', 'exposure_1.1']


def pct(x):
    return '%.1f' % (100 * x)


def attack_key(k):
    a, e = k.split('|')
    return (ATTACK_ORDER.index(a) if a in ATTACK_ORDER else 99, float(e) if e else 0)


def summary_row(name, m):
    g = m['goals']
    att = m['attacks']

    def au(k):
        return '%.3f' % att[k]['auroc'] if k in att else '–'

    def tp(k):
        return pct(att[k]['tpr1']) if k in att else '–'
    linf = [v for k, v in g['linf_tpr1'].items()]
    eps1 = [att[k]['tpr1'] for k in att if k.split('|')[0] in ('fgsm', 'bim', 'pgd_linf', 'mim') and k.split('|')[1] == '1']
    eps1a = [att[k]['auroc'] for k in att if k.split('|')[0] in ('fgsm', 'bim', 'pgd_linf', 'mim') and k.split('|')[1] == '1']
    tr = [att[k]['auroc'] for k in att if k.startswith('transfer')]
    return '| %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |' % (
        name, pct(m['clean']['flag']), pct(g['benign_worst_flag']), pct(g['benign_worst_block']), g['foreign_blocked'],
        au('cw_l2_k0|'), au('deepfool|'), au('pgd_l2|0.5'), pct(min(linf)) if linf else '–',
        pct(sum(linf) / len(linf)) if linf else '–', '%.3f' % min(eps1a) if eps1a else '–', pct(min(eps1)) if eps1 else '–',
        '%.3f / %.3f / %.3f' % tuple(tr) if len(tr) == 3 else '–')


SUMMARY_HEAD = ('| detector / policy | clean flag % | worst sev 1–2 flag % | worst sev 1–2 block % | foreign blocked | '
                'AUROC CW κ0 | AUROC DeepFool | AUROC PGD-L2 0.5 | min TPR@1 % L∞ ε≥2 | mean TPR@1 % L∞ ε≥2 | min AUROC ε=1 | '
                'min TPR@1 % ε=1 | transfer AUROC 2/4/8 |\n|' + '---|' * 13)


def attacks_table(ms):
    """ms: {name: metrics}. One row per attack x eps, AUROC / TPR@1 / TPR@5 per column."""
    names = list(ms)
    keys = sorted(set().union(*[set(m['attacks']) for m in ms.values()]), key=attack_key)
    out = ['| attack | ε | n | ' + ' | '.join(names) + ' |', '|---|---|---|' + '---|' * len(names)]
    for k in keys:
        a, e = k.split('|')
        n = next(m['attacks'][k]['n'] for m in ms.values() if k in m['attacks'])
        cells = []
        for nm in names:
            v = ms[nm]['attacks'].get(k)
            cells.append('%.3f / %s / %s' % (v['auroc'], pct(v['tpr1']), pct(v['tpr5'])) if v else '–')
        out.append('| %s | %s | %d | %s |' % (a, e or '–', n, ' | '.join(cells)))
    return '\n'.join(out)


def benign_table(ms):
    names = list(ms)
    keys = sorted(set().union(*[set(m['benign']) for m in ms.values()]),
                  key=lambda k: (CORR_ORDER.index(k.split('|')[0]) if k.split('|')[0] in CORR_ORDER else 99, k))
    out = ['| corruption | severity | n | ' + ' | '.join(names) + ' |', '|---|---|---|' + '---|' * len(names)]
    for k in keys:
        c, s = k.split('|')
        n = next(m['benign'][k]['n'] for m in ms.values() if k in m['benign'])
        cells = []
        for nm in names:
            v = ms[nm]['benign'].get(k)
            flag = v['flag'] > 0.10 and s in ('1', '2')
            blk = v['block'] > 0.01 and s in ('1', '2')
            cells.append('%s%s%s / %s%s%s' % ('**' if flag else '', pct(v['flag']), '**' if flag else '',
                                            '**' if blk else '', pct(v['block']), '**' if blk else '') if v else '–')
        out.append('| %s | %s | %d | %s |' % (c, s or '–', n, ' | '.join(cells)))
    cells = []
    for nm in names:
        f = ms[nm]['foreign']
        cells.append('%d / %d of %d' % (f['flag'], f['block'], f['n']))
    out.append('| foreign radiographs | – | %d | %s |' % (next(iter(ms.values()))['foreign']['n'], ' | '.join(cells)))
    cells = [pct(ms[nm]['clean']['flag']) + ' / ' + pct(ms[nm]['clean']['block']) for nm in names]
    out.append('| clean negatives | – | %d | %s |' % (next(iter(ms.values()))['clean']['n'], ' | '.join(cells)))
    return '\n'.join(out)


def main():
    phase = sys.argv[1]
    res = json.load(open(os.path.join(DATA, 'adversarial', phase + '.json')))
    top = int(sys.argv[sys.argv.index('--top') + 1]) if '--top' in sys.argv else 30
    print('## %s: single detectors (flag 5 %% / block 0.5 %%)\n' % phase)
    print(SUMMARY_HEAD)
    single = res['single']

    def rank(item):
        g = item[1]['goals']
        return (g['benign_block_ok'] and g['foreign_blocked'] == 0, g['benign_flag_ok'], g['n_auroc_met'] + g['n_linf_met'],
                (g['mean_linf_tpr1'] or 0) + sum(g['auroc_goal'].values()))
    for name, m in sorted(single.items(), key=rank, reverse=True)[:top]:
        print(summary_row(name, m))
    for name in ('kd', 'lid', 'mgm', 'uad', 'nrd'):
        if name in single and name not in dict(sorted(single.items(), key=rank, reverse=True)[:top]):
            print(summary_row(name, single[name]))
    pols = res.get('policies', {})
    if pols:
        print('\n## %s: policies\n' % phase)
        print(SUMMARY_HEAD)
        want = sys.argv[sys.argv.index('--policies') + 1].split(',') if '--policies' in sys.argv else None
        items = [(k, pols[k]) for k in want] if want else sorted(pols.items(), key=rank, reverse=True)[:top]
        for name, m in items:
            print(summary_row(name + (' [views: %s]' % ','.join(m['views']) if m.get('views') else ''), m))
    if '--detail' in sys.argv:
        names = sys.argv[sys.argv.index('--detail') + 1].split(',')
        ms = {n: (pols.get(n) or single[n]) for n in names}
        print('\n## %s: per attack (AUROC / TPR@1 %% / TPR@5 %%)\n' % phase)
        print(attacks_table(ms))
        print('\n## %s: benign corruptions and foreign (flag %% / block %%; bold = misses the severity 1–2 goal)\n' % phase)
        print(benign_table(ms))


if __name__ == '__main__':
    main()

"""Print the markdown result tables for lab/README.md from data/eval.json and data/attacks/summary.json."""
import json
import os

from common import DATA

ev = json.load(open(os.path.join(DATA, 'eval.json')))
print('### Reference model (selected epoch %d, threshold folded: %s)\n' % (ev['selected_epoch'], ev['threshold_folded']))
print('| split | n | accuracy | ROC-AUC | confusion [[TN, FP], [FN, TP]] |\n|---|---:|---:|---:|---|')
for s, v in ev['deployed'].items():
    print('| %s | %d | %.4f | %.4f | %s |' % (s, v['n'], v['accuracy'], v['roc_auc'], v['confusion_matrix']))
print('\nONNX vs torch: max |diff| %.2e (all outputs), max |diff|/max(1,|ref|) %.2e; size %d bytes; %d params\n' % (
    ev['onnx_parity_max_abs_all'], ev['onnx_parity_max_rel_all'], ev['onnx_size_bytes'], ev['params']))
p = os.path.join(DATA, 'attacks', 'summary.json')
if os.path.exists(p):
    sm = json.load(open(p))
    print('### Attacks (success = rounded uint8 image misclassified by the ONNX model)\n')
    print('| attack | norm | eps | attempted | success (torch) | success (ONNX) | rate | mean L∞ (8-bit) | mean L2 ([0,1]) | time s |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    order = ['fgsm', 'bim', 'pgd_linf', 'mim', 'pgd_l2', 'cw_l2', 'deepfool', 'uap', 'patch']
    rows = [(k, v) for k, v in sm['summary'].items() if not k.startswith('benign_')]
    rows.sort(key=lambda kv: (order.index(kv[1]['attack']), kv[1]['eps'] or 0))
    for k, v in rows:
        print('| %s | %s | %s | %d | %d | %d | %.1f%% | %s | %s | %.0f |' % (
            v['attack'], v['norm'] or '-', '%g' % v['eps'] if v['eps'] is not None else '-', v['attempted'],
            v['success_torch'], v['success_onnx'], 100.0 * v['success_onnx'] / v['attempted'],
            '%.2f' % (v['mean_linf'] * 255) if v['mean_linf'] is not None else '-',
            '%.3f' % v['mean_l2'] if v['mean_l2'] is not None else '-', v['seconds']))
    print('\n### Benign shifts (all 624 clean test images)\n')
    print('| shift | n | prediction changed (ONNX) | mean L∞ (8-bit) | mean L2 ([0,1]) |\n|---|---:|---:|---:|---:|')
    for k, v in sm['summary'].items():
        if k.startswith('benign_'):
            print('| %s | %d | %d | %.2f | %.3f |' % (k[7:], v['n'], v['pred_changed_onnx'], v['mean_linf'] * 255, v['mean_l2']))
    print('\nGaussian sigma = %.5f ([0,1] units) = %.2f grey levels\n' % (sm['gaussian_sigma'], sm['gaussian_sigma'] * 255))
    print('Timings (s): %s' % json.dumps({k: round(v) for k, v in sm['timings'].items()}))

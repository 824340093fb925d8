"""Write clean / adversarial / benign images as MONOCHROME2 DICOM + data/manifest.csv (deterministic).

Phase 1 writes the original suite (data/attacks: clean splits, the original attacks and benign shifts) exactly as
before, byte for byte. Phase 2 appends, with study numbers continuing after phase 1: the added attacks and the dev-set
attacks (data/attacks_extra) and the benign corruptions (data/corruptions). Dev rows carry split = detector_fit and
group names starting with `dev_`; corruption rows carry a `severity` (1-3, empty on every other row). `requant12`
corruptions are written as BitsAllocated 16 / BitsStored 12 with WindowCenter / WindowWidth; everything else as 8-bit."""
import csv
import hashlib
import os
import shutil
import time

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from common import DATA, ONNX_PATH, image_cache, log, read_splits, run_onnx

SC_CLASS = '1.2.840.10008.5.1.4.1.1.7'   # Secondary Capture Image Storage
IMPL_UID = '2.25.' + str(int(hashlib.sha256(b'warden-lab-impl').hexdigest()[:32], 16))
PER_STUDY = 10
ROOT = os.environ.get('LAB_DICOM_ROOT', DATA)          # manifest.csv and dicom/ live here
OUT = os.path.join(ROOT, 'dicom')
MANIFEST = os.path.join(ROOT, 'manifest.csv')
ADIR = os.environ.get('LAB_ATTACK_OUT', os.path.join(DATA, 'attacks'))
SMOKE = os.environ.get('LAB_DICOM_SMOKE') == '1'       # smoke test: 20 clean images per split
COLUMNS = ['file', 'study_uid', 'sop_uid', 'source', 'split', 'kind', 'attack', 'norm', 'eps', 'success', 'label',
           'pred_before', 'pred_after', 'linf', 'l2', 'severity']
XDIR = os.path.join(DATA, 'attacks_extra')
CDIR = os.path.join(DATA, 'corruptions')


def uid(*parts):
    h = hashlib.sha256('|'.join(str(p) for p in parts).encode()).hexdigest()
    return '2.25.' + str(int(h[:32], 16))


def write_dicom(path, pix, study_uid, series_uid, sop_uid, patient_no, study_no, inst_no, window=None):
    """8-bit unsigned; or, with window = (centre, width), 12 bits stored in 16 allocated with a VOI window."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SC_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPL_UID
    meta.ImplementationVersionName = 'WARDEN_LAB_1'
    ds = FileDataset(path, {}, file_meta=meta, preamble=b'\0' * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SpecificCharacterSet = 'ISO_IR 100'
    ds.ImageType = ['DERIVED', 'SECONDARY']
    ds.SOPClassUID = SC_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = '20240101'
    ds.StudyTime = '120000'
    ds.ContentDate = '20240101'
    ds.ContentTime = '120000'
    ds.AccessionNumber = 'WL%06d' % study_no
    ds.Modality = 'DX'
    ds.ConversionType = 'WSD'
    ds.Manufacturer = 'Warden lab (synthetic)'
    ds.ReferringPhysicianName = ''
    ds.StudyDescription = 'Synthetic chest X-ray (Kermany-derived)'
    ds.SeriesDescription = 'CXR'
    ds.PatientName = 'SYNTHETIC^PATIENT%04d' % patient_no
    ds.PatientID = 'SYN%04d' % patient_no
    ds.PatientBirthDate = ''
    ds.PatientSex = 'O'
    ds.BodyPartExamined = 'CHEST'
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = str(study_no)
    ds.SeriesNumber = 1
    ds.InstanceNumber = inst_no
    ds.PatientOrientation = ''
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.Rows, ds.Columns = pix.shape
    if window is None:
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
    else:
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = 'NO'
    if window is None:
        ds.PixelData = np.ascontiguousarray(pix, dtype=np.uint8).tobytes()
    else:
        assert pix.max() < 4096
        ds.WindowCenter = str(int(window[0]))
        ds.WindowWidth = str(int(window[1]))
        ds.PixelData = np.ascontiguousarray(pix, dtype='<u2').tobytes()
    ds.save_as(path, write_like_original=False)


def fmt(x):
    return '' if x is None or (isinstance(x, float) and np.isnan(x)) else ('%g' % x if isinstance(x, float) else str(x))


def write_group(kind, gname, g, state, rows_out):
    """g: [(row, pixels, window or None)] sorted by source; studies of PER_STUDY instances, numbered on from state."""
    for s in range(0, len(g), PER_STUDY):
        state['study_no'] += 1
        study_no = state['study_no']
        st_uid = uid('study', gname, s)
        se_uid = uid('series', gname, s)
        sdir = os.path.join(OUT, kind, gname, 'study%04d' % (s // PER_STUDY + 1))
        os.makedirs(sdir, exist_ok=True)
        for j, item in enumerate(g[s:s + PER_STUDY]):
            row, pix = item[0], item[1]
            window = item[2] if len(item) > 2 else None
            sop = uid('sop', gname, row['source'])
            fp = os.path.join(sdir, 'IM%02d.dcm' % (j + 1))
            write_dicom(fp, pix, st_uid, se_uid, sop, study_no, study_no, j + 1, window=window)
            if j == 0 or (s // PER_STUDY) % 25 == 0:  # read-back check on a deterministic sample
                back = pydicom.dcmread(fp).pixel_array
                assert back.dtype == (np.uint8 if window is None else np.uint16) and np.array_equal(back, pix), fp
                state['n_checked'] += 1
            r = dict(row)
            r.update(file=os.path.relpath(fp, ROOT), study_uid=st_uid, sop_uid=sop)
            r['linf'] = '%.6f' % r['linf']
            r['l2'] = '%.6f' % r['l2']
            rows_out.append(r)
    log('%-40s %5d instances' % (gname, len(g)))


def phase2_groups(cp, label_of):
    """Yields (kind, group name, [(row, pixels, window)]) for data/attacks_extra and data/corruptions, one npz = one
    group, in group-name order. `cp`: ONNX class of every clean image by source path."""
    found = []
    for d in (XDIR, CDIR):
        if not os.path.isdir(d):
            log('%s missing: phase 2 skipped for it' % d)
            continue
        for f in sorted(os.listdir(d)):
            if not f.endswith('.npz') or f.endswith('.tmp.npz'):  # .tmp.npz: being written by a running step
                continue
            set_name, rest = f[:-4].split('_', 1)
            kind = 'adversarial' if d == XDIR else 'benign'
            gname = ('dev_' if set_name == 'dev' else '') + kind + '_' + rest
            found.append((gname, kind, set_name, os.path.join(d, f)))
    for gname, kind, set_name, fp in sorted(found):
        z = dict(np.load(fp))
        split = 'test' if set_name == 'test' else 'detector_fit'
        g = []
        for k, p in enumerate(z['paths']):
            p = str(p)
            y = label_of[p]
            pa = int(z['pred_onnx'][k])
            if kind == 'adversarial':
                atk = str(z['attack'])
                kappa = float(z['kappa'])
                if not np.isnan(kappa):
                    atk = '%s_k%d' % (atk, int(kappa))
                eps = '' if np.isnan(float(z['eps'])) else fmt(float(z['eps']))
                row = dict(source=p, split=split, kind=kind, attack=atk, norm=str(z['norm']), eps=eps,
                           success=int(pa != y and cp[p] == y), label=y, pred_before=cp[p], pred_after=pa,
                           linf=float(z['linf'][k]), l2=float(z['l2'][k]), severity='')
                g.append((row, z['adv'][k], None))
            else:
                row = dict(source=p, split=split, kind=kind, attack=str(z['corruption']), norm='', eps='', success='',
                           label=y, pred_before=cp[p], pred_after=pa, linf=float(z['linf'][k]), l2=float(z['l2'][k]),
                           severity=int(z['severity']))
                g.append((row, z['adv'][k], tuple(z['window'][k]) if 'window' in z else None))
        yield kind, gname, sorted(g, key=lambda t: t[0]['source'])


def main():
    t0 = time.time()
    idx, imgs = image_cache()
    sp = read_splits()
    split_of = {r['path']: r['split'] for r in sp}
    label_of = {r['path']: r['label'] for r in sp}
    test = [r for r in sp if r['split'] == 'test']
    adir = ADIR
    if SMOKE:
        keep = set()
        for s_ in ('model_train', 'detector_fit', 'calibration'):
            keep |= set([r['path'] for r in sp if r['split'] == s_][:20])
        sp = [r for r in sp if r['path'] in keep or r['split'] == 'test']
    # ONNX prediction of every clean image (pixels identical to the written files, checked below)
    paths = [r['path'] for r in sp]
    clean_pred = run_onnx(ONNX_PATH, imgs[[idx[p] for p in paths]], u8=True)['logits'].argmax(1)
    cp = dict(zip(paths, clean_pred.tolist()))
    log('ONNX clean predictions for %d images (%.0fs)' % (len(paths), time.time() - t0))
    items = []  # (group key, row dict, pixels)
    for r in sp:
        p = r['path']
        items.append((('clean', r['split'], '', ''), dict(source=p, split=r['split'], kind='clean', attack='', norm='',
                      eps='', success='', label=label_of[p], pred_before=cp[p], pred_after=cp[p], linf=0.0, l2=0.0),
                      imgs[idx[p]]))
    for f in sorted(os.listdir(adir)):
        if not f.endswith('.npz') or f == 'subset.npz':
            continue
        z = dict(np.load(os.path.join(adir, f)))  # materialise once (NpzFile re-reads on every access)
        benign = f.startswith('benign_')
        atk = str(z['attack'])
        norm = '' if benign else str(z['norm'])
        eps = '' if benign or np.isnan(float(z['eps'])) else fmt(float(z['eps']))
        for k, ti in enumerate(z['ids']):
            p = test[ti]['path']
            y = label_of[p]
            pa = int(z['pred_onnx'][k])
            row = dict(source=p, split='test', kind='benign' if benign else 'adversarial', attack=atk, norm=norm,
                       eps=eps, success='' if benign else int(pa != y and cp[p] == y), label=y, pred_before=cp[p],
                       pred_after=pa, linf=float(z['linf'][k]), l2=float(z['l2'][k]))
            items.append(((row['kind'], atk, norm, eps), row, z['adv'][k]))
    groups = {}
    for key, row, pix in items:
        groups.setdefault(key, []).append((row, pix))
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    rows_out = []
    state = {'study_no': 0, 'n_checked': 0}
    for key in sorted(groups):
        g = sorted(groups[key], key=lambda t: t[0]['source'])
        gname = '_'.join(x for x in (key[0], key[1], key[3]) if x != '')
        write_group(key[0], gname, g, state, rows_out)
    n_phase1 = len(rows_out)
    if not SMOKE:
        for kind, gname, g in phase2_groups(cp, label_of):
            write_group(kind, gname, g, state, rows_out)
    for r in rows_out:
        r.setdefault('severity', '')
    with open(MANIFEST, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator='\n')
        w.writeheader()
        for r in rows_out:
            w.writerow({k: r[k] for k in COLUMNS})
    log('wrote %d DICOM files (%d original suite + %d added) in %d studies + %s; pixel read-back verified on %d files; %.0fs' % (
        len(rows_out), n_phase1, len(rows_out) - n_phase1, state['study_no'], MANIFEST, state['n_checked'], time.time() - t0))


if __name__ == '__main__':
    main()

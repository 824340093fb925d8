"""Write clean / adversarial / benign images as 8-bit MONOCHROME2 DICOM + data/manifest.csv (deterministic)."""
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
           'pred_before', 'pred_after', 'linf', 'l2']


def uid(*parts):
    h = hashlib.sha256('|'.join(str(p) for p in parts).encode()).hexdigest()
    return '2.25.' + str(int(h[:32], 16))


def write_dicom(path, pix, study_uid, series_uid, sop_uid, patient_no, study_no, inst_no):
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
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = 'NO'
    ds.PixelData = np.ascontiguousarray(pix, dtype=np.uint8).tobytes()
    ds.save_as(path, write_like_original=False)


def fmt(x):
    return '' if x is None or (isinstance(x, float) and np.isnan(x)) else ('%g' % x if isinstance(x, float) else str(x))


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
    study_no = 0
    n_checked = 0
    for key in sorted(groups):
        g = sorted(groups[key], key=lambda t: t[0]['source'])
        gname = '_'.join(x for x in (key[0], key[1], key[3]) if x != '')
        for s in range(0, len(g), PER_STUDY):
            study_no += 1
            st_uid = uid('study', gname, s)
            se_uid = uid('series', gname, s)
            sdir = os.path.join(OUT, key[0], gname, 'study%04d' % (s // PER_STUDY + 1))
            os.makedirs(sdir, exist_ok=True)
            for j, (row, pix) in enumerate(g[s:s + PER_STUDY]):
                sop = uid('sop', gname, row['source'])
                fp = os.path.join(sdir, 'IM%02d.dcm' % (j + 1))
                write_dicom(fp, pix, st_uid, se_uid, sop, study_no, study_no, j + 1)
                if j == 0 or (s // PER_STUDY) % 25 == 0:  # read-back check on a deterministic sample
                    back = pydicom.dcmread(fp).pixel_array
                    assert back.dtype == np.uint8 and np.array_equal(back, pix), fp
                    n_checked += 1
                r = dict(row)
                r.update(file=os.path.relpath(fp, ROOT), study_uid=st_uid, sop_uid=sop)
                r['linf'] = '%.6f' % r['linf']
                r['l2'] = '%.6f' % r['l2']
                rows_out.append(r)
        log('%-40s %5d instances' % (gname, len(g)))
    with open(MANIFEST, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator='\n')
        w.writeheader()
        for r in rows_out:
            w.writerow({k: r[k] for k in COLUMNS})
    log('wrote %d DICOM files in %d studies + %s; pixel read-back verified on %d files; %.0fs' % (
        len(rows_out), study_no, MANIFEST, n_checked, time.time() - t0))


if __name__ == '__main__':
    main()

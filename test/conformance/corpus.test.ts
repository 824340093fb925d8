/**
 * Every file of the shared DICOM corpus ends decoded, skipped, or with a typed WardenError; never an untyped
 * exception. Decoded geometry (rows, columns, frames) agrees with each source's manifest.csv.
 *
 * Expectations for the malformed / special files (upstream notes in the manifests):
 *
 * | file                                              | expected                    | why |
 * |---------------------------------------------------|-----------------------------|-----|
 * | cornerstone-wadoimageloader/wadors/*.dat, metadata| NOT_DICOM                   | DICOMweb fixtures, not Part 10 |
 * | pydicom/no_meta.dcm                               | NOT_DICOM                   | raw dataset shifted by one byte (dcmdump fails too) |
 * | fo-dicom/GH1146.dcm                               | PIXEL_DATA_LENGTH_MISMATCH  | Pixel Data present with length 0 |
 * | fo-dicom/GH177_…_ELE_undefinded_length.dcm        | DICOM_TRUNCATED             | CP-246 UN/undefined-length sequence dcmjs cannot follow |
 * | fo-dicom/GH177_…_undefined_length.dcm             | DICOM_MALFORMED             | undefined-length element without items |
 * | pydicom/JPEG2000-embedded-sequence-delimiter.dcm  | PIXEL_DECODE_FAILED         | codestream bytes overwritten (SIZ corrupt) |
 * | pydicom/MR_truncated.dcm                          | DICOM_TRUNCATED             | Pixel Data longer than the file |
 * | pydicom/rtplan_truncated.dcm                      | DICOM_TRUNCATED             | element longer than the file |
 * | pydicom/meta_missing_tsyntax.dcm                  | DICOM_TRUNCATED             | no Transfer Syntax UID; guessed implicit LE; nested UN sequence runs past the end |
 * | pydicom/nested_priv_SQ.dcm                        | DICOM_TRUNCATED             | same construction as above (nested private UN sequences) |
 * | fo-dicom/GH1339.dcm                               | decoded                     | missing Sequence Delimitation Item tolerated |
 * | fo-dicom/GH179B.dcm                               | skipped                     | header only, no Pixel Data |
 * | pydicom/SC_rgb_jpeg.dcm                           | decoded                     | dataset is implicit VR under an explicit-VR syntax (pydicom's rule) |
 * | pydicom/ExplVR_LitEndNoMeta.dcm                   | skipped                     | raw explicit-LE RT Ion Plan |
 * | pydicom/badVR.dcm                                 | decoded                     | invalid IS value "1A" for Number of Frames is read as 1 by dcmjs |
 * | pydicom-data/bad_sequence.dcm                     | decoded                     | implicit sequence inside explicit data (VR UN) |
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { CORPUS, SOURCES, listFiles, outcomeOf, readCsv, type Outcome } from './corpus-helpers';

const EXPECTED: Record<string, string> = {
  'cornerstone-wadoimageloader/wadors/CTImageEvenAligned.dat': 'NOT_DICOM',
  'cornerstone-wadoimageloader/wadors/CTImageOddAligned.dat': 'NOT_DICOM',
  'cornerstone-wadoimageloader/wadors/metadata': 'NOT_DICOM',
  'pydicom/no_meta.dcm': 'NOT_DICOM',
  'fo-dicom/GH1146.dcm': 'PIXEL_DATA_LENGTH_MISMATCH',
  'fo-dicom/GH177_D_CLUNIE_CT1_IVRLE_BigEndian_ELE_undefinded_length.dcm': 'DICOM_TRUNCATED',
  'fo-dicom/GH177_D_CLUNIE_CT1_IVRLE_BigEndian_undefined_length.dcm': 'DICOM_MALFORMED',
  'pydicom/JPEG2000-embedded-sequence-delimiter.dcm': 'PIXEL_DECODE_FAILED',
  'pydicom/MR_truncated.dcm': 'DICOM_TRUNCATED',
  'pydicom/rtplan_truncated.dcm': 'DICOM_TRUNCATED',
  'pydicom/meta_missing_tsyntax.dcm': 'DICOM_TRUNCATED',
  'pydicom/nested_priv_SQ.dcm': 'DICOM_TRUNCATED',
  'fo-dicom/GH1339.dcm': 'decoded',
  'fo-dicom/GH179B.dcm': 'skipped',
  'pydicom/SC_rgb_jpeg.dcm': 'decoded',
  'pydicom/ExplVR_LitEndNoMeta.dcm': 'skipped',
  'pydicom/badVR.dcm': 'decoded',
  'pydicom-data/bad_sequence.dcm': 'decoded',
};

interface Row { rel: string; manifest?: Record<string, string>; outcome: Outcome }
const rows: Row[] = [];

function label(o: Outcome): string {
  return o.kind === 'error' ? o.code : o.kind;
}

beforeAll(async () => {
  for (const source of SOURCES) {
    const manifest = new Map(readCsv(path.join(CORPUS, source, 'manifest.csv')).map((r) => [r.file, r]));
    for (const abs of listFiles(path.join(CORPUS, source))) {
      const inSource = path.relative(path.join(CORPUS, source), abs).split(path.sep).join('/');
      const outcome = await outcomeOf(fs.readFileSync(abs));
      rows.push({ rel: `${source}/${inSource}`, manifest: manifest.get(inSource), outcome });
    }
  }
  const summary: Record<string, Record<string, number>> = {};
  for (const r of rows) {
    const s = r.rel.split('/')[0];
    summary[s] ??= { decoded: 0, skipped: 0, error: 0, untyped: 0 };
    summary[s][r.outcome.kind]++;
  }
  // eslint-disable-next-line no-console
  console.log(`DICOM corpus outcomes (${rows.length} files):\n${JSON.stringify(summary, null, 1)}`);
}, 120_000);

describe('DICOM corpus conformance', () => {
  it('finds the corpus and every manifest row has a file', () => {
    expect(rows.length).toBeGreaterThan(250);
    for (const source of SOURCES) {
      for (const r of readCsv(path.join(CORPUS, source, 'manifest.csv'))) {
        expect(fs.existsSync(path.join(CORPUS, source, r.file))).toBe(true);
      }
    }
  });

  it('never throws an untyped exception', () => {
    const untyped = rows.filter((r) => r.outcome.kind === 'untyped').map((r) => r.rel);
    expect(untyped).toEqual([]);
  });

  it('matches the expectation table for malformed and special files', () => {
    const got = Object.fromEntries(Object.keys(EXPECTED).map((k) => [k, label(rows.find((r) => r.rel === k)!.outcome)]));
    expect(got).toEqual(EXPECTED);
  });

  it('only the files in the table end in errors', () => {
    const errors = rows.filter((r) => r.outcome.kind === 'error' && !(r.rel in EXPECTED)).map((r) => `${r.rel}: ${label(r.outcome)}`);
    expect(errors).toEqual([]);
  });

  it('decoded rows, columns and frames agree with the manifests', () => {
    const bad: string[] = [];
    for (const r of rows) {
      if (r.outcome.kind !== 'decoded' || !r.manifest) continue;
      const v = r.outcome.value;
      const m = r.manifest;
      const want = (s: string) => (/^\d+$/.test(s) ? Number(s) : undefined);
      const frames = m.frames === '' ? 1 : want(m.frames);
      if (want(m.rows) !== undefined && want(m.rows) !== v.rows) bad.push(`${r.rel}: rows ${v.rows} ≠ ${m.rows}`);
      if (want(m.cols) !== undefined && want(m.cols) !== v.columns) bad.push(`${r.rel}: columns ${v.columns} ≠ ${m.cols}`);
      if (frames !== undefined && frames !== v.numberOfFrames) bad.push(`${r.rel}: frames ${v.numberOfFrames} ≠ ${m.frames}`);
      if (v.frames.length !== v.numberOfFrames) bad.push(`${r.rel}: ${v.frames.length} frame arrays`);
      for (const f of v.frames) {
        if (f.length !== v.rows * v.columns * v.samplesPerPixel) bad.push(`${r.rel}: frame length ${f.length}`);
      }
      if (m.photometric && m.photometric !== v.photometricInterpretation) bad.push(`${r.rel}: photometric ${v.photometricInterpretation} ≠ ${m.photometric}`);
    }
    expect(bad).toEqual([]);
  });

  it('decodes every manifest row with pixel data unless it is in the table', () => {
    const missed = rows
      .filter((r) => r.manifest?.has_pixeldata === 'True' && r.outcome.kind !== 'decoded' && !(r.rel in EXPECTED))
      .map((r) => `${r.rel}: ${label(r.outcome)}`);
    expect(missed).toEqual([]);
  });

  it('error messages carry no identifiers (no UIDs except transfer syntaxes)', () => {
    for (const r of rows) {
      if (r.outcome.kind !== 'error') continue;
      const uids = r.outcome.message.match(/\d+(\.\d+){5,}/g) ?? [];
      expect(uids.filter((u) => !u.startsWith('1.2.840.10008.1.2'))).toEqual([]);
    }
  });

  it('decoded instances carry hashed UIDs only', () => {
    for (const r of rows) {
      if (r.outcome.kind !== 'decoded') continue;
      expect(r.outcome.value.sopInstanceUidHash).toMatch(/^([0-9a-f]{16})?$/);
    }
  });
});

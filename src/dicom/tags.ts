/**
 * Named DICOM tags (group+element, upper-case hex as dcmjs keys its dictionaries). Every tag Warden reads or
 * writes is named here once; no other file spells a tag as a literal.
 */
export const TAG = {
  // File Meta Information
  MediaStorageSOPClassUID: '00020002',
  MediaStorageSOPInstanceUID: '00020003',
  TransferSyntaxUID: '00020010',
  // identification
  DirectoryRecordSequence: '00041220',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  Modality: '00080060',
  BodyPartExamined: '00180015',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  // image pixel module
  SamplesPerPixel: '00280002',
  PhotometricInterpretation: '00280004',
  PlanarConfiguration: '00280006',
  NumberOfFrames: '00280008',
  Rows: '00280010',
  Columns: '00280011',
  PixelSpacing: '00280030',
  BitsAllocated: '00280100',
  BitsStored: '00280101',
  HighBit: '00280102',
  PixelRepresentation: '00280103',
  WindowCenter: '00281050',
  WindowWidth: '00281051',
  RescaleIntercept: '00281052',
  RescaleSlope: '00281053',
  PixelData: '7FE00010',
  FloatPixelData: '7FE00008',
  DoubleFloatPixelData: '7FE00009',
  ExtendedOffsetTable: '7FE00001',
  // PS3.18 STOW-RS response
  RetrieveURL: '00081190',
  FailureReason: '00081197',
  FailedSOPSequence: '00081198',
  ReferencedSOPSequence: '00081199',
  ReferencedSOPClassUID: '00081150',
  ReferencedSOPInstanceUID: '00081155',
  // Warden's private block in STOW-RS responses (private creator "WARDEN 1")
  WardenPrivateCreator: '00090010',
  WardenVerdict: '00091001',
  WardenReason: '00091002',
  WardenPartNumber: '00091003',
  /** Observe mode: the verdict enforce mode would have carried out (CS: FLAG | BLOCK). */
  WardenWouldBe: '00091004',
} as const;

/** Palette colour lookup tables, red / green / blue. */
export const PALETTE_TAGS = {
  descriptor: ['00281101', '00281102', '00281103'],
  data: ['00281201', '00281202', '00281203'],
  segmentedData: ['00281221', '00281222', '00281223'],
} as const;

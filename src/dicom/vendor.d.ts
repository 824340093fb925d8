/** dcmjs ships no TypeScript declarations; the few entry points we use are typed in src/dicom/dataset.ts. */
declare module 'dcmjs';

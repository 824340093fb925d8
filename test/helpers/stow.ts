import { createHash, randomBytes } from 'node:crypto';

/** Builds a STOW-RS multipart/related body from Part-10 files (as a sender would). */
export function multipartBody(parts: Buffer[], boundary = `b-${randomBytes(8).toString('hex')}`): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, 'latin1'), p, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`, 'latin1'));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

export async function stow(url: string, parts: Buffer[], headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const { body, contentType } = multipartBody(parts);
  const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': contentType, accept: 'application/dicom+json', ...headers } });
  const text = await res.text();
  let json: any = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, json, text };
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** SOP Instance UIDs of the ReferencedSOPSequence / FailedSOPSequence of a STOW-RS response. */
export function referencedUids(json: any): string[] {
  return (json?.['00081199']?.Value ?? []).map((it: any) => it['00081155']?.Value?.[0]);
}
export function failedItems(json: any): Array<{ uid?: string; reason: number; text?: string }> {
  return (json?.['00081198']?.Value ?? []).map((it: any) => ({ uid: it['00081155']?.Value?.[0], reason: it['00081197']?.Value?.[0], text: it['00091002']?.Value?.[0] }));
}

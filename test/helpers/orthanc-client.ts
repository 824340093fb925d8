/** Small Orthanc REST helpers for assertions (what actually reached the upstream). */
export async function orthancInstanceId(orthancUrl: string, sopInstanceUid: string): Promise<string | null> {
  const res = await fetch(`${orthancUrl}/tools/lookup`, { method: 'POST', body: sopInstanceUid });
  const list = (await res.json()) as Array<{ Type: string; ID: string }>;
  return list.find((x) => x.Type === 'Instance')?.ID ?? null;
}

export async function orthancFile(orthancUrl: string, id: string): Promise<Buffer> {
  const res = await fetch(`${orthancUrl}/instances/${id}/file`);
  return Buffer.from(await res.arrayBuffer());
}

export async function orthancInstanceCount(orthancUrl: string): Promise<number> {
  const res = await fetch(`${orthancUrl}/instances`);
  return ((await res.json()) as string[]).length;
}

/** Splits a multipart/related response into its parts' bodies. */
export function multipartParts(body: Buffer, contentType: string): Buffer[] {
  const m = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!m) return [body];
  const delim = Buffer.from(`--${m[1]}`);
  const parts: Buffer[] = [];
  let pos = body.indexOf(delim);
  while (pos >= 0) {
    const next = body.indexOf(delim, pos + delim.length);
    if (next < 0) break;
    const chunk = body.subarray(pos + delim.length, next);
    const headerEnd = chunk.indexOf('\r\n\r\n');
    if (headerEnd >= 0) {
      let content = chunk.subarray(headerEnd + 4);
      if (content.length >= 2 && content[content.length - 2] === 13 && content[content.length - 1] === 10) content = content.subarray(0, content.length - 2);
      parts.push(content);
    }
    pos = next;
  }
  return parts;
}

import { createHash } from 'node:crypto';

/** sha256 of a UID (trailing NUL/space padding removed), hex, first 16 chars. Never log the UID itself. */
export function hashUid(uid: string): string {
  return createHash('sha256').update(uid.replace(/[\0 ]+$/, ''), 'utf8').digest('hex').slice(0, 16);
}

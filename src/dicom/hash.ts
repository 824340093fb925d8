import { createHmac, randomBytes } from 'node:crypto';

/**
 * UIDs never leave Warden's memory: logs, records, events, metrics and the audit trail carry
 * HMAC-SHA-256(key, UID) (hex, first 16 chars). The key is a per-install secret (src/config: `security.uidHashKey`,
 * a key file, or one created once in `server.stateDir`), so nobody who merely knows a UID can find it in the logs,
 * and the same install always gives the same hash (audit queries by study hash). It is process-wide configuration,
 * set once at start-up by the composition root; until then (library use, tests) a random per-process key is used,
 * never an unkeyed hash.
 */
let key: Buffer = randomBytes(32);

/** Sets the install's key (at least 32 bytes of secret). */
export function setUidHashKey(secret: string | Buffer): void {
  const k = typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
  if (k.length < 32) throw new RangeError('The UID hash key must be at least 32 bytes.');
  key = Buffer.from(k);
}

/** HMAC-SHA-256 of a UID (trailing NUL/space padding removed) under the install key, hex, first 16 chars. */
export function hashUid(uid: string): string {
  return createHmac('sha256', key).update(uid.replace(/[\0 ]+$/, ''), 'utf8').digest('hex').slice(0, 16);
}

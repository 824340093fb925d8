import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WardenError } from '../core/errors';
import type { WardenConfig } from './schema';

/** Default state directory: `~/.warden` (set `server.stateDir` / WARDEN_STATE_DIR in containers, e.g. a volume). */
export function stateDirOf(config: Pick<WardenConfig, 'server'>): string {
  return config.server.stateDir ?? path.join(os.homedir(), '.warden');
}

/**
 * The install's UID-hash key: `security.uidHashKey`, else the contents of `security.uidHashKeyFile`, else
 * `<stateDir>/uid-hash.key`, created (0600, random 48 bytes, base64) the first time. @throws CONFIG_INVALID
 */
export function resolveUidHashKey(config: Pick<WardenConfig, 'server' | 'security'>): string {
  if (config.security.uidHashKey) return config.security.uidHashKey;
  const file = config.security.uidHashKeyFile ?? path.join(stateDirOf(config), 'uid-hash.key');
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    if (text.length < 32) throw new WardenError('CONFIG_INVALID', `The UID hash key in ${file} is shorter than 32 characters.`);
    return text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || config.security.uidHashKeyFile) {
      if (err instanceof WardenError) throw err;
      throw new WardenError('CONFIG_INVALID', `Cannot read the UID hash key file ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const secret = randomBytes(48).toString('base64');
    // 'wx': a second process starting at the same moment keeps the first one's key
    fs.writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return secret;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return fs.readFileSync(file, 'utf8').trim();
    throw new WardenError('CONFIG_INVALID', `Cannot create the UID hash key file ${file} (set security.uidHashKey or server.stateDir): ${(err as Error).message}`, { cause: err });
  }
}

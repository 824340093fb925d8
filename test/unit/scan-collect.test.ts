import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { collectFiles } from '../../src/cli/scan';

describe('warden scan folder walk', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-collect-'));
    fs.mkdirSync(path.join(dir, 'study1'));
    for (const f of ['study1/IM01.dcm', 'study1/IM02', 'manifest.csv', 'README.md', '.hidden']) fs.writeFileSync(path.join(dir, f), 'x');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('leaves manifests, notes and hidden files out of folder walks', async () => {
    const files = (await collectFiles([dir])).map((f) => path.relative(dir, f));
    expect(files).toEqual(['study1/IM01.dcm', 'study1/IM02']);
  });

  it('always scans a file named explicitly, whatever its extension', async () => {
    expect(await collectFiles([path.join(dir, 'manifest.csv')])).toEqual([path.join(dir, 'manifest.csv')]);
  });

  it('refuses a path that does not exist with a usage error', async () => {
    await expect(collectFiles([path.join(dir, 'missing')])).rejects.toMatchObject({ code: 'USAGE' });
  });
});

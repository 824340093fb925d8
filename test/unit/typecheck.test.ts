import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

// ts-jest transpiles each test file on its own (isolatedModules) and checks no types: the test code, its helpers
// and src are type-checked together here, so a test that drifts from the code it calls fails CI.
it('type-checks src and the tests together', () => {
  const root = path.resolve(__dirname, '..', '..');
  const res = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.test.json', '--noEmit'], { cwd: root, encoding: 'utf8', timeout: 240000 });
  expect(res.stdout + res.stderr).toBe('');
  expect(res.status).toBe(0);
}, 300000);

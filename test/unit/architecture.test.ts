import * as fs from 'node:fs';
import * as path from 'node:path';
import { Linter } from 'eslint';

// The folder rule of eslint.config.js, run as part of the test suite (CI runs it here): the whole of src/ obeys it,
// and it does fail on an import that reaches back upstream or into another folder's internals. (ESLint's Linter with
// the project's own config array: the same rule `npm run lint` applies, without ESLint's config-file loader.)
const ROOT = path.resolve(__dirname, '..', '..');
// eslint-config files are CommonJS; the config array is what `eslint src` reads.
const config = require(path.join(ROOT, 'eslint.config.js')) as Linter.Config[];
const linter = new Linter({ configType: 'flat', cwd: ROOT });

async function problems(code: string, file: string): Promise<string[]> {
  return linter.verify(code, config, path.join(ROOT, file)).map((m) => `${m.ruleId}: ${m.message}`);
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('one-way flow between the stage folders', () => {
  it('src/ has no import that breaks the folder rule', async () => {
    const files = sourceFiles(path.join(ROOT, 'src'));
    const errors = files.flatMap((f) => linter.verify(fs.readFileSync(f, 'utf8'), config, f).map((m) => `${path.relative(ROOT, f)}:${m.line} ${m.message}`));
    expect(errors).toEqual([]);
    expect(files.length).toBeGreaterThan(50);
  }, 60000);

  it.each([
    ['decode reaching the policy', 'src/dicom/x.ts', "import { decide } from '../policy';"],
    ['a detector reaching the pipeline', 'src/detectors/x.ts', "import { compose } from '../pipeline';"],
    ['the policy reaching the proxy', 'src/policy/x.ts', "import { startServer } from '../proxy';"],
    ['the proxy reaching the models directly', 'src/proxy/x.ts', "import { InferencePool } from '../models';"],
    ['preprocessing reaching a detector from a nested file', 'src/models/onnx/x.ts', "import { KdDetector } from '../../detectors';"],
  ])('fails on %s', async (_what, file, code) => {
    expect(await problems(`${code}\nexport const used = 1;\n`, file)).toEqual([expect.stringMatching(/^no-restricted-imports: .*flow one way/)]);
  });

  it("fails on an import of another folder's internals instead of its index", async () => {
    expect(await problems("import { KdDetector } from '../detectors/kd';\nexport const used = KdDetector;\n", 'src/pipeline/x.ts'))
      .toEqual([expect.stringMatching(/through its index/)]);
  });

  it('allows the downstream imports the flow needs', async () => {
    expect(await problems("import { decide } from '../policy';\nimport { TAG } from '../dicom';\nexport const used = [decide, TAG];\n", 'src/proxy/x.ts')).toEqual([]);
  });
});

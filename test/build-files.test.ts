// binding.gyp (CPU-only fallback build) lists its sources by hand; CMakeLists.txt globs them.
// Every C++ file of the CPU build must be in binding.gyp, so the fallback never misses an op.
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.join(__dirname, '..');

function walk(dir: string): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)],
  );
}

test('binding.gyp compiles every CPU source file and nothing that is gone', () => {
  const gyp = JSON.parse(
    fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, ''),
  ) as { targets: { sources: string[] }[] };
  const listed = new Set(gyp.targets.flatMap((t) => t.sources));
  const needed = walk('csrc')
    .filter((f) => f.endsWith('.cc') && !f.startsWith(path.join('csrc', 'tests')))
    .map((f) => f.split(path.sep).join('/'));
  expect(needed.length).toBeGreaterThan(10);
  for (const f of needed) expect([...listed]).toContain(f);
  for (const f of listed) expect(fs.existsSync(path.join(root, f))).toBe(true);
});

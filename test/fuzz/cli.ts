// npm run fuzz [-- --cases N --seed S --children C --batch B]: the full fuzz run (default 10,000 cases).
import { formatSummary, runFuzz } from './driver';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

async function main(): Promise<void> {
  const cases = arg('cases', 10000);
  const s = await runFuzz({
    cases,
    start: arg('seed', 1),
    children: arg('children', 2),
    batch: arg('batch', 250),
    onProgress: (d, t) => process.stderr.write(`\r${d}/${t}`),
  });
  process.stderr.write('\n');
  console.log(formatSummary(s, 60));
  const bad = s.crashes.length + s.failures.length;
  process.exit(bad ? 1 : 0);
}
void main();

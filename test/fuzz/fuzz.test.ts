// The CI fuzz run: 2,000 seeded cases of malformed arguments to every public function, run in
// child processes (a crash is a failure with its seed). The full run is `npm run fuzz` (10,000).
// The error contract the cases check is described at the top of test/fuzz/cases.ts.
import { formatSummary, runFuzz } from './driver';

const CASES = Number(process.env.TOMA_FUZZ_CASES ?? 2000);
const SEED = Number(process.env.TOMA_FUZZ_SEED ?? 1);

test(`fuzz: ${CASES} cases, no crash, only documented error classes naming the argument, inputs untouched`, async () => {
  const s = await runFuzz({ cases: CASES, start: SEED, children: 2, batch: 250 });
  const report = formatSummary(s);
  if (s.crashes.length || s.failures.length) throw new Error(report);
  expect(s.cases).toBe(CASES);
  // the generator must exercise valid calls too, and every function
  expect(s.resolved).toBeGreaterThan(CASES * 0.05);
  expect(Object.keys(s.byFunction).length).toBeGreaterThanOrEqual(17);
}, 180000);

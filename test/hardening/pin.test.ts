// Inputs stay alive while an op reads them: dropping the only reference to a tensor's typed array
// mid-call and forcing a collection must not free it under the worker (see pin-child.js).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

import { addonPath, computePlan } from '../../lib';

test('typed arrays are pinned for the duration of an op', async () => {
  await computePlan({ data: new Float32Array(16), shape: [1, 4, 4], dtype: 'float32' }, { grid: [2, 2], ratio: 0 });
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, 'pin-child.js')], {
    env: { ...process.env, TOMA_PIN_ADDON: addonPath() },
    encoding: 'utf8',
    timeout: 120000,
  });
  expect({ status: r.status, signal: r.signal, stderr: r.stderr.slice(-500) }).toEqual({ status: 0, signal: null, stderr: '' });
  expect(r.stdout.trim()).toBe('ok');
}, 150000);

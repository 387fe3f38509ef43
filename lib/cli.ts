#!/usr/bin/env node
// The toma command line. commander parses arguments (a kept, dependency-free library).
import { Command, InvalidArgumentError } from 'commander';

import { addonPath } from './native';
import { backend } from './backend';
import { runInfo } from './cli/info';
import { parseGrid, parseShapes, runInspect, runPatch } from './cli/patch';
import { runDemo } from './cli/demo';

function positiveInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be an integer >= 1`);
    return n;
  };
}

function ratioArg(v: string): number {
  const r = Number(v);
  if (!Number.isFinite(r) || r < 0 || r >= 1) throw new InvalidArgumentError('ratio must be a number in [0, 1)');
  return r;
}

export function buildProgram(): Command {
  const program = new Command();
  program.name('toma').description('Token Merge with Attention for diffusion transformers');
  program
    .command('backend')
    .description('print the backend toma would use, as JSON')
    .action(() => {
      const b = backend();
      process.stdout.write(JSON.stringify({ ...b, addon: addonPath() }, null, 2) + '\n');
    });
  program
    .command('info')
    .description(
      "backend, then a check and timing of mergeAttentionUnmerge against dense attention at SDXL's 64x64 and 32x32 shapes (or the one given)",
    )
    .option('--grid <n>', 'token grid side (N = n * n); default: both SDXL shapes', positiveInt('grid'))
    .option('--channels <n>', 'channels C (default 640 with --grid)', positiveInt('channels'))
    .option('--heads <n>', 'attention heads (default 10 with --grid)', positiveInt('heads'))
    .option('--batch <n>', 'batch size', positiveInt('batch'), 2)
    .option('--ratio <r>', 'merge ratio in [0, 1)', ratioArg, 0.5)
    .action(async (o) => {
      await runInfo(o);
    });
  program
    .command('inspect')
    .description('list the attention blocks of an ONNX model: kind, heads, grid, and whether toma can patch each (and why not)')
    .argument('<model>', '.onnx model')
    .option('--shapes <list>', 'input shapes of a run for dynamic-shape models, e.g. sample=2x4x64x64,timestep=2,encoder_hidden_states=2x77x768', (v: string) => {
      try {
        return parseShapes(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    })
    .action(async (model: string, o: { shapes?: Record<string, number[]> }) => {
      await runInspect(model, o);
    });
  program
    .command('patch')
    .description('print the attention blocks of an ONNX model, then write it patched with toma (never overwrites the input)')
    .argument('<in>', 'input .onnx model')
    .argument('<out>', 'output .onnx model')
    .option('--ratio <r>', 'merge ratio in [0, 1)', ratioArg, 0.5)
    .option('--mode <mode>', "patch mode passed to patchModel (e.g. 'standard-ops')")
    .option('--grid <HxW>', 'token grid where the graph cannot tell it (e.g. 64x64, or 1x40 for a text line)', (v: string) => {
      try {
        return parseGrid(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    })
    .option('--shapes <list>', 'input shapes the patched model will run at, for dynamic-shape models, e.g. sample=2x4x64x64,timestep=2,encoder_hidden_states=2x77x768', (v: string) => {
      try {
        return parseShapes(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    })
    .action(async (input: string, output: string, o: { ratio: number; mode?: string; grid?: [number, number]; shapes?: Record<string, number[]> }) => {
      await runPatch(input, output, o);
    });
  program
    .command('demo')
    .description("toma's own small diffusion transformer (MNIST DiT): a grid of digits sampled densely and with toma, a PNG of both and a table of speed and quality")
    .option('--ratio <r>', 'merge ratio in [0, 1)', ratioArg, 0.5)
    .option('--steps <n>', 'Euler steps per image', positiveInt('steps'), 20)
    .option('--seed <n>', 'base seed of the noise', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('seed must be an integer >= 0');
      return n;
    }, 0)
    .option('--seeds <n>', 'images per digit (one seed each)', positiveInt('seeds'), 4)
    .option('--out <file>', 'PNG to write', 'toma-demo.png')
    .option('--mode <mode>', "toma's patch mode: 'standard-ops' (one ONNX graph) or 'segments'", (v: string) => {
      if (v !== 'segments' && v !== 'standard-ops') throw new InvalidArgumentError("mode must be 'segments' or 'standard-ops'");
      return v;
    }, 'standard-ops')
    .option('--backend <name>', "toma's processor backend in segments mode: 'cpu' or 'cuda' (default: the best available)", (v: string) => {
      if (v !== 'cpu' && v !== 'cuda') throw new InvalidArgumentError("backend must be 'cpu' or 'cuda'");
      return v;
    })
    .option('--cfg <w>', 'classifier-free guidance scale (1 = none)', (v: string) => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('cfg must be a number >= 0');
      return n;
    }, 3)
    .option('--no-dense-last', 'merge the last attention block too (kept dense by default)')
    .option('--no-progress', 'no progress bar')
    .action(async (o) => {
      await runDemo({ ...o, progress: o.progress === false ? false : undefined });
    });
  return program;
}

if (require.main === module) {
  // output piped into `head` and the like: a closed pipe ends the program quietly
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
  buildProgram()
    .parseAsync(process.argv)
    .catch((e: Error) => {
      process.stderr.write(`toma: ${e.message}\n`);
      process.exit(1);
    });
}

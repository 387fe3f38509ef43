// Real photographs for the quality benchmark, available offline from Debian's package
// python3-skimage (scikit-image's sample data: skimage/data/*.png|jpg). Every photo used here is
// public domain or CC0 (see PHOTOS). Where the package is not installed, the .deb is fetched once
// with `apt-get download python3-skimage` and unpacked with `dpkg -x` into bench/.cache/ (ignored
// by git); nothing is installed and none of its Python dependencies are needed.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as jpeg from 'jpeg-js';

// pngjs ships no type declarations; the one call used here, typed.
const { PNG } = require('pngjs') as {
  PNG: { sync: { read(buf: Buffer): { width: number; height: number; data: Buffer } } };
};

export interface PhotoInfo {
  name: string;
  file: string;
  credit: string;
  licence: string;
}

/** The photographs (not drawings, textures or microscopy) of skimage's data, with their licences. */
export const PHOTOS: PhotoInfo[] = [
  { name: 'astronaut', file: 'astronaut.png', credit: 'NASA (Eileen Collins)', licence: 'public domain' },
  { name: 'chelsea', file: 'chelsea.png', credit: 'Stefan van der Walt (a cat)', licence: 'CC0' },
  { name: 'coffee', file: 'coffee.png', credit: 'Rachel Michetti (a cup of coffee)', licence: 'CC0' },
  { name: 'rocket', file: 'rocket.jpg', credit: 'SpaceX (Falcon 9 launch)', licence: 'public domain' },
  { name: 'camera', file: 'camera.png', credit: 'Lav Varshney (a photographer, grayscale)', licence: 'CC0' },
  { name: 'clock', file: 'clock_motion.png', credit: 'Stefan van der Walt (a clock, motion-blurred, grayscale)', licence: 'public domain' },
];

export const DEBIAN_PACKAGE = 'python3-skimage';
const DATA_SUBDIR = path.join('usr', 'lib', 'python3', 'dist-packages', 'skimage', 'data');
const CACHE = path.join(__dirname, '..', '.cache', 'skimage');

export interface PhotoSource {
  dir: string;
  /** How the folder was found: env, installed package, cache, or a fresh download. */
  how: string;
  /** The .deb file unpacked, when the cache was used. */
  deb?: string;
}

function hasAll(dir: string): boolean {
  return PHOTOS.every((p) => fs.existsSync(path.join(dir, p.file)));
}

/**
 * The folder holding the photos: $TOMA_PHOTO_DIR, the installed Debian package
 * (apt-get install python3-skimage), an earlier download in bench/.cache/skimage/, or a new
 * download there (apt-get download + dpkg -x; needs Debian's package lists: apt-get update).
 */
export function findPhotos(): PhotoSource {
  const env = process.env.TOMA_PHOTO_DIR;
  if (env) {
    if (!hasAll(env)) throw new Error(`TOMA_PHOTO_DIR=${env} lacks some of ${PHOTOS.map((p) => p.file).join(', ')}`);
    return { dir: env, how: 'TOMA_PHOTO_DIR' };
  }
  const installed = path.join('/', DATA_SUBDIR);
  if (hasAll(installed)) return { dir: installed, how: `installed Debian package ${DEBIAN_PACKAGE}` };
  const cached = path.join(CACHE, 'root', DATA_SUBDIR);
  const debOf = () => fs.readdirSync(CACHE).find((f) => f.startsWith(`${DEBIAN_PACKAGE}_`) && f.endsWith('.deb'));
  if (hasAll(cached)) return { dir: cached, how: 'bench/.cache (earlier download)', deb: debOf() };
  fs.mkdirSync(CACHE, { recursive: true });
  try {
    if (!debOf()) execFileSync('apt-get', ['download', DEBIAN_PACKAGE], { cwd: CACHE, stdio: ['ignore', 'ignore', 'pipe'] });
    const deb = debOf();
    if (!deb) throw new Error('apt-get download left no .deb');
    execFileSync('dpkg', ['-x', deb, 'root'], { cwd: CACHE, stdio: ['ignore', 'ignore', 'pipe'] });
    if (!hasAll(cached)) throw new Error(`${deb} does not hold the expected photos`);
    return { dir: cached, how: 'downloaded now (apt-get download + dpkg -x)', deb };
  } catch (e) {
    throw new Error(
      `The quality benchmark needs the photographs of Debian's ${DEBIAN_PACKAGE} and could not get them ` +
        `(${(e as Error).message.split('\n')[0]}). Run 'apt-get update' first, or 'apt-get install ${DEBIAN_PACKAGE}', ` +
        'or point TOMA_PHOTO_DIR at a folder holding ' +
        PHOTOS.map((p) => p.file).join(', '),
    );
  }
}

export interface Rgb {
  width: number;
  height: number;
  /** [height, width, 3] in [0, 1]. */
  data: Float32Array;
}

export function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Decodes a PNG (pngjs: any bit depth and colour type, expanded to RGBA 8-bit) or a JPEG (jpeg-js). */
export function loadPhoto(file: string): Rgb {
  const buf = fs.readFileSync(file);
  let width: number;
  let height: number;
  let rgba: Uint8Array;
  if (file.toLowerCase().endsWith('.png')) {
    const png = PNG.sync.read(buf);
    ({ width, height } = png);
    rgba = png.data;
  } else {
    const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: true });
    ({ width, height } = img);
    rgba = img.data;
  }
  const data = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++)
    for (let c = 0; c < 3; c++) data[i * 3 + c] = rgba[i * 4 + c] / 255;
  return { width, height, data };
}

/** Centre square crop, resized to size x size (bilinear, half-pixel centres). */
export function cropResize(img: Rgb, size: number): Rgb {
  const m = Math.min(img.width, img.height);
  const x0 = Math.floor((img.width - m) / 2);
  const y0 = Math.floor((img.height - m) / 2);
  const out = new Float32Array(size * size * 3);
  const at = (y: number, x: number, c: number) => img.data[((y0 + y) * img.width + x0 + x) * 3 + c];
  for (let i = 0; i < size; i++) {
    const sy = Math.min(Math.max(((i + 0.5) * m) / size - 0.5, 0), m - 1);
    const ya = Math.floor(sy);
    const yb = Math.min(ya + 1, m - 1);
    const fy = sy - ya;
    for (let j = 0; j < size; j++) {
      const sx = Math.min(Math.max(((j + 0.5) * m) / size - 0.5, 0), m - 1);
      const xa = Math.floor(sx);
      const xb = Math.min(xa + 1, m - 1);
      const fx = sx - xa;
      for (let c = 0; c < 3; c++)
        out[(i * size + j) * 3 + c] =
          (1 - fy) * ((1 - fx) * at(ya, xa, c) + fx * at(ya, xb, c)) + fy * ((1 - fx) * at(yb, xa, c) + fx * at(yb, xb, c));
    }
  }
  return { width: size, height: size, data: out };
}

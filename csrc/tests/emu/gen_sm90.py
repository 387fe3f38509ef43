#!/usr/bin/env python3
"""Makes flash_sm90_emu.h, the CPU-emulation copy of csrc/cuda/flash_sm90.cuh.

Two things change, nothing else: "cuda/hopper.cuh" goes (hopper_emu.h, included first, implements
the same instructions under the same names) and the dynamic shared-memory array becomes the
emulator's per-block buffer. If either is not found exactly as expected, or inline asm remains,
this fails: flash_sm90.cuh changed shape and this script must follow it.

usage: gen_sm90.py flash_sm90.cuh OUT.h
"""
import re
import sys


def fail(src, what):
    sys.exit('gen_sm90.py: %s: %s' % (src, what))


def main(src, out):
    text = open(src).read()
    if text.count('#include "cuda/hopper.cuh"\n') != 1:
        fail(src, 'expected one `#include "cuda/hopper.cuh"`')
    text = text.replace('#include "cuda/hopper.cuh"\n', '\n')  # keeps the line numbers
    text, n = re.subn(r'extern __shared__ __align__\(\d+\) unsigned char smem\[\];',
                      'unsigned char* const smem = ::emu::smem();', text)
    if n != 1:
        fail(src, 'expected one `extern __shared__ ... smem[]`')
    for left in ('asm', '__shared__'):
        m = re.search(r'\b%s\b' % left, text)
        if m:
            fail(src, 'line %d: `%s` the emulator cannot run' % (text[:m.start()].count('\n') + 1, left))
    with open(out, 'w') as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(text)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

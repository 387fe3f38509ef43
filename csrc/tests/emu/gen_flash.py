#!/usr/bin/env python3
"""Makes flash_emu.h, the CPU-emulation copy of csrc/cuda/flash.cuh.

Three things change, nothing else: <mma.h> and "cuda/mma.cuh" go (wmma_emu.h, included first,
has the WMMA stand-in and the ldmatrix / mma.sync emulation), the cp.async helpers (inline PTX) become the emulator's, and the dynamic shared-memory
array becomes the emulator's per-block buffer. If any of them is not found exactly as expected,
or inline asm remains, this fails: flash.cuh changed shape and this script must follow it.

usage: gen_flash.py flash.cuh OUT.h
"""
import re
import sys

CP_ASYNC = re.compile(
    r'__device__ __forceinline__ void cp_async16\(.*?asm volatile\("cp\.async\.wait_group.*?\n\}\n', re.S)
EXTERN_SMEM = re.compile(r'extern __shared__ __align__\(\d+\) unsigned char smem\[\];')


def fail(src, what):
    sys.exit('gen_flash.py: %s: %s' % (src, what))


def main(src, out):
    text = open(src).read()
    if text.count('#include <mma.h>\n') != 1:
        fail(src, 'expected one `#include <mma.h>`')
    text = text.replace('#include <mma.h>\n', '\n')  # keeps the line numbers
    if text.count('#include "cuda/mma.cuh"\n') != 1:
        fail(src, 'expected one `#include "cuda/mma.cuh"`')
    text = text.replace('#include "cuda/mma.cuh"\n', '\n')  # wmma_emu.h emulates ldmatrix / mma.sync
    uses = 'using ::emu::cp_async16;\nusing ::emu::cp_async_commit;\nusing ::emu::cp_async_wait;\n'
    text, n = CP_ASYNC.subn(lambda m: uses + '\n' * (m.group(0).count('\n') - 3), text)  # same line numbers
    if n != 1:
        fail(src, 'expected the cp_async16 / cp_async_commit / cp_async_wait definitions in one piece')
    text, n = EXTERN_SMEM.subn('unsigned char* const smem = ::emu::smem;', text)
    if n == 0:
        fail(src, 'no `extern __shared__ ... smem[]` found')
    for left in ('asm', '__shared__'):
        m = re.search(r'\b%s\b' % left, text)
        if m:
            fail(src, 'line %d: `%s` the emulator cannot run' % (text[:m.start()].count('\n') + 1, left))
    with open(out, 'w') as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(text)
    print('%s: %d shared-memory declarations' % (src, n))


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

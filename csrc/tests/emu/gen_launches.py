#!/usr/bin/env python3
"""Copies a csrc/cuda/*.cu file to a .cc the host compiler accepts, for the CPU emulation.

Only the kernel launches change:  NAME<<<CFG>>>(ARGS)  ->  ::emu::launch_named("NAME", ::emu::Cfg(CFG), NAME, ARGS)
Everything else is the kernel source as it is (kernel_emu.h, force-included, supplies the CUDA
builtins). A `<<<` left after the rewrite means a launch of a shape this script does not know:
that is an error, never a copy that would test something other than the real source.

usage: gen_launches.py SRC.cu OUT.cc
"""
import re
import sys

LAUNCH = re.compile(r'([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\(', re.S)


def main(src, out):
    text = open(src).read()

    def rewrite(m):
        return '::emu::launch_named("%s", ::emu::Cfg(%s), %s, ' % (m.group(1), m.group(2), m.group(1))

    gen, n = LAUNCH.subn(rewrite, text)
    if '<<<' in gen:
        line = gen[:gen.index('<<<')].count('\n') + 1
        sys.exit('gen_launches.py: %s:%d: a kernel launch this script cannot rewrite' % (src, line))
    with open(out, 'w') as f:
        f.write('#line 1 "%s"\n' % src)  # diagnostics and debuggers point at the real .cu
        f.write(gen)
    print('%s: %d launches' % (src, n))


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

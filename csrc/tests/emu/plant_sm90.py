#!/usr/bin/env python3
"""Plants bugs in the emulated copy of flash_sm90.cuh, one at a time, and checks that emu_sm90
fails on each: the evidence that the Hopper emulation checks the kernel, not only itself.

Each mutation is an exact text replacement in the generated flash_sm90_emu.h (it fails loudly if
the kernel no longer has that text). Every mutant is compiled into BUILD/plant/<name> and run on
one seed; a mutant that passes is reported and the script exits 1.

usage: plant_sm90.py ROOT BUILD [NAME...]   (make -f csrc/tests/emu/Makefile builds the rest first)
"""
import os
import subprocess
import sys

MUTATIONS = {
    # the descriptors declare the 64-byte swizzle where TMA wrote the 128-byte one
    'swizzle': ('| (1ull << 62);', '| (2ull << 62);'),
    # K-major stride between 8-row groups: half of what the tiles use
    'sbo': ('sm90_desc(k_base + (kk >> 2) * kBN * 128 + off, 16, 1024)', 'sm90_desc(k_base + (kk >> 2) * kBN * 128 + off, 16, 512)'),
    # P's A-operand registers 1 and 2 swapped (rows g + 8 and columns 2q + 8 confused)
    'fragment': ('p[kk][r] = bits_of(from_f<T>(s[8 * kk + 2 * r])) | (bits_of(from_f<T>(s[8 * kk + 2 * r + 1])) << 16);',
                 'p[kk][(r == 1 || r == 2) ? 3 - r : r] = bits_of(from_f<T>(s[8 * kk + 2 * r])) | (bits_of(from_f<T>(s[8 * kk + 2 * r + 1])) << 16);'),
    # the softmax reads S without waiting for its wgmma group
    'nowait': ('    sm90::wgmma_wait<1>();  // S of tile t', '    // S of tile t'),
    # O rescaled before the P V product of the previous tile is waited for
    'early-rescale': [('    softmax(t, alpha);\n    sm90::wgmma_wait<0>();',
                       '    softmax(t, alpha);\n    for (int i = 0; i < D / 2; ++i) o[i] *= alpha[(i >> 1) & 1];\n    sm90::wgmma_wait<0>();'),
                      ('    for (int i = 0; i < D / 2; ++i) o[i] *= alpha[(i >> 1) & 1];\n    to_p();', '    to_p();')],
    # the consumers wait on the K barrier with the wrong phase parity
    'parity': ('sm90::mbar_wait(base + L::full_k(st), (t / kS) & 1);', 'sm90::mbar_wait(base + L::full_k(st), ((t / kS) & 1) ^ 1);'),
    # the producer refills a stage without waiting for the consumers to release it
    'no-empty-wait': ('    sm90::mbar_wait(base + L::empty(st), ((t / kS) & 1) ^ 1);', '    // no wait'),
    # the fused prologue's ordinary stores reach wgmma without the async-proxy fence
    'no-proxy-fence': ('    sm90::fence_proxy_async();  // ordinary stores', '    // ordinary stores'),
    # tx-count for one 64-column atom fewer than the copies bring
    'expect-tx': ('sm90::mbar_arrive_expect_tx(base + L::full_v(st), L::kTileBytes);', 'sm90::mbar_arrive_expect_tx(base + L::full_v(st), L::kTileBytes / (D / 64) * (D / 64 - 1) + (D == 64 ? L::kTileBytes / 2 : 0));'),
    # pingpong: warpgroup 1 hands over its last turn too (a barrier left with arrivals)
    'turns': ('if (!(cw == 1 && phase == phases - 1)) sm90::named_bar_arrive', 'if (true) sm90::named_bar_arrive'),
}


def main(root, build, names):
    gen = os.path.join(build, 'gen', 'flash_sm90_emu.h')
    src = open(gen).read()
    emu = os.path.join(root, 'csrc', 'tests', 'emu')
    flags = ['-std=c++20', '-O1', '-w', '-I' + os.path.join(root, 'csrc'), '-I' + emu,
             '-I' + os.environ.get('CUDA_INCLUDE', '/usr/local/cuda/include')]
    missed = []
    for name in names or MUTATIONS:
        edits = MUTATIONS[name]
        mutant = src
        for old, new in edits if isinstance(edits, list) else [edits]:
            if mutant.count(old) != 1:
                sys.exit('plant_sm90.py: %s: the kernel no longer has `%s` exactly once' % (name, old))
            mutant = mutant.replace(old, new)
        d = os.path.join(build, 'plant', name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, 'flash_sm90_emu.h'), 'w') as f:
            f.write(mutant)
        exe = os.path.join(d, 'emu_sm90')
        subprocess.run(['g++'] + flags + ['-I' + d, os.path.join(emu, 'test_sm90_kernels.cc'),
                        os.path.join(build, 'libref.a'), '-o', exe], check=True)
        r = subprocess.run([exe, '1'], capture_output=True, text=True, timeout=900)
        out = (r.stdout + r.stderr).strip().splitlines()
        why = next((l for l in out if l.startswith('EMU ERROR')), None) or \
            next((l for l in out if l.startswith('FAIL')), None) or (out[-1] if out else '')
        if r.returncode == 0:
            missed.append(name)
            print('MISSED  %-15s the mutant passed' % name)
        else:
            nfail = sum(1 for l in out if l.startswith('FAIL'))
            print('caught  %-15s (exit %d, %d failing cases) %s' % (name, r.returncode, nfail, why[:160]))
    if missed:
        sys.exit('plant_sm90.py: mutants not caught: ' + ', '.join(missed))


if __name__ == '__main__':
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])

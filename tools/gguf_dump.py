#!/usr/bin/env python3
"""gguf_dump.py: an independent GGUF reader (Python struct, no project code) that prints the
metadata and tensor infos of a GGUF file. Used to obtain the expected values in tests/test_gguf.c.
usage: tools/gguf_dump.py FILE.gguf"""
import struct
import sys

SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


def main(path):
    d = open(path, 'rb').read()
    o = 0

    def rd(fmt):
        nonlocal o
        v = struct.unpack_from('<' + fmt, d, o)[0]
        o += struct.calcsize('<' + fmt)
        return v

    def rs():
        nonlocal o
        n = rd('Q')
        s = d[o:o + n]
        o += n
        return s.decode('utf-8', 'replace')

    def rv(t):
        if t == 8:
            return rs()
        if t == 9:
            at, n = rd('I'), rd('Q')
            return [rv(at) for _ in range(n)]
        return rd(SCALAR[t])

    assert d[:4] == b'GGUF', 'not a GGUF file'
    o = 4
    ver, nt, nkv = rd('I'), rd('Q'), rd('Q')
    print(f'version {ver} tensors {nt} kv {nkv}')
    align = 32
    for _ in range(nkv):
        k, t = rs(), rd('I')
        v = rv(t)
        if k == 'general.alignment':
            align = v
        if isinstance(v, list):
            print(f'{k} (array of {len(v)}): {v[:12]}')
        else:
            print(f'{k} ({t}): {v}')
    for _ in range(nt):
        nm, nd = rs(), rd('I')
        ne = [rd('Q') for _ in range(nd)]
        ty, off = rd('I'), rd('Q')
        print(f'tensor {nm} ne={ne} type={ty} offset={off}')
    start = (o + align - 1) // align * align
    print(f'data start {start}, file size {len(d)}')


if __name__ == '__main__':
    main(sys.argv[1])

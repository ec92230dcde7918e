/* cpu.c: cpuid-based feature detection. */
#include "core/cpu.h"

#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

static tl_cpu_features feats;
static int detected;

static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static void detect(void) {
    unsigned a, b, c, d;
    memset(&feats, 0, sizeof feats);
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = c & (1u << 27);
    bool fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave) return;
    unsigned long long xcr0 = xgetbv0();
    bool ymm = (xcr0 & 6) == 6, zmm = (xcr0 & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    feats.avx2 = ymm && (b & (1u << 5));
    feats.fma = ymm && fma;
    feats.f16c = ymm && f16c;
    feats.avx512f = zmm && (b & (1u << 16));
    feats.avx512dq = zmm && (b & (1u << 17));
    feats.avx512bw = zmm && (b & (1u << 30));
    feats.avx512vl = zmm && (b & (1u << 31));
    feats.avx512vnni = zmm && (c & (1u << 11));
    unsigned a1, b1, c1, d1;
    if (__get_cpuid_count(7, 1, &a1, &b1, &c1, &d1)) feats.avx512bf16 = zmm && (a1 & (1u << 5));
}

const tl_cpu_features *tl_cpu(void) {
    if (!detected) {
        detect();
        detected = 1;
    }
    return &feats;
}

tl_isa tl_cpu_isa(void) {
    const tl_cpu_features *f = tl_cpu();
    tl_isa best = TL_ISA_SCALAR;
    if (f->avx2 && f->fma && f->f16c) best = TL_ISA_AVX2;
    if (best == TL_ISA_AVX2 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512vnni &&
        f->avx512bf16)
        best = TL_ISA_AVX512;
    const char *cap = getenv("TL_CPU");
    if (cap) {
        tl_isa lim = !strcmp(cap, "scalar") ? TL_ISA_SCALAR : !strcmp(cap, "avx2") ? TL_ISA_AVX2 : TL_ISA_AVX512;
        if (lim < best) best = lim;
    }
    return best;
}

const char *tl_isa_name(tl_isa isa) {
    return isa == TL_ISA_AVX512 ? "avx512" : isa == TL_ISA_AVX2 ? "avx2" : "scalar";
}

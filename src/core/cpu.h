/* cpu.h: run-time CPU feature detection (cpuid + xgetbv), so one binary picks its kernels. */
#ifndef TL_CPU_H
#define TL_CPU_H
#include <stdbool.h>

typedef struct tl_cpu_features {
    bool avx2, fma, f16c;                       /* AVX2 tier */
    bool avx512f, avx512bw, avx512vl, avx512dq; /* AVX-512 tier */
    bool avx512vnni, avx512bf16;
} tl_cpu_features;

/* Cached; TL_CPU=scalar|avx2|avx512 in the environment caps the tier (for tests/benchmarks). */
const tl_cpu_features *tl_cpu(void);
typedef enum { TL_ISA_SCALAR = 0, TL_ISA_AVX2 = 1, TL_ISA_AVX512 = 2 } tl_isa;
tl_isa tl_cpu_isa(void); /* best tier available (and allowed by TL_CPU) */
const char *tl_isa_name(tl_isa isa);

#endif

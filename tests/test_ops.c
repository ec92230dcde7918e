/* test_ops.c: the CPU backend's SIMD SiLU * up (tl_cpu_silu_mul: AVX2 e^x) against the scalar expf
 * reference and against double precision, over the whole useful input range, saturation, +-0,
 * huge values and a ragged tail. */
#include <math.h>

#include "backend/cpu/cpu_ops.h"
#include "core/cpu.h"
#include "tl_test.h"

int main(void) {
    unsigned long long seed = 7;
    enum { N = 100003 }; /* not a multiple of 8: the scalar tail runs too */
    float *g = malloc(N * sizeof(float)), *u = malloc(N * sizeof(float)), *a = malloc(N * sizeof(float)),
          *b = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) {
        float r = tl_t_randf(&seed); /* [-1, 1) */
        g[i] = i % 3 == 0 ? r * 20.0f : i % 3 == 1 ? r * 2.0f : r * 120.0f; /* saturation both ways */
        u[i] = tl_t_randf(&seed) * 3.0f;
    }
    const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 88.0f, -88.0f, 89.0f, -89.0f, 1e30f, -1e30f, 0.5f, -0.5f};
    for (int i = 0; i < 12; i++) g[i * 8 + 1] = special[i], u[i * 8 + 1] = 1.0f;
    memcpy(a, g, N * sizeof(float)), memcpy(b, g, N * sizeof(float));
    tl_cpu_silu_mul(a, u, N);     /* SIMD where the CPU has it */
    tl_cpu_silu_mul_ref(b, u, N); /* scalar expf */
    int bad = 0, bad_d = 0;
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double x = g[i], exact = x / (1.0 + exp(-x)) * u[i];
        double d = fabs((double)a[i] - b[i]), scale = fabs(b[i]) + 1e-30;
        if (!(d <= 4e-7 * scale + 1e-30)) bad++; /* a few ulp of the reference; results below ~1e-30 (g < -64) are 0 for any use */
        if (!(fabs(a[i] - exact) <= 1e-6 * fabs(exact) + 1e-30)) bad_d++;
        if (scale > 1e-20) worst = fmax(worst, d / scale);
    }
    printf("isa %s: silu*up worst rel diff vs scalar expf %.3g over %d values\n", tl_isa_name(tl_cpu_isa()), worst, N);
    CHECK(bad == 0, "%d values differ from the scalar reference by more than 4e-7 relative", bad);
    CHECK(bad_d == 0, "%d values differ from double precision by more than 1e-6 relative", bad_d);
    CHECK(a[1] == 0.0f && a[9] == 0.0f, "silu(+-0) = %g, %g", a[1], a[9]);
    free(g), free(u), free(a), free(b);
    TL_TEST_END();
}

/* test_core.c: fp16/bf16 conversion and the thread pool. */
#include <stdatomic.h>

#include "core/core.h"
#include "core/cpu.h"
#include "core/pool.h"
#include "tl_test.h"

static void count_task(void *ctx, int task, int thread) {
    atomic_int *hits = ctx;
    atomic_fetch_add(&hits[task], 1);
    (void)thread;
}

int main(void) {
    /* f16 round trip of every finite half value */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if (((h >> 10) & 0x1f) == 0x1f) continue;
        if (tl_f32_to_f16(tl_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d half values do not round-trip", bad);
    CHECK(tl_f16_to_f32(0x3c00) == 1.0f);
    CHECK(tl_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(tl_f32_to_f16(1e6f) == 0x7c00, "overflow to inf");
    CHECK(tl_bf16_to_f32(tl_f32_to_bf16(1.0f)) == 1.0f);
    CHECK(tl_f32_to_bf16(1.00390625f) == 0x3f80, "ties to even"); /* 1 + 2^-8 rounds down to 1 */
    CHECK(tl_f32_to_bf16(1.01171875f) == 0x3f82, "ties to even up");

    /* pool: every task runs exactly once, many runs back to back */
    tl_pool *p = tl_pool_create(4);
    static atomic_int hits[1000];
    for (int rep = 0; rep < 200; rep++) tl_pool_run(p, count_task, hits, 1000);
    int wrong = 0;
    for (int i = 0; i < 1000; i++) wrong += atomic_load(&hits[i]) != 200;
    CHECK(wrong == 0, "%d tasks ran a wrong number of times", wrong);
    tl_pool_free(p);

    printf("cpu isa: %s\n", tl_isa_name(tl_cpu_isa()));
    TL_TEST_END();
}

/* test_engine_bench.c: `tinyllm bench` end to end on dummy:tiny: JSON fields present and consistent with
 * the requested workload (token counts from the seeded length ranges, no errors), bad options rejected. */
#include <jansson.h>
#include <sys/wait.h>

#include "tl_test.h"

static char *run(const char *args, int *rc) {
    const char *bin = getenv("TL_BIN");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s bench %s 2>/dev/null", bin ? bin : "build/tinyllm", args);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t k; (k = fread(buf + n, 1, cap - 1 - n, p)) > 0;) n += k;
    buf[n] = 0;
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return buf;
}

int main(void) {
    int rc;
    char *out = run("-m dummy:tiny --num-prompts 5 --input-len 4:9 --output-len 2:4 --seed 3 --sweep 1,5 --json "
                    "--plot /tmp/tl_test_engine_bench.png --max-batch-tokens 16 --block-size 4",
                    &rc);
    CHECK(rc == 0, "bench exit %d", rc);
    json_error_t je;
    json_t *j = json_loads(out ? out : "", 0, &je);
    CHECK(j != NULL, "bench --json output does not parse: %s\n%s", je.text, out ? out : "");
    if (j) {
        json_t *runs = json_object_get(j, "runs");
        CHECK(json_array_size(runs) == 2);
        json_int_t first_out = -1, first_prompt = -1;
        for (size_t i = 0; i < json_array_size(runs); i++) {
            json_t *r = json_array_get(runs, i);
            json_int_t pt = json_integer_value(json_object_get(r, "prompt_tokens"));
            json_int_t ot = json_integer_value(json_object_get(r, "output_tokens"));
            CHECK(pt >= 5 * 4 && pt <= 5 * 9, "prompt tokens %lld", (long long)pt);
            CHECK(ot >= 5 * 2 && ot <= 5 * 4, "output tokens %lld", (long long)ot);
            CHECK(json_integer_value(json_object_get(r, "errors")) == 0);
            CHECK(json_real_value(json_object_get(r, "output_tok_per_s")) > 0);
            CHECK(json_integer_value(json_object_get(r, "peak_kv_blocks")) >= 1);
            if (i == 0) {
                first_out = ot;
                first_prompt = pt;
                CHECK(json_integer_value(json_object_get(r, "concurrency")) == 1);
            } else { /* the same seeded workload at every concurrency */
                CHECK(ot == first_out && pt == first_prompt);
                CHECK(json_integer_value(json_object_get(r, "concurrency")) == 5);
            }
        }
        json_decref(j);
    }
    free(out);
    out = run("-m dummy:tiny --input-len 9:4", &rc);
    CHECK(rc == 2, "a reversed length range is rejected (exit %d)", rc);
    free(out);
    out = run("--num-prompts 3", &rc);
    CHECK(rc == 2, "no model: exit %d", rc);
    free(out);
    TL_TEST_END();
}

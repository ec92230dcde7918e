/* backend.c: picks a backend by name. */
#include "backend/backend.h"

tl_backend *tl_backend_new(const char *name, int n_threads, float gpu_mem_util, tl_error *e) {
    if (!name || !strcmp(name, "auto")) {
        tl_error ce = {{0}};
        tl_backend *be = tl_backend_cuda_new(gpu_mem_util, &ce);
        if (be) return be;
        tl_debug("cuda backend not used: %s", ce.msg);
        return tl_backend_cpu_new(n_threads);
    }
    if (!strcmp(name, "cpu")) return tl_backend_cpu_new(n_threads);
    if (!strcmp(name, "cuda")) return tl_backend_cuda_new(gpu_mem_util, e);
    tl_errf(e, "unknown backend '%s' (cpu, cuda, auto)", name);
    return NULL;
}

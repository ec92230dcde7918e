/* pool.c: persistent workers that spin briefly, then sleep on a condition variable.
 *
 * Work is claimed from a shared atomic counter. The caller only waits for workers that are inside
 * a task (`busy`), never for workers that have not woken yet: on a loaded machine a late worker
 * just finds nothing left to claim, instead of stalling every kernel launch for a time slice.
 * Between runs next = CLOSED, so claims fail. A run waits until no worker is inside a claim, then
 * publishes fn/ctx/n_tasks and opens next = 0; a claim that succeeds therefore sees this run's
 * fn/ctx/n_tasks. busy++ / claim (worker) and CLOSED / busy check (caller) are seq_cst so that a
 * worker is either waited for or finds the run closed. */
#include "core/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "core/core.h"

#define CLOSED (1 << 30)

struct tl_pool {
    int n;                 /* threads including the caller */
    pthread_t *threads;    /* [n - 1] workers */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    tl_task_fn _Atomic fn;
    void *_Atomic ctx;
    atomic_int n_tasks;
    atomic_int next;       /* next task index to claim; >= n_tasks (or CLOSED) when none is left */
    atomic_int busy;       /* workers between "about to claim" and "done with the claimed task" */
    atomic_uint gen;       /* bumped for each run (wakes sleepers) */
    int waiting;           /* caller sleeps on cv_done (under mu) */
    int quit;
};

typedef struct {
    tl_pool *p;
    int id;
} worker_arg;

/* Claims and runs tasks until none is left. Returns the number run. */
static int drain(tl_pool *p, int thread) {
    int ran = 0;
    for (;;) {
        int t = atomic_fetch_add(&p->next, 1); /* seq_cst: pairs with the caller's CLOSED store */
        if (t >= atomic_load(&p->n_tasks)) break;
        tl_task_fn fn = atomic_load_explicit(&p->fn, memory_order_acquire);
        fn(atomic_load_explicit(&p->ctx, memory_order_acquire), t, thread);
        ran++;
    }
    return ran;
}

static void *worker(void *arg) {
    worker_arg wa = *(worker_arg *)arg;
    free(arg);
    tl_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int spin = 0; g == seen && spin < 20000; spin++) {
            __builtin_ia32_pause();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !p->quit) pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (p->quit) return NULL;
        seen = g;
        atomic_fetch_add(&p->busy, 1); /* seq_cst: before the claim, seen by the caller's busy check */
        drain(p, wa.id);
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            if (p->waiting) pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

tl_pool *tl_pool_create(int n_threads) {
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads < 1) n_threads = 1;
    tl_pool *p = tl_calloc(1, sizeof *p);
    p->n = n_threads;
    atomic_store(&p->next, CLOSED);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->threads = tl_calloc((size_t)n_threads, sizeof(pthread_t));
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = tl_malloc(sizeof *wa);
        wa->p = p;
        wa->id = i;
        int rc = pthread_create(&p->threads[i - 1], NULL, worker, wa);
        TL_ASSERT(rc == 0);
    }
    return p;
}

void tl_pool_free(tl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p);
}

int tl_pool_size(const tl_pool *p) { return p ? p->n : 1; }

void tl_pool_run(tl_pool *p, tl_task_fn fn, void *ctx, int n_tasks) {
    if (n_tasks <= 0) return;
    TL_ASSERT(n_tasks < CLOSED / 2);
    if (!p || p->n == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    /* A worker that woke for the previous run may still be inside a (failing) claim: let it leave
     * before this run's n_tasks becomes visible, or it could compare an old index with the new count. */
    while (atomic_load(&p->busy) > 0) __builtin_ia32_pause();
    atomic_store_explicit(&p->fn, fn, memory_order_release);
    atomic_store_explicit(&p->ctx, ctx, memory_order_release);
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_release);
    atomic_store_explicit(&p->next, 0, memory_order_release);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    /* all tasks are claimed: wait only for workers still inside one */
    for (int spin = 0; atomic_load_explicit(&p->busy, memory_order_acquire) > 0 && spin < 100000; spin++)
        __builtin_ia32_pause();
    if (atomic_load(&p->busy) > 0) {
        pthread_mutex_lock(&p->mu);
        p->waiting = 1;
        while (atomic_load(&p->busy) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        p->waiting = 0;
        pthread_mutex_unlock(&p->mu);
    }
    atomic_store(&p->next, CLOSED); /* seq_cst: a claim after this fails */
}

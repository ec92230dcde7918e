/* pool.h: a persistent thread pool for data-parallel kernels.
 * tl_pool_run(pool, fn, ctx, n_tasks) calls fn(ctx, task, thread) for task in [0, n_tasks),
 * spread over the pool's threads (the caller's thread is thread 0), and returns when all
 * are done. Tasks are handed out by an atomic counter, so uneven work balances itself.
 * One run at a time per pool: the pool belongs to one engine / model. */
#ifndef TL_POOL_H
#define TL_POOL_H

typedef struct tl_pool tl_pool;
typedef void (*tl_task_fn)(void *ctx, int task, int thread);

tl_pool *tl_pool_create(int n_threads); /* n_threads <= 0: number of online CPUs */
void tl_pool_free(tl_pool *p);
int tl_pool_size(const tl_pool *p);
void tl_pool_run(tl_pool *p, tl_task_fn fn, void *ctx, int n_tasks);
/* NULL pool runs everything on the caller's thread. */

#endif

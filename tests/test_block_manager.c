/* test_block_manager.c: block accounting, prefix-cache hits, LRU eviction, and a randomized stress test
 * (admit / grow / finish / cancel / preempt in any order) checked against a shadow model of what each
 * block's K/V holds. */
#include "kv/block_manager.h"
#include "tl_test.h"

static int check(tl_block_manager *bm, tl_bm_seq **seqs, int n) {
    tl_error e = {{0}};
    int rc = tl_bm_check(bm, (const tl_bm_seq *const *)seqs, n, &e);
    if (rc) fprintf(stderr, "check: %s\n", e.msg);
    return rc;
}

static void test_basic(void) {
    tl_block_manager *bm = tl_bm_new(8, 4, true);
    tl_bm_seq a, b;
    tl_bm_seq_init(&a, 8);
    tl_bm_seq_init(&b, 8);
    int32_t ta[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(tl_bm_allocate_prefix(bm, &a, ta, 10) == 0, "empty cache has no hits");
    CHECK(tl_bm_blocks_needed(bm, &a, 10) == 3);
    CHECK(tl_bm_append(bm, &a, 10) == 0 && a.n_blocks == 3);
    CHECK(tl_bm_num_allocatable(bm) == 5);
    tl_bm_commit(bm, &a, ta, 10); /* blocks 0, 1 full -> registered; block 2 partial */
    CHECK(a.n_hashed == 2);
    tl_bm_seq *sa[] = {&a};
    CHECK(check(bm, sa, 1) == 0);

    /* b shares the first 8 tokens while a is still running: shared blocks, ref 2 */
    int32_t tb[9] = {1, 2, 3, 4, 5, 6, 7, 8, 42};
    CHECK(tl_bm_allocate_prefix(bm, &b, tb, 9) == 8, "two full blocks hit");
    CHECK(b.blocks[0] == a.blocks[0] && b.blocks[1] == a.blocks[1]);
    CHECK(tl_bm_append(bm, &b, 9) == 0 && b.n_blocks == 3 && b.blocks[2] != a.blocks[2]);
    tl_bm_seq *sab[] = {&a, &b};
    CHECK(check(bm, sab, 2) == 0);
    tl_bm_stats st;
    tl_bm_stats_get(bm, &st);
    CHECK(st.n_used == 4 && st.hits == 2 && st.queries == 4, "used %d hits %lld", st.n_used, (long long)st.hits);

    /* an exact full-block prompt never matches entirely: the last block is recomputed */
    tl_bm_deallocate(bm, &b);
    CHECK(tl_bm_allocate_prefix(bm, &b, tb, 8) == 4, "last token must be left to compute");
    tl_bm_deallocate(bm, &b);
    /* a different first block: no hit even though block 1's tokens match (the hash is chained) */
    int32_t tc[9] = {9, 2, 3, 4, 5, 6, 7, 8, 0};
    CHECK(tl_bm_allocate_prefix(bm, &b, tc, 9) == 0);
    tl_bm_deallocate(bm, &a);
    CHECK(check(bm, sab, 2) == 0);
    tl_bm_stats_get(bm, &st);
    CHECK(st.n_used == 0 && st.n_cached == 2 && st.n_free == 6, "used %d cached %d free %d", st.n_used, st.n_cached,
          st.n_free);
    /* cached blocks survive a release and are found again */
    CHECK(tl_bm_allocate_prefix(bm, &b, tb, 9) == 8);
    tl_bm_deallocate(bm, &b);

    /* cap: a table can never grow past its cap; a pool can't give more than it has */
    CHECK(!tl_bm_can_append(bm, &b, 8 * 4 + 1));
    CHECK(tl_bm_append(bm, &b, 8 * 4) == 0, "the whole pool, evicting cached blocks");
    tl_bm_stats_get(bm, &st);
    CHECK(st.evictions == 2 && st.n_cached == 0 && st.n_used == 8);
    CHECK(tl_bm_append(bm, &a, 1) == -1 && a.n_blocks == 0, "pool exhausted");
    tl_bm_deallocate(bm, &b);
    CHECK(check(bm, sab, 2) == 0);
    tl_bm_seq_free(&a);
    tl_bm_seq_free(&b);
    tl_bm_free(bm);
}

/* LRU: the block released longest ago is evicted first; a sequence's tail before its head. */
static void test_lru(void) {
    tl_block_manager *bm = tl_bm_new(4, 2, true);
    tl_bm_seq a, b, c;
    tl_bm_seq_init(&a, 4);
    tl_bm_seq_init(&b, 4);
    tl_bm_seq_init(&c, 4);
    int32_t ta[5] = {1, 1, 2, 2, 0}, tb[5] = {3, 3, 4, 4, 0};
    tl_bm_append(bm, &a, 4);
    tl_bm_commit(bm, &a, ta, 4);
    tl_bm_append(bm, &b, 4);
    tl_bm_commit(bm, &b, tb, 4);
    tl_bm_deallocate(bm, &a); /* LRU: a1 a0 */
    tl_bm_deallocate(bm, &b); /* LRU: a1 a0 b1 b0 */
    CHECK(tl_bm_append(bm, &c, 2) == 0, "evicts a's second block");
    CHECK(tl_bm_allocate_prefix(bm, &a, ta, 5) == 2, "a's first block is still cached");
    tl_bm_deallocate(bm, &a);
    /* LRU now b1 b0 a0: the next allocation evicts b1, so b's prefix match drops to one block */
    tl_bm_deallocate(bm, &c);
    tl_bm_append(bm, &c, 4); /* c's own free block first (c0 was unregistered), then evicts b1 */
    CHECK(tl_bm_allocate_prefix(bm, &b, tb, 5) == 2);
    tl_bm_deallocate(bm, &b);
    tl_bm_deallocate(bm, &c);
    tl_bm_seq *s[] = {&a, &b, &c};
    CHECK(check(bm, s, 3) == 0);
    tl_bm_seq_free(&a);
    tl_bm_seq_free(&b);
    tl_bm_seq_free(&c);
    tl_bm_free(bm);
}

/* ---- randomized stress with a shadow of block contents ---- */
#define NS 12
#define MAXT 64
typedef struct {
    int active;
    int32_t tok[MAXT];
    int n_tok, n_computed;
    tl_bm_seq t;
} sseq;

static void stress(bool prefix, unsigned long long seed) {
    const int nb = 24, bs = 4;
    tl_block_manager *bm = tl_bm_new(nb, bs, prefix);
    int32_t shadow[24 * 4];
    for (int i = 0; i < nb * bs; i++) shadow[i] = -1;
    sseq s[NS];
    tl_bm_seq *tabs[NS];
    memset(s, 0, sizeof s);
    for (int i = 0; i < NS; i++) {
        tl_bm_seq_init(&s[i].t, MAXT / bs);
        tabs[i] = &s[i].t;
    }
    unsigned long long r = seed;
    int bad_shadow = 0, bad_check = 0, n_hit_tokens = 0, n_ops = 4000;
    for (int op = 0; op < n_ops; op++) {
        sseq *q = &s[tl_t_rng(&r) % NS];
        int what = (int)(tl_t_rng(&r) % 10);
        if (!q->active) { /* admit: a prompt drawn from 3 templates + random tail, so prefixes repeat */
            int tmpl = (int)(tl_t_rng(&r) % 3), n = 1 + (int)(tl_t_rng(&r) % 30);
            for (int i = 0; i < n; i++) q->tok[i] = i < 12 ? tmpl * 100 + i : (int32_t)(tl_t_rng(&r) % 5);
            q->n_tok = n;
            int hit = tl_bm_allocate_prefix(bm, &q->t, q->tok, n);
            TL_ASSERT(hit < n && hit % bs == 0);
            for (int i = 0; i < hit; i++) /* what the matched blocks hold must be our tokens */
                if (shadow[q->t.blocks[i / bs] * bs + i % bs] != q->tok[i]) bad_shadow++;
            n_hit_tokens += hit;
            q->n_computed = hit;
            q->active = 1;
        } else if (what < 6) { /* compute a chunk (prefill or decode), growing the table first */
            if (q->n_computed == q->n_tok) {
                if (q->n_tok == MAXT) continue;
                q->tok[q->n_tok++] = (int32_t)(tl_t_rng(&r) % 5); /* a sampled token */
            }
            int k = 1 + (int)(tl_t_rng(&r) % (q->n_tok - q->n_computed));
            if (tl_bm_append(bm, &q->t, q->n_computed + k) != 0) { /* out of blocks: preempt this one */
                tl_bm_deallocate(bm, &q->t);
                q->n_computed = 0;
                q->active = 0;
                continue;
            }
            for (int p = q->n_computed; p < q->n_computed + k; p++) { /* "write K/V" */
                int id = q->t.blocks[p / bs];
                shadow[id * bs + p % bs] = q->tok[p];
            }
            q->n_computed += k;
            tl_bm_commit(bm, &q->t, q->tok, q->n_computed);
        } else { /* finish, cancel or preempt: all release everything */
            tl_bm_deallocate(bm, &q->t);
            q->active = 0;
        }
        if (check(bm, tabs, NS)) bad_check++;
        if (bad_check > 3) break;
    }
    CHECK(bad_shadow == 0, "%d matched tokens differ from what their block holds", bad_shadow);
    CHECK(bad_check == 0, "%d consistency failures", bad_check);
    if (prefix) CHECK(n_hit_tokens > 0, "the stress test never hit the prefix cache");
    else CHECK(n_hit_tokens == 0);
    for (int i = 0; i < NS; i++) tl_bm_deallocate(bm, &s[i].t);
    tl_bm_stats st;
    tl_bm_stats_get(bm, &st);
    CHECK(st.n_used == 0 && st.n_free + st.n_cached == nb, "leak: used %d free %d cached %d", st.n_used, st.n_free,
          st.n_cached);
    CHECK(check(bm, tabs, NS) == 0);
    for (int i = 0; i < NS; i++) tl_bm_seq_free(&s[i].t);
    tl_bm_free(bm);
}

int main(void) {
    test_basic();
    test_lru();
    for (unsigned long long seed = 1; seed <= 4; seed++) {
        stress(true, seed);
        stress(false, seed);
    }
    /* the hash chains over earlier blocks */
    int32_t x[4] = {1, 2, 3, 4};
    CHECK(tl_bm_hash(0, x, 4) != tl_bm_hash(1, x, 4));
    CHECK(tl_bm_hash(7, x, 4) == tl_bm_hash(7, x, 4));
    TL_TEST_END();
}

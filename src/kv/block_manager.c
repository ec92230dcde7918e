/* block_manager.c: KV block ownership, reference counts and the prefix cache (see block_manager.h).
 *
 * Structures: per block a reference count, its registered key (hash, parent hash, token ids) and links;
 * a stack of free blocks; a doubly linked LRU list of cached blocks (head = released longest ago); a
 * chained hash table (bucket heads + per-block next) over registered blocks. All sized at creation. */
#include "kv/block_manager.h"

typedef struct bm_block {
    int ref;
    bool hashed;           /* registered in the hash table */
    uint64_t hash, parent; /* key, valid when hashed */
    int prev, next;        /* LRU links (cached blocks only), -1 = none */
    int hnext;             /* next block in the same hash bucket, -1 = none */
} bm_block;

struct tl_block_manager {
    int n_blocks, bs;
    bool prefix;
    bm_block *b;      /* [n_blocks] */
    int32_t *toks;    /* [n_blocks, bs] token ids of registered blocks */
    int *free_stack;  /* [n_blocks] */
    int n_free;
    int lru_head, lru_tail, n_cached;
    int *buckets;     /* [mask + 1] */
    uint32_t mask;
    int n_used, peak_used;
    int64_t queries, hits, evictions;
};

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t tl_bm_hash(uint64_t parent, const int32_t *tokens, int block_size) {
    uint64_t h = mix64(parent + 0x9e3779b97f4a7c15ULL);
    for (int i = 0; i < block_size; i++) h = mix64(h ^ ((uint64_t)(uint32_t)tokens[i] + 0x632be59bd9b4e019ULL));
    return h;
}

void tl_bm_seq_init(tl_bm_seq *s, int cap) {
    memset(s, 0, sizeof *s);
    s->cap = cap;
    s->blocks = tl_malloc((size_t)(cap > 0 ? cap : 1) * sizeof *s->blocks);
}

void tl_bm_seq_free(tl_bm_seq *s) {
    free(s->blocks);
    memset(s, 0, sizeof *s);
}

tl_block_manager *tl_bm_new(int n_blocks, int block_size, bool prefix_cache) {
    TL_ASSERT(n_blocks > 0 && block_size > 0);
    tl_block_manager *bm = tl_calloc(1, sizeof *bm);
    bm->n_blocks = n_blocks;
    bm->bs = block_size;
    bm->prefix = prefix_cache;
    bm->b = tl_calloc((size_t)n_blocks, sizeof *bm->b);
    bm->toks = tl_calloc((size_t)n_blocks * block_size, sizeof *bm->toks);
    bm->free_stack = tl_malloc((size_t)n_blocks * sizeof *bm->free_stack);
    for (int i = 0; i < n_blocks; i++) { /* lowest ids handed out first */
        bm->free_stack[i] = n_blocks - 1 - i;
        bm->b[i].prev = bm->b[i].next = bm->b[i].hnext = -1;
    }
    bm->n_free = n_blocks;
    bm->lru_head = bm->lru_tail = -1;
    uint32_t nb = 16;
    while (nb < 2u * (uint32_t)n_blocks && nb < (1u << 30)) nb <<= 1;
    bm->mask = nb - 1;
    bm->buckets = tl_malloc(nb * sizeof *bm->buckets);
    for (uint32_t i = 0; i < nb; i++) bm->buckets[i] = -1;
    return bm;
}

void tl_bm_free(tl_block_manager *bm) {
    if (!bm) return;
    free(bm->b);
    free(bm->toks);
    free(bm->free_stack);
    free(bm->buckets);
    free(bm);
}

int tl_bm_block_size(const tl_block_manager *bm) { return bm->bs; }
int tl_bm_num_blocks(const tl_block_manager *bm) { return bm->n_blocks; }
int tl_bm_num_allocatable(const tl_block_manager *bm) { return bm->n_free + bm->n_cached; }

/* ---- LRU list of cached blocks ---- */
static void lru_remove(tl_block_manager *bm, int id) {
    bm_block *k = &bm->b[id];
    if (k->prev >= 0) bm->b[k->prev].next = k->next; else bm->lru_head = k->next;
    if (k->next >= 0) bm->b[k->next].prev = k->prev; else bm->lru_tail = k->prev;
    k->prev = k->next = -1;
    bm->n_cached--;
}

static void lru_push_tail(tl_block_manager *bm, int id) {
    bm_block *k = &bm->b[id];
    k->prev = bm->lru_tail;
    k->next = -1;
    if (bm->lru_tail >= 0) bm->b[bm->lru_tail].next = id; else bm->lru_head = id;
    bm->lru_tail = id;
    bm->n_cached++;
}

/* ---- hash table ---- */
static int table_find(const tl_block_manager *bm, uint64_t h, uint64_t parent, const int32_t *tokens) {
    for (int id = bm->buckets[h & bm->mask]; id >= 0; id = bm->b[id].hnext) {
        const bm_block *k = &bm->b[id];
        if (k->hash == h && k->parent == parent &&
            !memcmp(bm->toks + (size_t)id * bm->bs, tokens, (size_t)bm->bs * sizeof *tokens))
            return id;
    }
    return -1;
}

static void table_remove(tl_block_manager *bm, int id) {
    int *p = &bm->buckets[bm->b[id].hash & bm->mask];
    while (*p != id) {
        TL_ASSERT(*p >= 0);
        p = &bm->b[*p].hnext;
    }
    *p = bm->b[id].hnext;
    bm->b[id].hnext = -1;
    bm->b[id].hashed = false;
}

static void table_insert(tl_block_manager *bm, int id, uint64_t h, uint64_t parent, const int32_t *tokens) {
    bm_block *k = &bm->b[id];
    k->hash = h;
    k->parent = parent;
    k->hashed = true;
    memcpy(bm->toks + (size_t)id * bm->bs, tokens, (size_t)bm->bs * sizeof *tokens);
    uint32_t slot = (uint32_t)(h & bm->mask);
    k->hnext = bm->buckets[slot];
    bm->buckets[slot] = id;
}

/* ---- single blocks ---- */
static void mark_used(tl_block_manager *bm) {
    bm->n_used++;
    if (bm->n_used > bm->peak_used) bm->peak_used = bm->n_used;
}

static int block_alloc(tl_block_manager *bm) {
    int id;
    if (bm->n_free > 0) {
        id = bm->free_stack[--bm->n_free];
    } else if (bm->lru_head >= 0) { /* evict the least recently released cached block */
        id = bm->lru_head;
        lru_remove(bm, id);
        table_remove(bm, id);
        bm->evictions++;
    } else {
        return -1;
    }
    TL_ASSERT(bm->b[id].ref == 0 && !bm->b[id].hashed);
    bm->b[id].ref = 1;
    mark_used(bm);
    return id;
}

static void block_acquire(tl_block_manager *bm, int id) {
    bm_block *k = &bm->b[id];
    if (k->ref == 0) { /* a cached block comes back into use */
        lru_remove(bm, id);
        mark_used(bm);
    }
    k->ref++;
}

static void block_release(tl_block_manager *bm, int id) {
    bm_block *k = &bm->b[id];
    TL_ASSERT(k->ref > 0); /* a double free is a broken invariant */
    if (--k->ref > 0) return;
    bm->n_used--;
    if (k->hashed) lru_push_tail(bm, id);
    else bm->free_stack[bm->n_free++] = id;
}

/* ---- sequences ---- */
static int prefix_walk(const tl_block_manager *bm, const int32_t *tokens, int n_tokens, tl_bm_seq *take,
                       int *n_from_cached) {
    int max_blocks = n_tokens > 0 ? (n_tokens - 1) / bm->bs : 0;
    uint64_t h = 0;
    int n = 0, from_cached = 0;
    while (n < max_blocks) {
        uint64_t nh = tl_bm_hash(h, tokens + (size_t)n * bm->bs, bm->bs);
        int id = table_find(bm, nh, h, tokens + (size_t)n * bm->bs);
        if (id < 0) break;
        if (bm->b[id].ref == 0) from_cached++;
        if (take) {
            block_acquire((tl_block_manager *)bm, id);
            take->blocks[take->n_blocks++] = id;
            take->hash = nh;
            take->n_hashed = n + 1;
        }
        h = nh;
        n++;
    }
    if (n_from_cached) *n_from_cached = from_cached;
    return n;
}

int tl_bm_peek_prefix(const tl_block_manager *bm, const int32_t *tokens, int n_tokens, int *n_from_cached) {
    if (n_from_cached) *n_from_cached = 0;
    if (!bm->prefix) return 0;
    return prefix_walk(bm, tokens, n_tokens, NULL, n_from_cached) * bm->bs;
}

int tl_bm_allocate_prefix(tl_block_manager *bm, tl_bm_seq *s, const int32_t *tokens, int n_tokens) {
    TL_ASSERT(s->n_blocks == 0);
    s->n_hashed = 0;
    s->hash = 0;
    if (!bm->prefix) return 0;
    int max_blocks = n_tokens > 0 ? (n_tokens - 1) / bm->bs : 0;
    if (max_blocks > s->cap) max_blocks = s->cap;
    int n = prefix_walk(bm, tokens, TL_MIN(n_tokens, max_blocks * bm->bs + 1), s, NULL);
    bm->queries += max_blocks;
    bm->hits += n;
    return n * bm->bs;
}

int tl_bm_blocks_needed(const tl_block_manager *bm, const tl_bm_seq *s, int n_tokens) {
    int need = TL_CDIV(n_tokens, bm->bs) - s->n_blocks;
    return need > 0 ? need : 0;
}

bool tl_bm_can_append(const tl_block_manager *bm, const tl_bm_seq *s, int n_tokens) {
    return TL_CDIV(n_tokens, bm->bs) <= s->cap && tl_bm_blocks_needed(bm, s, n_tokens) <= tl_bm_num_allocatable(bm);
}

int tl_bm_append(tl_block_manager *bm, tl_bm_seq *s, int n_tokens) {
    if (!tl_bm_can_append(bm, s, n_tokens)) return -1;
    for (int need = tl_bm_blocks_needed(bm, s, n_tokens); need > 0; need--) {
        int id = block_alloc(bm);
        TL_ASSERT(id >= 0);
        s->blocks[s->n_blocks++] = id;
    }
    return 0;
}

void tl_bm_commit(tl_block_manager *bm, tl_bm_seq *s, const int32_t *tokens, int n_computed) {
    if (!bm->prefix) return;
    int full = TL_MIN(n_computed / bm->bs, s->n_blocks);
    while (s->n_hashed < full) {
        int i = s->n_hashed, id = s->blocks[i];
        const int32_t *t = tokens + (size_t)i * bm->bs;
        uint64_t h = tl_bm_hash(s->hash, t, bm->bs);
        /* An identical block computed by another sequence stays the one registered; this copy stays
         * unregistered and becomes free when released. */
        if (!bm->b[id].hashed && table_find(bm, h, s->hash, t) < 0) table_insert(bm, id, h, s->hash, t);
        s->hash = h;
        s->n_hashed++;
    }
}

void tl_bm_deallocate(tl_block_manager *bm, tl_bm_seq *s) {
    for (int i = s->n_blocks - 1; i >= 0; i--) block_release(bm, s->blocks[i]);
    s->n_blocks = 0;
    s->n_hashed = 0;
    s->hash = 0;
}

void tl_bm_stats_get(const tl_block_manager *bm, tl_bm_stats *st) {
    st->n_used = bm->n_used;
    st->n_cached = bm->n_cached;
    st->n_free = bm->n_free;
    st->peak_used = bm->peak_used;
    st->queries = bm->queries;
    st->hits = bm->hits;
    st->evictions = bm->evictions;
}

int tl_bm_check(const tl_block_manager *bm, const tl_bm_seq *const *seqs, int n_seqs, tl_error *e) {
    int n = bm->n_blocks, rc = 0;
    int *uses = tl_calloc((size_t)n, sizeof *uses), *where = tl_calloc((size_t)n, sizeof *where);
    for (int q = 0; q < n_seqs; q++)
        for (int i = 0; i < seqs[q]->n_blocks; i++) {
            int id = seqs[q]->blocks[i];
            if (id < 0 || id >= n) { rc = tl_errf(e, "seq %d holds bad block id %d", q, id); goto out; }
            uses[id]++;
        }
    for (int i = 0; i < bm->n_free; i++) where[bm->free_stack[i]] += 1;
    int n_lru = 0, prev = -1;
    for (int id = bm->lru_head; id >= 0; id = bm->b[id].next, n_lru++) {
        if (n_lru > n || bm->b[id].prev != prev) { rc = tl_errf(e, "LRU list broken at block %d", id); goto out; }
        where[id] += 2;
        prev = id;
    }
    if (prev != bm->lru_tail || n_lru != bm->n_cached) { rc = tl_errf(e, "LRU tail/count wrong"); goto out; }
    for (uint32_t sl = 0; sl <= bm->mask; sl++)
        for (int id = bm->buckets[sl], k = 0; id >= 0; id = bm->b[id].hnext, k++) {
            if (k > n || !bm->b[id].hashed || (bm->b[id].hash & bm->mask) != sl) {
                rc = tl_errf(e, "hash bucket %u broken at block %d", sl, id);
                goto out;
            }
            where[id] += 4;
        }
    int used = 0;
    for (int id = 0; id < n; id++) {
        const bm_block *k = &bm->b[id];
        if (k->ref != uses[id]) { rc = tl_errf(e, "block %d: ref %d but %d uses", id, k->ref, uses[id]); goto out; }
        int in_table = (where[id] & 4) ? 4 : 0;
        if (k->hashed != (in_table != 0)) { rc = tl_errf(e, "block %d: hashed flag disagrees with table", id); goto out; }
        int lists = where[id] - in_table; /* 1: free stack, 2: LRU */
        int want = k->ref > 0 ? 0 : k->hashed ? 2 : 1;
        if (lists != want) {
            rc = tl_errf(e, "block %d (ref %d, hashed %d) is in lists %d, expected %d", id, k->ref, k->hashed, lists,
                         want);
            goto out;
        }
        used += k->ref > 0;
    }
    if (used != bm->n_used || used + bm->n_free + bm->n_cached != n)
        rc = tl_errf(e, "counts: used %d/%d free %d cached %d of %d", used, bm->n_used, bm->n_free, bm->n_cached, n);
out:
    free(uses);
    free(where);
    return rc;
}

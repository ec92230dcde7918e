/* block_manager.h: which KV blocks each sequence owns, with prefix caching (nano-vllm style).
 *
 * A block is in exactly one of three states:
 *   used   ref > 0 (owned by one or more sequences; shared blocks are always full and never written)
 *   cached ref == 0, holds a registered hash: its K/V can be found again by a later prompt; evicted LRU
 *   free   ref == 0, no hash
 * Allocation takes a free block first, else evicts the least recently released cached block.
 *
 * Prefix cache key of full block i of a sequence: h_i = H(h_{i-1}, tokens[i*bs .. (i+1)*bs)), h_{-1} = 0.
 * A hit is accepted only when the stored parent hash and the block's token ids match too (not the hash
 * alone). A block is registered only after its K/V were computed (tl_bm_commit), never at allocation,
 * so a chunked prefill in flight is never "hit" before its K/V exist.
 *
 * Not thread-safe: the engine's stepping thread is its only user. */
#ifndef TL_BLOCK_MANAGER_H
#define TL_BLOCK_MANAGER_H

#include "core/core.h"

typedef struct tl_block_manager tl_block_manager;

/* One sequence's block table. Zero-initialize, then tl_bm_seq_init. */
typedef struct tl_bm_seq {
    int32_t *blocks;  /* [cap] block ids; blocks[i] holds positions i*bs .. i*bs+bs-1 */
    int n_blocks, cap;
    int n_hashed;     /* leading full blocks already registered in (or matched from) the prefix cache */
    uint64_t hash;    /* chain hash of block n_hashed-1 (0 when n_hashed == 0) */
} tl_bm_seq;

/* cap: most blocks this sequence can ever hold (ceil(n_ctx / block_size)). */
void tl_bm_seq_init(tl_bm_seq *s, int cap);
void tl_bm_seq_free(tl_bm_seq *s); /* frees the table memory; release the blocks first */

tl_block_manager *tl_bm_new(int n_blocks, int block_size, bool prefix_cache);
void tl_bm_free(tl_block_manager *bm);
int tl_bm_block_size(const tl_block_manager *bm);
int tl_bm_num_blocks(const tl_block_manager *bm);
int tl_bm_num_allocatable(const tl_block_manager *bm); /* free + cached */

/* Admission of a sequence with an empty table: takes a reference on the longest run of cached blocks
 * matching tokens[0..n_tokens), limited so that at least the last token is left to compute (the whole
 * last block is recomputed when everything matched). Returns the number of tokens covered (a multiple
 * of block_size). Matched blocks that were cached (ref 0) leave the allocatable count. */
int tl_bm_allocate_prefix(tl_block_manager *bm, tl_bm_seq *s, const int32_t *tokens, int n_tokens);
/* Same lookup without taking anything: how many tokens would match, and how many of the matched
 * blocks currently have ref 0 (they would stop being allocatable). */
int tl_bm_peek_prefix(const tl_block_manager *bm, const int32_t *tokens, int n_tokens, int *n_from_cached);

/* Blocks needed to grow the table to cover n_tokens positions. */
int tl_bm_blocks_needed(const tl_block_manager *bm, const tl_bm_seq *s, int n_tokens);
bool tl_bm_can_append(const tl_block_manager *bm, const tl_bm_seq *s, int n_tokens);
/* Grows the table to cover n_tokens positions. Returns 0, or -1 (nothing changed) when short of blocks
 * or beyond the table's cap. */
int tl_bm_append(tl_block_manager *bm, tl_bm_seq *s, int n_tokens);

/* After the forward wrote K/V of positions < n_computed: registers every newly full block of the
 * sequence in the prefix cache (tokens: the sequence's ids, at least n_computed of them). */
void tl_bm_commit(tl_block_manager *bm, tl_bm_seq *s, const int32_t *tokens, int n_computed);

/* Releases every block of the table (last block first, so the tail of a sequence is evicted before
 * its head) and empties it. Blocks with a registered hash stay cached. */
void tl_bm_deallocate(tl_block_manager *bm, tl_bm_seq *s);

/* The chained hash of one full block. */
uint64_t tl_bm_hash(uint64_t parent, const int32_t *tokens, int block_size);

typedef struct tl_bm_stats {
    int n_used, n_cached, n_free;
    int peak_used;
    int64_t queries, hits; /* full blocks looked up at admission / found */
    int64_t evictions;
} tl_bm_stats;
void tl_bm_stats_get(const tl_block_manager *bm, tl_bm_stats *st);

/* Full consistency check (tests): every block in exactly one state, lists and hash table agree,
 * reference counts equal the given tables' uses. Returns 0, or -1 with the first problem in e. */
int tl_bm_check(const tl_block_manager *bm, const tl_bm_seq *const *seqs, int n_seqs, tl_error *e);

#endif

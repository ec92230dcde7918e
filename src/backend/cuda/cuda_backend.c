/* cuda_backend.c: the CUDA backend (host side, C): weights uploaded once (INT4 kept as INT4, q/k/v and
 * gate/up fused into one matrix each), the KV pool in device memory sized from free memory, and the
 * forward pass over a flat mixed batch with every activation on the device: the batch metadata goes up
 * in one copy per step, the logits of the rows that need them come back at the end.
 *
 * Matrix products: INT4 with <= 16 rows -> tl_cu_q4g_gemv (q4_gemv.cu, one launch) where x fits its shared
 * memory, else tl_cu_q4t_gemv (q4_mma.cu) or tl_cu_q4_gemv (decode); decode-sized steps with every matrix
 * tiled run as forward_decode (norms, SiLU*up and residual adds inside the GEMVs, PDL). 17..CU_BIG_T rows: the
 * INT4 tensor-core GEMM (q4_gemm.cu) where it measured faster (no bf16 copy: <= CU_Q4GEMM_NOCOPY_MAX rows; with
 * one: <= CU_Q4GEMM_COPY_MAX). Otherwise the INT4 matrix's resident bf16 copy, or its rows dequantized to bf16 in
 * chunks, multiplied by cuBLAS (bf16 in, fp32 out). Non-INT4 weights are held in bf16 (cuBLAS).
 * Forwards of > CU_BIG_T tokens feed cuBLAS bf16 written by the producers (matmul_big, prefill_ops.cu).
 * Attention: sequences with > 16 new tokens on the tensor-core prefill kernel (attn_prefill.cu), the other
 * tokens on attn.cu's kernel (attention()). Decode steps (every sequence one new token) in forward_decode:
 * RoPE + KV write + attention in one kernel (tl_cu_attention_decode_rope), then the slice merge.
 * Sampling on the device (sample.cu) in steps launched ahead (cu_launch / cu_collect, at most CU_NBUF in flight,
 * host buffers alternated per launch); a step's TL_TOKEN_PREV tokens are resolved on the device from the previous
 * step's sampled rows by the embedding kernel; forward_sample is launch + collect. */
#ifdef TL_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_ops.h" /* tl_tensor_row_f32 */
#include "backend/cuda/cu_sample.h"
#include "backend/cuda/cuda_ops.h"

#define CU_MAX_TOK_DEFAULT 4096   /* activation arena sized for this many tokens per forward (grows) */
#define CU_LOGIT_CHUNK 256        /* lm_head rows per pass: bounds the device logits buffer */
#define CU_DEQ_ELEMS (64u << 20)  /* dequantize scratch: 64M bf16 (128 MiB) */
#define CU_MAX_ALLOCS 4096
#define CU_PROF_EV 1024           /* profiling events per forward at most */
enum { P_OTHER, P_MATMUL, P_ATTN, P_LMHEAD, P_SAMPLE, P_N };
static const char *const p_name[P_N] = {"other", "matmul", "attention", "lm_head", "sample"};
#define CU_PREFILL_MIN_NEW 16     /* sequences with more new tokens than this: tensor-core prefill attention */
#define CU_ATTN_DEC_DEFAULT 1     /* 1: decode rows on attn_decode.cu's tensor-core kernel unless TL_CUDA_ATTN_DEC=old
                                   * (H200, ae71365: 3.0-3.2x attn.cu at 64-512 rows, 1.9x at batch 1; engine 12,940
                                   * vs 9,429 output tok/s; GPU tests pass with it on); 0: attn.cu unless =tc */
#define CU_PREFILL_ROWS 128       /* query rows per block of the prefill attention kernel (64 or 128): 128 measured
                                   * 210 vs 192 TFLOP/s at 4096 tokens (7B, H200), the end-to-end prefill 1% faster */
#define CU_DECODE_RING 5          /* forward_decode's GEMV ring stages (see forward_decode) */
#define CU_ATT_MERGE_DEFAULT 0    /* forward_decode's attention slices: merge kernel (TL_CUDA_ATT_MERGE). H100, 7B
                                   * batch 1 ctx 512, 3765dec: cluster 2.368 ms/token (5 samples), kernel 2.366 / 2.367,
                                   * last slice 2.560 (17d9798: 2.390, 2.360, 2.624): the cluster saves no time, the
                                   * kernel has no slice limit */
#define CU_DEC_SPLIT_KEYS 128     /* forward_decode's attention: >= this many context positions a slice. With the
                                   * q/k/v GEMV leaving the attention blocks multiprocessors of their own (qkv_room),
                                   * 128 (7B batch 1 ctx 512: 16 blocks, both 64-key tiles of each loaded before the
                                   * PDL wait) measured 2.046-2.061 ms/token against 2.112-2.126 with 64 (32 blocks,
                                   * q/k/v on 100) and 2.126-2.144 with 256, H100, one run (TL_CUDA_SPLIT_KEYS); without
                                   * the room 64 was as fast as 128 (3765dec, 17d9798) and 128 is now 2.170-2.174 */
#define CU_GKEY 28                /* graph key: the shape and switches a captured decode step depends on */
#define CU_NBUF 2                 /* steps launched and not collected at most (cu_launch); host buffers per kind */
#define CU_BIG_T 512              /* forwards of more tokens: bf16 activations into cuBLAS (layer_big) */
#define CU_Q4GEMM_COPY_MAX 48     /* INT4 products of 17..CU_BIG_T rows take q4_gemm.cu's kernel up to this many rows */
#define CU_Q4GEMM_NOCOPY_MAX 192  /* when the matrix has a bf16 copy (cuBLAS on it above), else up to this many.
                                   * H100, 6c4fc45, 7B steps: copies 1.18x at 32 rows, 0.90x at 64; none 1.47x at 128,
                                   * 1.00x at 256 */

typedef struct cu_mat {
    int64_t rows, cols;
    int is_q4;
    tl_cu_q4 q;        /* is_q4 */
    uint16_t *bf16;    /* !is_q4: [rows, cols] */
    float *bias;       /* [rows] or NULL */
} cu_mat;

typedef struct cu_layer {
    float *attn_norm, *ffn_norm; /* [n_embd] */
    cu_mat qkv;                  /* [(n_head + 2 n_head_kv) head_dim, n_embd] */
    cu_mat o;                    /* [n_embd, n_head head_dim] */
    cu_mat gu;                   /* [2 n_ff, n_embd]: gate rows then up rows */
    cu_mat down;                 /* [n_embd, n_ff] */
} cu_layer;

typedef struct cu_impl {
    float util;
    cudaStream_t st;
    cublasHandle_t blas;
    int n_sm;
    char dev_name[256];
    const tl_model *m;     /* prepared model */
    cu_layer *layers;
    cu_mat embd, lm_head;
    float *out_norm;
    size_t weight_bytes;
    void *allocs[CU_MAX_ALLOCS];
    int n_allocs;
    /* activations for max_tok tokens */
    int max_tok;
    void *act;             /* one block, carved below */
    float *x, *xn, *qkv, *att, *tmp, *gu, *hb, *lx, *logits, *partial;
    uint16_t *xbf, *deq;
    int *att_cnt;          /* [64 * n_head_kv] zeroed counters: attention slices merged in one kernel */
    int max_split;
    void *gemv_ws;         /* tl_cu_q4t_ws_bytes(widest input) */
    int no_tiled;          /* TL_CUDA_GEMV=fp32: keep the MLX layout and the CUDA-core GEMV (comparisons) */
    /* read at every forward (so one process can compare them): TL_CUDA_GEMV=mma: the three-launch
     * q4_mma.cu GEMV instead of q4_gemv.cu's; TL_CUDA_FUSE=0: the unfused decode sequence;
     * TL_CUDA_PDL=0: no programmatic dependent launches; TL_CUDA_SPLIT_KEYS=N: attention slices of
     * at least N context positions in the fused decode sequence (default CU_DEC_SPLIT_KEYS); TL_CUDA_ATT_MERGE (see merge_last):
     * =last measured slower than a merge kernel (3.62 against 3.43 ms/token, 7B on an H200; H100 271df0b:
     * 2.52-2.56 against 2.36 with the fused kernel) */
    int gemv_old, no_fuse, no_pdl;
    /* forward_decode's GEMV ring depth (TL_CUDA_RING=N, default CU_DECODE_RING; 0: as deep as shared memory
     * allows) and, for measurements only (wrong results), TL_CUDA_DBG_SKIP (bits: 1 q/k/v GEMV, 2 RoPE +
     * attention, 4 o, 8 gate/up, 16 down, 32 final norm + lm_head: what the host and the embedding cost),
     * TL_CUDA_GEMV_PROBE=ring|math (tl_cu_gemv_args.impl) and TL_CUDA_GEMV_DBG (tl_cu_gemv_args.dbg of every
     * GEMV of the layers) */
    int ring, dbg_skip, probe, gemv_dbg;
    /* TL_CUDA_TRACE=1 (measurement): forward_decode hands each kernel of a 1-token step a row of trace_d
     * (TL_CU_TRACE_ROW u64: tl_cu_mark's 4 stamps of up to TL_CU_TRACE_ROW / 4 blocks), zeroed before each step;
     * tl_cuda_trace_read copies them out */
    unsigned long long *trace_d;
    int trace;
    int split_keys;        /* attention slices of the decode sequence: context positions per slice at least */
    int merge_last;        /* TL_CUDA_ATT_MERGE: 1 (=last) slices merged by the last one to finish, 0 (=kernel) by a
                            * merge kernel, 2 (=cluster) through a thread-block cluster (decode kernel, <= 8
                            * slices), -1 (unset): CU_ATT_MERGE_DEFAULT */
    /* TL_CUDA_ATT_FUSE: 1 (unset): forward_decode runs RoPE + KV write + attention (+ merge) as one kernel
     * (tl_cu_attention_decode_rope) when every sequence has one new token; 0: rope kernel, then attention;
     * nopdl (-1): as 0 with the decode attention kernels launched without PDL (as before the fused kernel) */
    int att_fuse;
    /* forward_decode's gate/up writes h = SiLU(gate) * up in fp16 for down_proj (tl_cu_gemv_args.y_silu16,
     * TL_CU_X_F16) instead of gate and up in fp32 for down's SiLU*up prologue; TL_CUDA_GU_PAIR=0: the latter (the
     * same bits, for comparisons) */
    int gu_pair;
    /* TL_CUDA_QKV_ROOM (default 1): with the fused attention, the q/k/v GEMV runs on n_sm - (attention blocks)
     * blocks when those are <= n_sm / 4, so the attention blocks start (RoPE tables, K/V history loads) while
     * it streams (its weights are all in flight at once either way: 7B 288 tiles x 2 stages <= 100 x 6) */
    int qkv_room;
    int dec1;              /* build_meta: every sequence of the batch has at most one new token */
    int fuse_on;           /* this step takes the fused kernel (att_fuse, dec1, decode kernel, no prefill tiles) */
    int q4gemm;            /* TL_CUDA_Q4GEMM: 0 never (dequantize / bf16 copy + cuBLAS), 1 always, -1 (unset) auto */
    int all_tiled;         /* every matrix is tiled INT4 (no cuBLAS in decode steps) */
    int graph_ok;          /* all_tiled and TL_CUDA_GRAPH != 0 */
    int no_graph;
    cudaGraphExec_t gexec; /* the captured decode step, for the shape in gkey */
    intptr_t gkey[CU_GKEY];
    /* batch metadata: host (pinned, one buffer per launch buffer `cur`) and device copies */
    int32_t *meta_h[CU_NBUF], *meta_d;
    size_t meta_cap;
    /* attention plan of the current batch (build_meta): prefill tiles (their device copy follows the block
     * tables in meta_d) and the token runs left to attn.cu's kernel, as (first token, count) pairs */
    int64_t n_bt;
    int n_tiles, n_runs;
    int prefill_rows;  /* query rows per block of the prefill kernel (TL_CUDA_ATTN_ROWS: 64 or 128) */
    int attn_dec;      /* the non-prefill tokens on attn_decode.cu's tensor-core kernel (TL_CUDA_ATTN_DEC) */
    int32_t *runs;  /* host, [2 * n_runs] */
    uint8_t *cov;   /* host scratch: token covered by a tile */
    size_t plan_cap;
    /* GPU sampling (cu_launch): per-row parameters / results, host (pinned, one buffer per launch buffer) and
     * device. The device copies are single: stream order puts a step's uploads after the previous step's sampling
     * and its D2H copy of sout_d, and its embedding (which resolves TL_TOKEN_PREV tokens) before its own sampling */
    tl_cu_samp *samp_h[CU_NBUF], *samp_d;
    tl_cu_samp_out *sout_h[CU_NBUF], *sout_d;
    int samp_cap;
    /* penalties (tl_cu_penalize): the step's entries (int32 pairs), pinned per launch buffer and on the device
     * (single, as samp_d); pen_n[buf] pairs; any_pen: some row of the step being enqueued has penalties */
    int32_t *pen_h[CU_NBUF], *pen_d;
    size_t pen_cap, pen_n[CU_NBUF];
    int any_pen;
    /* rows with penalties and top-n (logprobs of the raw logits, cu_sample.h): the rewritten logits' raw values
     * (pen_cap floats, indexed as pen_d's entries), each row's raw log-sum-exp and last-token logit (samp_cap) */
    float *penraw_d;
    tl_cu_lraw *lraw_d;
    /* top-n logprobs (tl_cu_top, rows with n_top): pinned per launch buffer, device single (sized with samp_cap);
     * top_on[buf]: the step of that buffer has such rows; any_top: the step being enqueued has;
     * last_buf: the buffer of the step collected last (collected_top) */
    tl_cu_top *top_h[CU_NBUF], *top_d;
    int top_on[CU_NBUF], any_top, last_buf;
    /* Launched steps (cu_launch / cu_collect). Host buffers written for an asynchronous copy (meta_h, samp_h) or
     * read back by one (sout_h) come in CU_NBUF: step t + 1's H2D copies may still be queued behind step t's work
     * when step t + 2 is built, so the buffer a launch writes, `cur` (next_buf, alternating), is the one of the
     * step launched two before, which is collected by then (at most CU_NBUF launched and not collected). A
     * launched step is known by its buffer: step_done[buf] is recorded after its last copy, step_n[buf] is its
     * logit rows; the oldest step not collected has buffer next_buf - n_launched (mod CU_NBUF). */
    int cur, next_buf, n_launched;
    cudaEvent_t step_done[CU_NBUF];
    int step_n[CU_NBUF];
    /* the last launched step (collected or not), the one TL_TOKEN_PREV(r) tokens refer to: its buffer (its rows'
     * parameters stay in samp_h[prev_buf] until the launch after next) and logit rows; prev_n -1: none (none yet,
     * or a launch failed after it had enqueued work that may have written sout_d) */
    int prev_buf, prev_n;
    const tl_row_sampling *srs; /* set during cu_launch: each logits chunk is sampled, not copied */
    float *slogits;             /* host logits of the rows sampled on the host */
    void *samp_scratch;         /* tl_cu_sample's row statistics over many blocks (zeroed once) */
    int samp_oneblock;          /* TL_CUDA_SAMPLE_ONEBLOCK=1: one block reads each row (as before; comparisons) */
    int samp_chunked;           /* sampled rows over many blocks (TL_CUDA_SAMPLE_CHUNKS=0: one block a row) */
    int no_samp_graph;          /* TL_CUDA_SAMPLE_GRAPH=0: sampling after the graph, never inside (comparisons) */
    int sampling;               /* forward_body samples its chunks (in a captured graph: when every row is the device's) */
    size_t bf16w_bytes;         /* bf16 copies of the INT4 matrices (make_bf16_copies) */
    int prof_on;                /* TL_CUDA_PROFILE=1: host-side time per phase, printed at free */
    double prof[4];             /* build_meta, enqueue, wait for the GPU, sampling fallbacks (s) */
    int64_t prof_n;
    /* TL_CUDA_PROFILE=1, GPU side: events between the phases of a forward (not inside graphs), summed per
     * phase (P_*) for decode-only steps [0] and steps with prefill tokens [1] */
    cudaEvent_t pev[CU_PROF_EV];
    unsigned char pcat[CU_PROF_EV];
    int n_pev, pmm, capturing;
    double pgpu[2][P_N];
    int64_t pn[2], ptok[2];
} cu_impl;

#define CUCHK(e, call)                                                                                  \
    do {                                                                                                \
        cudaError_t err_ = (call);                                                                      \
        if (err_ != cudaSuccess) return tl_errf(e, "cuda: %s: %s (%s:%d)", #call, cudaGetErrorString(err_), \
                                                __FILE__, __LINE__);                                    \
    } while (0)

static int dev_alloc(cu_impl *ci, void **p, size_t n, const char *what, tl_error *e) {
    if (ci->n_allocs >= CU_MAX_ALLOCS) return tl_errf(e, "cuda: too many allocations");
    if (cudaMalloc(p, n ? n : 1) != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return tl_errf(e, "cuda: out of device memory allocating %s (%.2f GiB; %.2f of %.2f GiB free): the model "
                          "does not fit on this GPU",
                       what, n / 1073741824.0, fr / 1073741824.0, tot / 1073741824.0);
    }
    ci->allocs[ci->n_allocs++] = *p;
    return 0;
}

static size_t q4_bytes(int64_t rows, int64_t cols, int group) {
    return (size_t)rows * cols / 2 + (size_t)rows * (cols / group) * 4;
}

/* Uploads tensors ts[0..n) (same cols) stacked by rows into one device matrix; biases likewise
 * (bs may be NULL or hold tensors with data == NULL: no bias). INT4 stays INT4 when all parts are
 * INT4 with one group size and scale dtype; anything else becomes bf16. */
static int upload_cat(cu_impl *ci, const tl_tensor *const *ts, const tl_tensor *const *bs, int n, cu_mat *out,
                      int tiled_ok, const char *name, tl_error *e) {
    memset(out, 0, sizeof *out);
    int64_t cols = ts[0]->cols, rows = 0;
    int all_q4 = 1;
    for (int i = 0; i < n; i++) {
        if (ts[i]->cols != cols) return tl_errf(e, "cuda: %s: parts have different widths", name);
        if (!ts[i]->data) return tl_errf(e, "cuda: %s: no data", name);
        rows += ts[i]->rows;
        if (ts[i]->type != TL_Q4 || ts[i]->group != ts[0]->group || ts[i]->sb_type != ts[0]->sb_type ||
            (ts[i]->sb_type != TL_F16 && ts[i]->sb_type != TL_BF16) || cols % 32 ||
            (ts[i]->group != 32 && ts[i]->group != 64 && ts[i]->group != 128))
            all_q4 = 0;
    }
    out->rows = rows;
    out->cols = cols;
    if (all_q4 && tiled_ok && cols % 64 == 0 && !ci->no_tiled) { /* tensor-core layout: stack on the host, repack */
        int g = ts[0]->group;
        size_t ng_row = (size_t)(cols / g), wpr = (size_t)cols / 8, nt = (size_t)(rows + 15) / 16;
        uint32_t *hc = tl_malloc((size_t)rows * wpr * 4);
        uint16_t *hs = tl_malloc((size_t)rows * ng_row * 2), *hb = tl_malloc((size_t)rows * ng_row * 2);
        size_t r0 = 0;
        for (int i = 0; i < n; i++) {
            size_t nr = (size_t)ts[i]->rows;
            memcpy(hc + r0 * wpr, ts[i]->data, nr * wpr * 4);
            memcpy(hs + r0 * ng_row, ts[i]->scales, nr * ng_row * 2);
            memcpy(hb + r0 * ng_row, ts[i]->biases, nr * ng_row * 2);
            r0 += nr;
        }
        uint32_t *tc = tl_malloc(nt * 16 * wpr * 4), *tsb = tl_malloc(nt * 16 * ng_row * 4);
        int rr = tl_cu_q4t_repack(hc, hs, hb, rows, cols, g, tc, tsb);
        free(hc), free(hs), free(hb);
        void *codes = NULL, *sb = NULL;
        if (!rr) rr = dev_alloc(ci, &codes, nt * 16 * wpr * 4, name, e);
        if (!rr) rr = dev_alloc(ci, &sb, nt * 16 * ng_row * 4, name, e);
        if (!rr && (cudaMemcpy(codes, tc, nt * 16 * wpr * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
                    cudaMemcpy(sb, tsb, nt * 16 * ng_row * 4, cudaMemcpyHostToDevice) != cudaSuccess))
            rr = tl_errf(e, "cuda: %s: upload failed", name);
        free(tc), free(tsb);
        if (rr) return -1;
        out->is_q4 = 1;
        out->q = (tl_cu_q4){.rows = rows, .cols = cols, .group = g, .sb_bf16 = ts[0]->sb_type == TL_BF16, .tiled = 1,
                            .codes = codes, .sb = sb};
        ci->weight_bytes += q4_bytes(rows, cols, g);
    } else if (all_q4) {
        int g = ts[0]->group;
        size_t ng_row = (size_t)(cols / g);
        out->is_q4 = 1;
        out->q = (tl_cu_q4){.rows = rows, .cols = cols, .group = g, .sb_bf16 = ts[0]->sb_type == TL_BF16};
        void *codes, *sb;
        if (dev_alloc(ci, &codes, (size_t)rows * cols / 2, name, e) ||
            dev_alloc(ci, &sb, (size_t)rows * ng_row * 4, name, e))
            return -1;
        size_t r0 = 0;
        for (int i = 0; i < n; i++) {
            size_t nr = (size_t)ts[i]->rows;
            CUCHK(e, cudaMemcpy((char *)codes + r0 * cols / 2, ts[i]->data, nr * cols / 2, cudaMemcpyHostToDevice));
            uint32_t *tmp = tl_malloc(nr * ng_row * 4);
            tl_cu_q4_pack_sb(ts[i]->scales, ts[i]->biases, nr * ng_row, tmp);
            cudaError_t err = cudaMemcpy((uint32_t *)sb + r0 * ng_row, tmp, nr * ng_row * 4, cudaMemcpyHostToDevice);
            free(tmp);
            CUCHK(e, err);
            r0 += nr;
        }
        out->q.codes = codes;
        out->q.sb = sb;
        ci->weight_bytes += q4_bytes(rows, cols, g);
    } else {
        void *d;
        if (dev_alloc(ci, &d, (size_t)rows * cols * 2, name, e)) return -1;
        size_t r0 = 0;
        float *row = tl_malloc((size_t)cols * 4);
        uint16_t *buf = tl_malloc((size_t)cols * 2 * 256);
        for (int i = 0; i < n; i++) {
            if (ts[i]->type == TL_BF16) {
                CUCHK(e, cudaMemcpy((uint16_t *)d + r0 * cols, ts[i]->data, (size_t)ts[i]->rows * cols * 2,
                                    cudaMemcpyHostToDevice));
            } else {
                for (int64_t r = 0; r < ts[i]->rows; r += 256) {
                    int64_t nr = TL_MIN(256, ts[i]->rows - r);
                    for (int64_t k = 0; k < nr; k++) {
                        tl_tensor_row_f32(ts[i], r + k, row);
                        for (int64_t c = 0; c < cols; c++) buf[k * cols + c] = tl_f32_to_bf16(row[c]);
                    }
                    CUCHK(e, cudaMemcpy((uint16_t *)d + (r0 + r) * cols, buf, (size_t)nr * cols * 2,
                                        cudaMemcpyHostToDevice));
                }
            }
            r0 += (size_t)ts[i]->rows;
        }
        free(row);
        free(buf);
        out->bf16 = d;
        ci->weight_bytes += (size_t)rows * cols * 2;
    }
    int has_bias = 0;
    for (int i = 0; bs && i < n; i++) has_bias |= bs[i] && bs[i]->data;
    if (has_bias) {
        float *hb = tl_calloc((size_t)rows, 4);
        size_t r0 = 0;
        for (int i = 0; i < n; i++) {
            if (bs[i] && bs[i]->data) {
                if (bs[i]->type != TL_F32 || bs[i]->cols * bs[i]->rows != ts[i]->rows) {
                    free(hb);
                    return tl_errf(e, "cuda: %s: bias must be f32 [%lld]", name, (long long)ts[i]->rows);
                }
                memcpy(hb + r0, bs[i]->data, (size_t)ts[i]->rows * 4);
            }
            r0 += (size_t)ts[i]->rows;
        }
        void *d;
        int r = dev_alloc(ci, &d, (size_t)rows * 4, name, e);
        if (!r && cudaMemcpy(d, hb, (size_t)rows * 4, cudaMemcpyHostToDevice) != cudaSuccess)
            r = tl_errf(e, "cuda: %s: bias upload failed", name);
        free(hb);
        if (r) return -1;
        out->bias = d;
        ci->weight_bytes += (size_t)rows * 4;
    }
    return 0;
}

static int upload_vec(cu_impl *ci, const tl_tensor *t, int64_t n, float **out, const char *name, tl_error *e) {
    if (!t->data || t->type != TL_F32 || t->rows * t->cols != n) return tl_errf(e, "cuda: %s must be f32 [%lld]", name, (long long)n);
    if (dev_alloc(ci, (void **)out, (size_t)n * 4, name, e)) return -1;
    CUCHK(e, cudaMemcpy(*out, t->data, (size_t)n * 4, cudaMemcpyHostToDevice));
    ci->weight_bytes += (size_t)n * 4;
    return 0;
}

static void release_model(cu_impl *ci) {
    cudaStreamSynchronize(ci->st); /* launched steps may still read the weights and activations */
    for (int i = 0; i < ci->n_allocs; i++) cudaFree(ci->allocs[i]);
    ci->n_allocs = 0;
    free(ci->layers);
    ci->layers = NULL;
    ci->m = NULL;
    ci->weight_bytes = 0;
    ci->bf16w_bytes = 0;
    if (ci->act) cudaFree(ci->act);
    ci->act = NULL;
    ci->max_tok = 0;
}

/* Activation arena for n_tok tokens: x, xn, tmp [T, n_embd]; qkv [T, qkv rows]; att [T, n_head hd];
 * gu [T, 2 n_ff]; hb [T, n_ff]; xbf bf16 [T, max(n_embd, n_ff, n_head hd)]; lx [LCH, n_embd];
 * logits [LCH, n_vocab]; attention partials; dequantize scratch. */
static int ensure_act(cu_impl *ci, const tl_config *c, int n_tok, tl_error *e) {
    if (n_tok <= ci->max_tok) return 0;
    if (ci->act) cudaStreamSynchronize(ci->st), cudaFree(ci->act); /* a launched step may still use it */
    ci->act = NULL;
    int T = TL_MAX(n_tok, ci->max_tok ? 2 * ci->max_tok : 0);
    T = TL_MAX(T, 16);
    const size_t E = c->n_embd, QD = (size_t)c->n_head * c->head_dim, RW = QD + 2 * (size_t)c->n_head_kv * c->head_dim;
    const size_t F = c->n_ff, W = TL_MAX(TL_MAX(E, F), QD);
    ci->max_split = 16;
    size_t part_tok = TL_MIN((size_t)T, 64); /* splits only happen with few tokens */
    size_t floats = (size_t)T * (3 * E + RW + QD + 3 * F) + CU_LOGIT_CHUNK * (E + (size_t)c->n_vocab) +
                    part_tok * c->n_head * ci->max_split * (c->head_dim + 2);
    size_t ws = tl_cu_q4t_ws_bytes((int64_t)W);
    size_t bytes = floats * 4 + (size_t)T * W * 2 + (size_t)CU_DEQ_ELEMS * 2 + ws + part_tok * c->n_head_kv * 4 +
                   16 * 256; /* + the 256-byte alignment of each carve */
    void *p;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        ci->max_tok = 0;
        return tl_errf(e, "cuda: out of device memory for activations of %d tokens (%.2f GiB)", T, bytes / 1073741824.0);
    }
    ci->act = p;
    char *q = p;
#define CARVE(ptr, n, type)                                \
    do {                                                   \
        ptr = (type *)q;                                   \
        q += (((size_t)(n) * sizeof(type)) + 255) & ~255ul; \
    } while (0)
    CARVE(ci->x, (size_t)T * E, float);
    CARVE(ci->xn, (size_t)T * E, float);
    CARVE(ci->tmp, (size_t)T * E, float);
    CARVE(ci->qkv, (size_t)T * RW, float);
    CARVE(ci->att, (size_t)T * QD, float);
    CARVE(ci->gu, (size_t)T * 2 * F, float);
    CARVE(ci->hb, (size_t)T * F, float);
    CARVE(ci->lx, (size_t)CU_LOGIT_CHUNK * E, float);
    CARVE(ci->logits, (size_t)CU_LOGIT_CHUNK * c->n_vocab, float);
    CARVE(ci->partial, part_tok * c->n_head * ci->max_split * (c->head_dim + 2), float);
    CARVE(ci->xbf, (size_t)T * W, uint16_t);
    CARVE(ci->deq, (size_t)CU_DEQ_ELEMS, uint16_t);
    CARVE(ci->gemv_ws, ws, char);
    CARVE(ci->att_cnt, part_tok * c->n_head_kv, int);
#undef CARVE
    if (cudaMemset(ci->att_cnt, 0, part_tok * c->n_head_kv * 4) != cudaSuccess) {
        cudaGetLastError();
        return tl_errf(e, "cuda: cannot clear the attention counters");
    }
    TL_ASSERT((size_t)(q - (char *)p) <= bytes);
    ci->max_tok = T;
    return 0;
}

/* bf16 copies of the INT4 matrices (layers and lm_head), used by matmul for products of > 16 rows instead of
 * dequantizing every matrix on every call: cuBLAS then streams 2 bytes/weight once per product, where the
 * dequantize path moved ~4.5 (read INT4, write bf16, read bf16) plus a launch per 128 MiB chunk. The <= 16-row
 * GEMV keeps reading INT4. Costs 2 bytes/weight of device memory (7B: ~14 GiB), so by default only when the
 * copies take <= 30% of the card and fit in free memory; TL_CUDA_BF16W=0 never, =1 always (comparisons). */
static int make_bf16_copies(cu_impl *ci, const tl_config *c, tl_error *e) {
    const char *env = getenv("TL_CUDA_BF16W");
    if (env && !strcmp(env, "0")) return 0;
    cu_mat *ms[4 * 1024 + 1];
    int n = 0;
    size_t need = 0;
    for (int l = 0; l < c->n_layer && n + 4 < (int)(sizeof ms / sizeof *ms); l++) {
        cu_layer *L = &ci->layers[l];
        ms[n++] = &L->qkv, ms[n++] = &L->o, ms[n++] = &L->gu, ms[n++] = &L->down;
    }
    ms[n++] = &ci->lm_head;
    for (int i = 0; i < n; i++)
        if (ms[i]->is_q4) need += (size_t)ms[i]->rows * ms[i]->cols * 2;
    size_t fr = 0, tot = 0;
    CUCHK(e, cudaMemGetInfo(&fr, &tot));
    if (!need || (!(env && !strcmp(env, "1")) && (need > tot / 10 * 3 || need + ((size_t)2 << 30) > fr))) return 0;
    for (int i = 0; i < n; i++) {
        cu_mat *W = ms[i];
        if (!W->is_q4 || W->bf16) continue;
        void *d;
        if (dev_alloc(ci, &d, (size_t)W->rows * W->cols * 2, "bf16 weight copy", e) ||
            (W->q.tiled ? tl_cu_q4t_dequant_bf16 : tl_cu_q4_dequant_bf16)(&W->q, 0, W->rows, d, ci->st, e))
            return -1;
        W->bf16 = d;
        ci->bf16w_bytes += (size_t)W->rows * W->cols * 2;
    }
    CUCHK(e, cudaStreamSynchronize(ci->st));
    tl_info("cuda: bf16 copies of the INT4 matrices for > 16-row products: %.2f GiB (TL_CUDA_BF16W=0: off)",
            ci->bf16w_bytes / 1073741824.0);
    return 0;
}

static int cu_prepare(tl_backend *be, tl_model *m, tl_error *e) {
    cu_impl *ci = be->impl;
    if (ci->m == m) return 0;
    release_model(ci);
    const tl_config *c = &m->cfg;
    if (c->head_dim != 16 && c->head_dim != 32 && c->head_dim != 64 && c->head_dim != 128)
        return tl_errf(e, "cuda: head_dim %d not supported (16, 32, 64, 128)", c->head_dim);
    if (c->n_head_kv <= 0 || c->n_head % c->n_head_kv || c->n_head / c->n_head_kv > 8)
        return tl_errf(e, "cuda: %d query heads per kv head not supported (at most 8)",
                       c->n_head_kv > 0 ? c->n_head / c->n_head_kv : 0);
    size_t fr = 0, tot = 0;
    CUCHK(e, cudaMemGetInfo(&fr, &tot));
    size_t need = tl_model_weight_bytes(m);
    double t0 = tl_now();
    ci->layers = tl_calloc((size_t)c->n_layer, sizeof(cu_layer));
    for (int l = 0; l < c->n_layer; l++) {
        const tl_layer *L = &m->w.layers[l];
        cu_layer *D = &ci->layers[l];
        const tl_tensor *qkv[3] = {&L->wq, &L->wk, &L->wv}, *qkvb[3] = {&L->bq, &L->bk, &L->bv};
        const tl_tensor *gu[2] = {&L->w_gate, &L->w_up};
        const tl_tensor *o[1] = {&L->wo}, *down[1] = {&L->w_down};
        if (upload_vec(ci, &L->attn_norm, c->n_embd, &D->attn_norm, "attn_norm", e) ||
            upload_vec(ci, &L->ffn_norm, c->n_embd, &D->ffn_norm, "ffn_norm", e) ||
            upload_cat(ci, qkv, qkvb, 3, &D->qkv, 1, "wq/wk/wv", e) || upload_cat(ci, o, NULL, 1, &D->o, 1, "wo", e) ||
            upload_cat(ci, gu, NULL, 2, &D->gu, 1, "w_gate/w_up", e) ||
            upload_cat(ci, down, NULL, 1, &D->down, 1, "w_down", e)) {
            tl_error e2;
            snprintf(e2.msg, sizeof e2.msg, "%s", e ? e->msg : "");
            release_model(ci);
            return tl_errf(e, "%s (layer %d; weights need about %.2f GiB, %.2f GiB were free)", e2.msg, l,
                           need / 1073741824.0, fr / 1073741824.0);
        }
    }
    const tl_tensor *emb[1] = {&m->w.tok_embd}, *lm[1] = {&m->w.lm_head};
    /* the embedding keeps the row layout (lookups); lm_head gets the tiled one (a second copy when tied) */
    int tied = c->tied_embd || m->w.lm_head.data == m->w.tok_embd.data;
    int lm_tiled = m->w.lm_head.type == TL_Q4 && c->n_embd % 64 == 0 && !ci->no_tiled;
    if (upload_cat(ci, emb, NULL, 1, &ci->embd, 0, "tok_embd", e) ||
        ((!tied || lm_tiled) && upload_cat(ci, lm, NULL, 1, &ci->lm_head, 1, "lm_head", e)) ||
        upload_vec(ci, &m->w.out_norm, c->n_embd, &ci->out_norm, "out_norm", e)) {
        release_model(ci);
        return -1;
    }
    if (tied && !lm_tiled) ci->lm_head = ci->embd;
    if (ensure_act(ci, c, CU_MAX_TOK_DEFAULT, e) || make_bf16_copies(ci, c, e)) {
        release_model(ci);
        return -1;
    }
    ci->m = m;
    ci->all_tiled = ci->lm_head.is_q4 && ci->lm_head.q.tiled;
    for (int l = 0; l < c->n_layer; l++) {
        const cu_layer *L = &ci->layers[l];
        ci->all_tiled &= L->qkv.q.tiled && L->o.q.tiled && L->gu.q.tiled && L->down.q.tiled && L->qkv.is_q4 &&
                         L->o.is_q4 && L->gu.is_q4 && L->down.is_q4;
    }
    ci->graph_ok = ci->all_tiled && !ci->no_graph;
    CUCHK(e, cudaMemGetInfo(&fr, &tot));
    tl_info("cuda: %s: weights %.2f GiB on the device (%s%s) in %.1f s; %.2f of %.2f GiB free", ci->dev_name,
            ci->weight_bytes / 1073741824.0, ci->layers[0].qkv.is_q4 ? "int4" : "bf16",
            ci->graph_ok ? ", decode as CUDA graph" : "", tl_now() - t0,
            fr / 1073741824.0, tot / 1073741824.0);
    return 0;
}

/* KV budget: util * total memory, minus what is already in use (weights, activations, others). */
static size_t cu_kv_default_budget(tl_backend *be, const tl_model *m) {
    cu_impl *ci = be->impl;
    size_t fr = 0, tot = 0;
    if (ci->m != m) { /* weights first, so the budget leaves room for them */
        tl_error e = {{0}};
        if (cu_prepare(be, (tl_model *)m, &e)) {
            tl_warn("cuda: %s", e.msg);
            return 0;
        }
    }
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) return 0;
    double want = (double)tot * ci->util - (double)(tot - fr);
    size_t b = want > 0 ? (size_t)want : 0;
    tl_info("cuda: KV budget %.2f GiB (--gpu-mem-util %.2f of %.2f GiB, %.2f GiB in use)", b / 1073741824.0,
            ci->util, tot / 1073741824.0, (tot - fr) / 1073741824.0);
    return b;
}

static int cu_kv_alloc(tl_backend *be, tl_kv *kv, const tl_config *c, int block_size, int n_blocks, tl_dtype dt,
                       tl_error *e) {
    memset(kv, 0, sizeof *kv);
    if (dt != TL_F32 && dt != TL_F16 && dt != TL_BF16) return tl_errf(e, "kv cache dtype must be f32, f16 or bf16");
    if (block_size <= 0 || n_blocks <= 0) return tl_errf(e, "kv cache: need block_size > 0 and n_blocks > 0");
    size_t half = tl_kv_block_bytes(c, block_size, dt) / 2 * (size_t)n_blocks;
    void *k = NULL, *v = NULL;
    if (cudaMalloc(&k, half) != cudaSuccess || cudaMalloc(&v, half) != cudaSuccess) {
        cudaGetLastError();
        if (k) cudaFree(k);
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        return tl_errf(e, "cuda: KV pool of %.2f GiB (%d blocks) does not fit: %.2f GiB free", 2.0 * half / 1073741824.0,
                       n_blocks, fr / 1073741824.0);
    }
    kv->n_layer = c->n_layer;
    kv->n_head_kv = c->n_head_kv;
    kv->head_dim = c->head_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    kv->dtype = dt;
    kv->k = k;
    kv->v = v;
    kv->bytes = 2 * half;
    tl_info("cuda: KV pool %.2f GiB: %d blocks of %d tokens (%s)", kv->bytes / 1073741824.0, n_blocks, block_size,
            tl_dtype_name(dt));
    return 0;
}

static void cu_kv_free(tl_backend *be, tl_kv *kv) {
    if (kv->k) cudaFree(kv->k);
    if (kv->v) cudaFree(kv->v);
    kv->k = kv->v = NULL;
}

/* Profiling mark: the GPU work since the previous mark belongs to phase `cat`. Returns 0 (chains with ||). */
static int pmark(cu_impl *ci, int cat) {
    if (!ci->prof_on || ci->capturing || ci->n_pev >= CU_PROF_EV) return 0;
    if (!ci->pev[ci->n_pev] && cudaEventCreate(&ci->pev[ci->n_pev]) != cudaSuccess) return 0;
    cudaEventRecord(ci->pev[ci->n_pev], ci->st);
    ci->pcat[ci->n_pev++] = (unsigned char)cat;
    return 0;
}

static int matmul_run(cu_impl *ci, const cu_mat *W, const float *x, float *y, int n, tl_error *e);
/* y[n, W.rows] = x[n, W.cols] @ W^T (+ bias) */
static int matmul(cu_impl *ci, const cu_mat *W, const float *x, float *y, int n, tl_error *e) {
    pmark(ci, P_OTHER);
    int r = matmul_run(ci, W, x, y, n, e);
    pmark(ci, ci->pmm);
    return r;
}

static int matmul_run(cu_impl *ci, const cu_mat *W, const float *x, float *y, int n, tl_error *e) {
    if (n <= 0) return 0;
    if (W->is_q4 && n <= 16) {
        if (W->q.tiled && !ci->gemv_old && tl_cu_q4g_fits(W->cols, n)) {
            tl_cu_gemv_args ga = {.w = &W->q, .x = x, .x_stride = (int)W->cols, .bias = W->bias, .y = y, .n_tok = n};
            return tl_cu_q4g_gemv(&ga, ci->st, e);
        }
        return W->q.tiled ? tl_cu_q4t_gemv(&W->q, x, W->bias, y, n, ci->gemv_ws, ci->st, e)
                          : tl_cu_q4_gemv(&W->q, x, W->bias, y, n, ci->st, e);
    }
    if (W->is_q4 && W->q.tiled && n <= CU_BIG_T && ci->q4gemm &&
        (ci->q4gemm == 1 || n <= (W->bf16 ? CU_Q4GEMM_COPY_MAX : CU_Q4GEMM_NOCOPY_MAX))) { /* q4_gemm.cu */
        tl_cu_gemm_args ga = {.w = &W->q, .x = x, .bias = W->bias, .y = y, .n = n, .xh = ci->xbf,
                              .part = (float *)ci->deq, .part_floats = (size_t)CU_DEQ_ELEMS / 2};
        return tl_cu_q4t_gemm(&ga, ci->st, e);
    }
    if (tl_cu_f32_to_bf16(x, ci->xbf, (size_t)n * W->cols, ci->st, e)) return -1;
    const float one = 1.f, zero = 0.f;
    const int deq = W->is_q4 && !W->bf16; /* INT4 without a bf16 copy: dequantize chunks every call */
    int64_t chunk = deq ? TL_MAX(16, (int64_t)CU_DEQ_ELEMS / W->cols / 16 * 16) : W->rows;
    for (int64_t r0 = 0; r0 < W->rows; r0 += chunk) {
        int64_t nr = TL_MIN(chunk, W->rows - r0);
        const uint16_t *A = W->bf16 + r0 * W->cols;
        if (deq) {
            if ((W->q.tiled ? tl_cu_q4t_dequant_bf16 : tl_cu_q4_dequant_bf16)(&W->q, r0, nr, ci->deq, ci->st, e))
                return -1;
            A = ci->deq;
        }
        cublasStatus_t s = cublasGemmEx(ci->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, (int)W->cols, &one, A,
                                        CUDA_R_16BF, (int)W->cols, ci->xbf, CUDA_R_16BF, (int)W->cols, &zero, y + r0,
                                        CUDA_R_32F, (int)W->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) return tl_errf(e, "cuda: cublasGemmEx failed (status %d)", (int)s);
    }
    if (W->bias) return tl_cu_add_bias(y, W->bias, n, (int)W->rows, ci->st, e);
    return 0;
}

/* Prefill-sized product (forwards of > CU_BIG_T tokens): x already bf16 [n, W.cols] (its producer wrote it
 * so), INT4 read from its resident bf16 copy when there is one, else dequantized in row chunks by the
 * line-store kernel, cuBLAS bf16 in, fp32 out (or bf16 when
 * y_bf16: the gate/up output, read only by silu_mul_bf16; no bias then). */
static int matmul_big_run(cu_impl *ci, const cu_mat *W, const uint16_t *xb, void *y, int y_bf16, int n, tl_error *e);
static int matmul_big(cu_impl *ci, const cu_mat *W, const uint16_t *xb, void *y, int y_bf16, int n, tl_error *e) {
    pmark(ci, P_OTHER);
    int r = matmul_big_run(ci, W, xb, y, y_bf16, n, e);
    pmark(ci, P_MATMUL);
    return r;
}

static int matmul_big_run(cu_impl *ci, const cu_mat *W, const uint16_t *xb, void *y, int y_bf16, int n, tl_error *e) {
    if (y_bf16 && W->bias) return tl_errf(e, "cuda: bf16 matmul output with a bias");
    const float one = 1.f, zero = 0.f;
    const int deq = W->is_q4 && !W->bf16; /* INT4 without a resident bf16 copy (make_bf16_copies) */
    int64_t chunk = deq ? TL_MAX(16, (int64_t)CU_DEQ_ELEMS / W->cols / 16 * 16) : W->rows;
    for (int64_t r0 = 0; r0 < W->rows; r0 += chunk) {
        int64_t nr = TL_MIN(chunk, W->rows - r0);
        const uint16_t *A = W->bf16 + r0 * W->cols;
        if (deq) {
            if ((W->q.tiled ? tl_cu_q4t_dequant_bf16_lines : tl_cu_q4_dequant_bf16)(&W->q, r0, nr, ci->deq, ci->st, e))
                return -1;
            A = ci->deq;
        }
        cublasStatus_t s = cublasGemmEx(ci->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, (int)W->cols, &one, A,
                                        CUDA_R_16BF, (int)W->cols, xb, CUDA_R_16BF, (int)W->cols, &zero,
                                        (char *)y + r0 * (y_bf16 ? 2 : 4), y_bf16 ? CUDA_R_16BF : CUDA_R_32F,
                                        (int)W->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) return tl_errf(e, "cuda: cublasGemmEx failed (status %d)", (int)s);
    }
    if (W->bias) return tl_cu_add_bias(y, W->bias, n, (int)W->rows, ci->st, e);
    return 0;
}

/* A batch token TL_TOKEN_PREV(r): the previous launched step must have a logit row r that the device sampled
 * (its token is then in sout_d[r] whatever the draw); rows it left to the host have no token there. */
static int check_prev_row(const cu_impl *ci, int r, int n_vocab, tl_error *e) {
    if (ci->prev_n < 0) return tl_errf(e, "batch: token TL_TOKEN_PREV(%d) but no step was launched before", r);
    if (r >= ci->prev_n)
        return tl_errf(e, "batch: token TL_TOKEN_PREV(%d) out of range: the previous launched step has %d logit rows",
                       r, ci->prev_n);
    const tl_cu_samp *p = &ci->samp_h[ci->prev_buf][r];
    if (p->skip || tl_cu_sample_may_defer(p, n_vocab))
        return tl_errf(e, "batch: token TL_TOKEN_PREV(%d): that row of the previous launched step is %s", r,
                       p->skip ? "sampled on the host" : "not always sampled on the device");
    return 0;
}

/* Checks the batch and lays out its metadata (host, pinned: meta_h[cur]): tokens, pos, slot, ctx, bt_off [T]
 * each, logit_rows [n_logits], then the block tables. TL_TOKEN_PREV tokens are checked and kept as they are (the
 * embedding kernel resolves them on the device). Returns the number of int32 written, or -1. */
static int64_t build_meta(cu_impl *ci, const tl_config *c, const tl_kv *kv, const tl_batch *b, int *max_ctx,
                          tl_error *e) {
    const int T = b->n_tok, bs = kv->block_size;
    int64_t n_bt = 0;
    ci->dec1 = 1;
    for (int s = 0; s < b->n_seq; s++) {
        const tl_batch_seq *q = &b->seqs[s];
        if (q->tok_start < 0 || q->n_new < 0 || q->n_past < 0 || q->tok_start + q->n_new > T)
            return tl_errf(e, "batch: sequence %d out of range", s);
        ci->dec1 &= q->n_new <= 1;
        n_bt += TL_CDIV(q->n_past + q->n_new, bs);
    }
    /* sequences adding more than a graph step's tokens go to the tensor-core prefill kernel (so graphs,
     * T <= 16, never contain it); TL_CUDA_ATTN=old keeps every row on attn.cu's kernel (comparisons) */
    const char *ea = getenv("TL_CUDA_ATTN");
    const int fa = !(ea && !strcmp(ea, "old")) &&
                   tl_cu_attention_prefill_ok(c->head_dim, kv->dtype, c->n_head, c->n_head_kv);
    const char *er = getenv("TL_CUDA_ATTN_ROWS");
    ci->prefill_rows = tl_cu_prefill_rows(er ? atoi(er) : CU_PREFILL_ROWS);
    /* the other tokens: attn_decode.cu's tensor-core kernel where it applies (TL_CUDA_ATTN_DEC=tc: on, =old:
     * attn.cu; unset: CU_ATTN_DEC_DEFAULT); same split count either way (the graph key adds which kernel) */
    const char *ed = getenv("TL_CUDA_ATTN_DEC");
    const int dec_on = ed ? strcmp(ed, "old") != 0 : CU_ATTN_DEC_DEFAULT;
    ci->attn_dec = dec_on && !(ea && !strcmp(ea, "old")) &&
                   tl_cu_attention_decode_ok(c->head_dim, kv->dtype, c->n_head, c->n_head_kv);
    const int tt = fa ? tl_cu_prefill_tile_tokens(c->n_head, c->n_head_kv, ci->prefill_rows) : 1;
    int64_t n_tiles = 0;
    for (int s = 0; fa && s < b->n_seq; s++)
        if (b->seqs[s].n_new > CU_PREFILL_MIN_NEW) n_tiles += TL_CDIV(b->seqs[s].n_new, tt);
    if ((size_t)T + 1 > ci->plan_cap) {
        free(ci->runs), free(ci->cov);
        ci->plan_cap = (size_t)T * 2 + 64;
        ci->runs = tl_malloc(ci->plan_cap * 2 * sizeof(int32_t));
        ci->cov = tl_malloc(ci->plan_cap);
    }
    size_t need = (size_t)5 * T + (size_t)b->n_logits + (size_t)n_bt + 2 * (size_t)n_tiles;
    if (need > ci->meta_cap) {
        cudaStreamSynchronize(ci->st); /* launched steps' copies may still read meta_h, their kernels meta_d */
        for (int k = 0; k < CU_NBUF; k++)
            if (ci->meta_h[k]) cudaFreeHost(ci->meta_h[k]), ci->meta_h[k] = NULL;
        if (ci->meta_d) cudaFree(ci->meta_d);
        ci->meta_d = NULL, ci->meta_cap = 0;
        size_t cap = need * 2 + 4096;
        int ok = cudaMalloc((void **)&ci->meta_d, cap * 4) == cudaSuccess;
        for (int k = 0; k < CU_NBUF && ok; k++) ok = cudaMallocHost((void **)&ci->meta_h[k], cap * 4) == cudaSuccess;
        if (!ok) {
            cudaGetLastError();
            return tl_errf(e, "cuda: cannot allocate batch metadata");
        }
        ci->meta_cap = cap;
    }
    int32_t *tok = ci->meta_h[ci->cur], *pos = tok + T, *slot = pos + T, *ctx = slot + T, *off = ctx + T,
            *lr = off + T, *bt = lr + b->n_logits;
    for (int t = 0; t < T; t++) {
        if (b->tokens[t] < -1) { /* TL_TOKEN_PREV(r) */
            if (check_prev_row(ci, TL_TOKEN_PREV_ROW(b->tokens[t]), c->n_vocab, e)) return -1;
        } else if (b->tokens[t] < 0 || b->tokens[t] >= c->n_vocab) {
            return tl_errf(e, "token id %d out of range [0, %d)", b->tokens[t], c->n_vocab);
        }
        tok[t] = b->tokens[t];
        pos[t] = b->pos[t];
        ctx[t] = -1;
    }
    int64_t used = 0;
    *max_ctx = 0;
    for (int s = 0; s < b->n_seq; s++) {
        const tl_batch_seq *q = &b->seqs[s];
        int nb = TL_CDIV(q->n_past + q->n_new, bs);
        for (int i = 0; i < nb; i++) {
            if (q->block_table[i] < 0 || q->block_table[i] >= kv->n_blocks)
                return tl_errf(e, "batch: sequence %d: block %d out of the pool (%d blocks)", s, q->block_table[i],
                               kv->n_blocks);
            bt[used + i] = q->block_table[i];
        }
        for (int j = 0; j < q->n_new; j++) {
            int t = q->tok_start + j, p = q->n_past + j;
            slot[t] = q->block_table[p / bs] * bs + p % bs;
            ctx[t] = p + 1;
            off[t] = (int32_t)used;
        }
        *max_ctx = TL_MAX(*max_ctx, q->n_past + q->n_new);
        used += nb;
    }
    for (int t = 0; t < T; t++)
        if (ctx[t] < 0) return tl_errf(e, "batch: token %d belongs to no sequence", t);
    /* attention plan: tiles of tt tokens for the prefill sequences, runs of the other tokens */
    int32_t *tiles = bt + n_bt;
    for (int t = 0; t < T; t++) ci->cov[t] = 0; /* loops, not memset: gcc 13 -Werror=stringop-overflow */
    ci->n_bt = n_bt;
    ci->n_tiles = 0;
    for (int s = 0; n_tiles && s < b->n_seq; s++) {
        const tl_batch_seq *q = &b->seqs[s];
        if (q->n_new <= CU_PREFILL_MIN_NEW) continue;
        for (int j = 0; j < q->n_new; j += tt) {
            tiles[2 * ci->n_tiles] = q->tok_start + j;
            tiles[2 * ci->n_tiles + 1] = TL_MIN(tt, q->n_new - j);
            ci->n_tiles++;
        }
        for (int j = 0; j < q->n_new; j++) ci->cov[q->tok_start + j] = 1;
    }
    ci->n_runs = 0;
    for (int t = 0; t < T;) {
        if (ci->cov[t]) {
            t++;
            continue;
        }
        int t1 = t;
        while (t1 < T && !ci->cov[t1]) t1++;
        ci->runs[2 * ci->n_runs] = t, ci->runs[2 * ci->n_runs + 1] = t1 - t;
        ci->n_runs++;
        t = t1;
    }
    for (int i = 0; i < b->n_logits; i++) {
        if (b->logit_rows[i] < 0 || b->logit_rows[i] >= T) return tl_errf(e, "batch: logit row %d out of range", b->logit_rows[i]);
        lr[i] = b->logit_rows[i];
    }
    return (int64_t)need;
}

/* Attention of one layer by the plan of build_meta: the prefill tiles on tensor cores, the other tokens
 * (decodes, short chunks) in runs of consecutive tokens on attn_decode.cu's tensor-core kernel, or attn.cu's
 * (ci->attn_dec off or unsupported shape; pointers offset per run). */
static int attention(cu_impl *ci, const tl_cu_attn_args *a, const int32_t *d_tiles, tl_error *e) {
    if (ci->n_tiles && tl_cu_attention_prefill(a, d_tiles, ci->n_tiles, ci->prefill_rows, ci->st, e)) return -1;
    for (int i = 0; i < ci->n_runs; i++) {
        const int t0 = ci->runs[2 * i];
        tl_cu_attn_args r = *a;
        r.q += (size_t)t0 * a->q_stride;
        r.out += (size_t)t0 * a->n_head * a->head_dim;
        r.n_tok = ci->runs[2 * i + 1];
        r.ctx_len += t0;
        r.bt_off += t0;
        if (ci->attn_dec ? tl_cu_attention_decode(&r, ci->st, e) : tl_cu_attention(&r, ci->st, e)) return -1;
    }
    return 0;
}

/* GPU sampling of logit rows [i0, i0 + n) (ci->logits holds them): results stay in sout_d; rows the caller
 * samples itself (rs.host), and rows the kernel deferred (token -1: checked only when a row's parameters
 * allow it, at the cost of one synchronization, here inside cu_launch), get their logits copied to the host.
 * Host buffers: this step's (cur). */
static int sample_chunk(cu_impl *ci, int nv, int i0, int n, const int32_t *d_lr, tl_error *e) {
    const tl_cu_samp *sh = ci->samp_h[ci->cur];
    tl_cu_samp_out *oh = ci->sout_h[ci->cur];
    /* rows with penalties and top-n: their logprobs of the raw logits (cu_sample.h), so the top-n before the
     * penalties rewrite the row, the drawn token's raw logprob after the draw */
    const int raw = ci->any_pen && ci->any_top;
    if (raw && tl_cu_sample_top_raw(ci->logits, n, nv, ci->samp_d + i0, ci->samp_scratch, ci->top_d + i0,
                                    ci->lraw_d + i0, ci->st, e))
        return -1;
    if (ci->any_pen && tl_cu_penalize(ci->logits, n, nv, ci->samp_d + i0, ci->pen_d, ci->meta_d, d_lr + i0,
                                      raw ? ci->penraw_d : NULL, raw ? ci->lraw_d + i0 : NULL, ci->st, e))
        return -1;
    if (tl_cu_sample(ci->logits, n, nv, ci->samp_d + i0, ci->sout_d + i0, ci->samp_oneblock ? NULL : ci->samp_scratch,
                     ci->samp_chunked, ci->any_top && !raw ? ci->top_d + i0 : NULL, ci->st, e))
        return -1;
    if (raw && tl_cu_logprob_raw(ci->logits, n, nv, ci->samp_d + i0, ci->pen_d, ci->meta_d, d_lr + i0, ci->penraw_d,
                                 ci->lraw_d + i0, ci->sout_d + i0, ci->st, e))
        return -1;
    int check = 0;
    for (int i = i0; i < i0 + n; i++) {
        if (sh[i].skip) /* (rs.host, or penalties on a row the kernel might defer: raw logits to the host) */
            CUCHK(e, cudaMemcpyAsync(ci->slogits + (size_t)i * nv, ci->logits + (size_t)(i - i0) * nv, (size_t)nv * 4,
                                     cudaMemcpyDeviceToHost, ci->st));
        else check |= tl_cu_sample_may_defer(&sh[i], nv);
    }
    if (!check) return 0;
    double t0 = tl_now();
    CUCHK(e, cudaMemcpyAsync(oh + i0, ci->sout_d + i0, (size_t)n * sizeof *oh, cudaMemcpyDeviceToHost, ci->st));
    CUCHK(e, cudaStreamSynchronize(ci->st));
    for (int i = i0; i < i0 + n; i++)
        if (!sh[i].skip && oh[i].token < 0)
            CUCHK(e, cudaMemcpyAsync(ci->slogits + (size_t)i * nv, ci->logits + (size_t)(i - i0) * nv, (size_t)nv * 4,
                                     cudaMemcpyDeviceToHost, ci->st));
    ci->prof[3] += tl_now() - t0;
    return 0;
}

/* Final norm of x (d: a residual still to add, or NULL), then lm_head on the logit rows in chunks, sampled
 * on the device or copied back. */
static int forward_tail(cu_impl *ci, const tl_config *c, int T, int n_logits, const float *d, const int32_t *d_lr,
                        float *logits, tl_error *e) {
    const int E = c->n_embd;
    if (tl_cu_rmsnorm(ci->x, d, ci->out_norm, ci->xn, T, E, c->rms_eps, ci->st, e)) return -1;
    for (int i0 = 0; i0 < n_logits; i0 += CU_LOGIT_CHUNK) {
        int n = TL_MIN(CU_LOGIT_CHUNK, n_logits - i0);
        ci->pmm = P_LMHEAD;
        int r = tl_cu_gather_rows(ci->xn, d_lr + i0, n, E, ci->lx, ci->st, e) ||
                matmul(ci, &ci->lm_head, ci->lx, ci->logits, n, e);
        ci->pmm = P_MATMUL;
        if (r) return -1;
        if (ci->sampling) {
            if (sample_chunk(ci, c->n_vocab, i0, n, d_lr, e) || pmark(ci, P_SAMPLE)) return -1;
        } else if (logits) {
            CUCHK(e, cudaMemcpyAsync(logits + (size_t)i0 * c->n_vocab, ci->logits, (size_t)n * c->n_vocab * 4,
                                     cudaMemcpyDeviceToHost, ci->st));
        }
    }
    return 0;
}

/* one q4_gemv.cu GEMV of the decode sequence, between profile marks (TL_CUDA_PROFILE=1) */
static int gemv(cu_impl *ci, const tl_cu_gemv_args *a, tl_error *e) {
    pmark(ci, P_OTHER);
    int r = tl_cu_q4g_gemv(a, ci->st, e);
    pmark(ci, P_MATMUL);
    return r;
}

/* Whether a step of T tokens runs as forward_decode (graph or not): every matrix tiled INT4 and its inputs
 * fit q4_gemv.cu's shared memory. */
static int decode_fused(const cu_impl *ci, const tl_config *c, int T) {
    return ci->all_tiled && !ci->no_fuse && !ci->gemv_old && T <= 16 && tl_cu_q4g_fits(c->n_embd, T) &&
           tl_cu_q4g_fits((int64_t)c->n_head * c->head_dim, T) && tl_cu_q4g_fits(c->n_ff, T);
}

/* A decode-sized step in 6 kernels a layer instead of ~18: the RMSNorms run in the prologue of the GEMV
 * that reads them (q/k/v, gate/up), SiLU*up in gate/up's epilogue (a block takes gate tile j, then up tile j,
 * and writes h = SiLU(gate) * up in fp16: down_proj's prologue reads 2 bytes a column instead of 8; a 7B
 * layer's GEMVs alone 65.7 against 67.7 us, decode 2.12-2.16 against 2.20-2.21 ms/token, H100, same runs;
 * TL_CUDA_GU_PAIR=0: fp32 gate / up and SiLU*up in down's prologue, the same bits), and the residual adds in the epilogues of
 * o_proj and down_proj (x += W h, in place); x -> fp16 inside each GEMV. Every kernel of a layer is a
 * programmatic dependent launch (unless TL_CUDA_PDL=0): its weight loads start during the previous
 * kernel's tail. Layer: qkv GEMV, RoPE + KV write + attention in one kernel when every sequence has one new
 * token (else the rope kernel, then attention), the split merge (by build_meta's plan), o GEMV, gate/up
 * GEMV, down GEMV. The GEMV rings hold
 * CU_DECODE_RING stages, not all that shared memory allows: the x prologue's L2 reads queue behind less of
 * the ring's DRAM traffic (7B on an H100, a layer's four GEMVs alone: 65.9 us against 70.0 with the deepest
 * ring, v3 66.7-71.0). With x first (q4_gemv.cu) 5 stages: 2.026-2.029 ms/token against 2.052-2.054 with 6,
 * 2.037 with 4, 2.115 with 8 (H100, same call, b44b39c). */
static int forward_decode(cu_impl *ci, const tl_model *m, tl_kv *kv, int T, int n_logits, int max_ctx, float *logits,
                          tl_error *e) {
    const tl_config *c = &m->cfg;
    const int E = c->n_embd, hd = c->head_dim, F = c->n_ff, pdl = !ci->no_pdl;
    const int merge = ci->merge_last >= 0 ? ci->merge_last : CU_ATT_MERGE_DEFAULT;
    const int32_t *d_tok = ci->meta_d, *d_pos = d_tok + T, *d_slot = d_pos + T, *d_ctx = d_slot + T,
                  *d_off = d_ctx + T, *d_lr = d_off + T, *d_bt = d_lr + n_logits, *d_tiles = d_bt + ci->n_bt;
    const int QD = c->n_head * hd, RW = QD + 2 * c->n_head_kv * hd;
    const size_t esz = kv->dtype == TL_F32 ? 4 : 2;
    const size_t layer_bytes = (size_t)kv->n_blocks * kv->n_head_kv * kv->block_size * hd * esz;
    cudaStream_t st = ci->st;
    int qkv_grid = 0; /* the fused attention's blocks get multiprocessors of their own (same every layer) */
    if (ci->fuse_on && ci->qkv_room) {
        const tl_cu_attn_args sp = {.n_tok = T, .n_head = c->n_head, .n_head_kv = c->n_head_kv, .head_dim = hd,
                                    .max_split = ci->max_split, .max_ctx = max_ctx, .n_sm = ci->n_sm,
                                    .split_keys = ci->split_keys};
        const int ab = T * tl_cu_attention_splits(&sp) * c->n_head_kv;
        if (ab <= ci->n_sm / 4) qkv_grid = ci->n_sm - ab;
    }
    if (tl_cu_embed(ci->embd.is_q4 ? &ci->embd.q : NULL, ci->embd.bf16, c->n_vocab, E, ci->meta_d, ci->sout_d, T, ci->x, st, e))
        return -1;
    for (int l = 0; l < c->n_layer; l++) {
        const cu_layer *L = &ci->layers[l];
        void *kc = (char *)kv->k + (size_t)l * layer_bytes, *vc = (char *)kv->v + (size_t)l * layer_bytes;
        tl_cu_gemv_args qkv = {.w = &L->qkv.q, .x = ci->x, .x_stride = E, .x_mode = TL_CU_X_RMSNORM,
                               .norm_w = L->attn_norm, .eps = c->rms_eps, .bias = L->qkv.bias, .y = ci->qkv,
                               .n_tok = T, .pdl = pdl, .grid = qkv_grid};
        tl_cu_rope_args ra = {.qkv = ci->qkv, .n_tok = T, .n_head = c->n_head, .n_head_kv = c->n_head_kv,
                              .head_dim = hd, .pos = d_pos, .slot = d_slot, .theta = c->rope_theta,
                              .neox = c->rope == TL_ROPE_NEOX, .kcache = kc, .vcache = vc, .kv_dtype = kv->dtype,
                              .block_size = kv->block_size, .pdl = pdl};
        tl_cu_attn_args aa = {.q = ci->qkv, .q_stride = RW, .out = ci->att, .n_tok = T, .n_head = c->n_head,
                              .n_head_kv = c->n_head_kv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                              .kcache = kc, .vcache = vc, .kv_dtype = kv->dtype, .block_size = kv->block_size,
                              .ctx_len = d_ctx, .bt_off = d_off, .bt = d_bt, .partial = ci->partial,
                              .max_split = ci->max_split, .max_ctx = max_ctx, .n_sm = ci->n_sm, .pdl = pdl,
                              .split_keys = ci->split_keys,
                              .counters = merge == 1 ? ci->att_cnt : NULL, .merge_cluster = merge == 2};
        if (ci->att_fuse < 0) aa.pdl = 0; /* TL_CUDA_ATT_FUSE=nopdl (comparisons) */
        tl_cu_gemv_args o = {.w = &L->o.q, .x = ci->att, .x_stride = QD, .bias = L->o.bias, .resid = ci->x,
                             .y = ci->x, .n_tok = T, .pdl = pdl};
        tl_cu_gemv_args gu = {.w = &L->gu.q, .x = ci->x, .x_stride = E, .x_mode = TL_CU_X_RMSNORM,
                              .norm_w = L->ffn_norm, .eps = c->rms_eps, .bias = L->gu.bias, .y = ci->gu,
                              .n_tok = T, .pdl = pdl};
        tl_cu_gemv_args down = {.w = &L->down.q, .x = ci->gu, .x_stride = 2 * F, .x_mode = TL_CU_X_SILU,
                                .bias = L->down.bias, .resid = ci->x, .y = ci->x, .n_tok = T, .pdl = pdl};
        if (ci->gu_pair && F % 16 == 0) { /* h = SiLU(gate) * up in fp16 (in gu's buffer) */
            gu.y = NULL, gu.y_silu16 = (uint16_t *)ci->gu;
            down.x = NULL, down.x16 = (const uint16_t *)ci->gu, down.x_stride = F, down.x_mode = TL_CU_X_F16;
        }
        tl_cu_gemv_args *g4[4] = {&qkv, &o, &gu, &down};
        for (int k = 0; k < 4; k++) g4[k]->impl = ci->probe, g4[k]->ring = ci->ring, g4[k]->dbg = ci->gemv_dbg;
        if (ci->trace && 6 * l + 6 <= TL_CU_TRACE_ROWS) { /* rows: q/k/v, attention, merge, o, gate/up, down */
            unsigned long long *r = ci->trace_d + (size_t)6 * l * TL_CU_TRACE_ROW;
            qkv.trace = r, aa.trace = r + TL_CU_TRACE_ROW, aa.trace_merge = r + 2 * TL_CU_TRACE_ROW;
            o.trace = r + 3 * TL_CU_TRACE_ROW, gu.trace = r + 4 * TL_CU_TRACE_ROW, down.trace = r + 5 * TL_CU_TRACE_ROW;
        }
        const int sk = ci->dbg_skip;
        if ((!(sk & 1) && gemv(ci, &qkv, e)) ||
            (!(sk & 2) && ci->fuse_on && (pmark(ci, P_OTHER) || tl_cu_attention_decode_rope(&aa, &ra, st, e) ||
                                          pmark(ci, P_ATTN))) ||
            (!(sk & 2) && !ci->fuse_on &&
             (tl_cu_rope_kv_write(&ra, st, e) || pmark(ci, P_OTHER) || attention(ci, &aa, d_tiles, e) ||
              pmark(ci, P_ATTN))) ||
            (!(sk & 4) && gemv(ci, &o, e)) || (!(sk & 8) && gemv(ci, &gu, e)) || (!(sk & 16) && gemv(ci, &down, e)))
            return -1;
    }
    if (ci->dbg_skip & 32) return 0; /* (measurement: no final norm / lm_head either) */
    return forward_tail(ci, c, T, n_logits, NULL, d_lr, logits, e);
}

/* The kernels of one forward (metadata already on the device). logits != NULL: copy each lm_head chunk to
 * the host as it is done; NULL (graph capture, n_logits <= CU_LOGIT_CHUNK): leave it in ci->logits. */
static int forward_body(cu_impl *ci, const tl_model *m, tl_kv *kv, int T, int n_logits, int max_ctx, float *logits,
                        tl_error *e) {
    if (decode_fused(ci, &m->cfg, T)) return forward_decode(ci, m, kv, T, n_logits, max_ctx, logits, e);
    const tl_config *c = &m->cfg;
    const int E = c->n_embd, hd = c->head_dim;
    const int32_t *d_tok = ci->meta_d, *d_pos = d_tok + T, *d_slot = d_pos + T, *d_ctx = d_slot + T,
                  *d_off = d_ctx + T, *d_lr = d_off + T, *d_bt = d_lr + n_logits, *d_tiles = d_bt + ci->n_bt;
    const int QD = c->n_head * hd, RW = QD + 2 * c->n_head_kv * hd;
    const size_t esz = kv->dtype == TL_F32 ? 4 : 2;
    const size_t layer_bytes = (size_t)kv->n_blocks * kv->n_head_kv * kv->block_size * hd * esz;
    cudaStream_t st = ci->st;
    /* > CU_BIG_T tokens: every matmul input is written in bf16 by its producer (rmsnorm_bf16, silu_mul_bf16;
     * attention output converted), gate/up come out of cuBLAS in bf16: no fp32 -> bf16 passes over the big
     * activations. TL_CUDA_PREFILL_BF16=0 keeps the fp32 path (comparisons). */
    const char *pb = getenv("TL_CUDA_PREFILL_BF16");
    const char *bt = getenv("TL_CUDA_BIG_T"); /* threshold override (>= 16), for measuring batched decode */
    int big = T > (bt ? TL_MAX(16, atoi(bt)) : CU_BIG_T) && !(pb && !strcmp(pb, "0")) && c->n_ff % 8 == 0;
    for (int l = 0; big && l < c->n_layer; l++) big = !ci->layers[l].gu.bias; /* gate/up leave cuBLAS in bf16 */
    uint16_t *xb = ci->xbf;

    if (tl_cu_embed(ci->embd.is_q4 ? &ci->embd.q : NULL, ci->embd.bf16, c->n_vocab, E, ci->meta_d, ci->sout_d, T, ci->x, st, e))
        return -1;
    for (int l = 0; l < c->n_layer; l++) {
        const cu_layer *L = &ci->layers[l];
        /* the previous layer's down_proj output (tmp) joins the residual inside the norm */
        if (big ? tl_cu_rmsnorm_bf16(ci->x, l ? ci->tmp : NULL, L->attn_norm, xb, T, E, c->rms_eps, st, e) ||
                      matmul_big(ci, &L->qkv, xb, ci->qkv, 0, T, e)
                : tl_cu_rmsnorm(ci->x, l ? ci->tmp : NULL, L->attn_norm, ci->xn, T, E, c->rms_eps, st, e) ||
                      matmul(ci, &L->qkv, ci->xn, ci->qkv, T, e))
            return -1;
        void *kc = (char *)kv->k + (size_t)l * layer_bytes, *vc = (char *)kv->v + (size_t)l * layer_bytes;
        tl_cu_rope_args ra = {.qkv = ci->qkv, .n_tok = T, .n_head = c->n_head, .n_head_kv = c->n_head_kv,
                              .head_dim = hd, .pos = d_pos, .slot = d_slot, .theta = c->rope_theta,
                              .neox = c->rope == TL_ROPE_NEOX, .kcache = kc, .vcache = vc, .kv_dtype = kv->dtype,
                              .block_size = kv->block_size};
        tl_cu_attn_args aa = {.q = ci->qkv, .q_stride = RW, .out = ci->att, .n_tok = T, .n_head = c->n_head,
                              .n_head_kv = c->n_head_kv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd),
                              .kcache = kc, .vcache = vc, .kv_dtype = kv->dtype, .block_size = kv->block_size,
                              .ctx_len = d_ctx, .bt_off = d_off, .bt = d_bt, .partial = ci->partial,
                              .max_split = T <= 64 ? ci->max_split : 1, .max_ctx = max_ctx, .n_sm = ci->n_sm};
        if (tl_cu_rope_kv_write(&ra, st, e) || pmark(ci, P_OTHER) || attention(ci, &aa, d_tiles, e) ||
            pmark(ci, P_ATTN))
            return -1;
        if (big) {
            if (tl_cu_f32_to_bf16(ci->att, xb, (size_t)T * c->n_head * hd, st, e) ||
                matmul_big(ci, &L->o, xb, ci->tmp, 0, T, e) ||
                tl_cu_rmsnorm_bf16(ci->x, ci->tmp, L->ffn_norm, xb, T, E, c->rms_eps, st, e) ||
                matmul_big(ci, &L->gu, xb, ci->gu, 1, T, e) ||
                tl_cu_silu_mul_bf16((const uint16_t *)ci->gu, xb, T, c->n_ff, st, e) ||
                matmul_big(ci, &L->down, xb, ci->tmp, 0, T, e))
                return -1;
            continue;
        }
        if (matmul(ci, &L->o, ci->att, ci->tmp, T, e) ||
            tl_cu_rmsnorm(ci->x, ci->tmp, L->ffn_norm, ci->xn, T, E, c->rms_eps, st, e) ||
            matmul(ci, &L->gu, ci->xn, ci->gu, T, e) || tl_cu_silu_mul(ci->gu, ci->hb, T, c->n_ff, st, e) ||
            matmul(ci, &L->down, ci->hb, ci->tmp, T, e))
            return -1;
    }
    /* last residual add + final norm (all rows; cheap), then lm_head on the logit rows in chunks */
    return forward_tail(ci, c, T, n_logits, ci->tmp, d_lr, logits, e);
}

static void graph_drop(cu_impl *ci) {
    if (ci->gexec) cudaGraphExecDestroy(ci->gexec);
    ci->gexec = NULL;
    memset(ci->gkey, 0, sizeof ci->gkey);
}

/* The GPU work of one step, after build_meta (nmeta int32 in meta_h[cur]): the metadata copy, the sampling
 * parameters' (ci->srs set), the forward (a CUDA graph or forward_body; its embedding takes TL_TOKEN_PREV tokens
 * from sout_d), then with ci->srs the logit rows sampled on the device instead of copied to `logits` and the
 * results copied to sout_h[cur]. Enqueued on ci->st; nothing waited for (but sample_chunk's deferred rows). */
static int enqueue_work(cu_impl *ci, const tl_model *m, tl_kv *kv, const tl_batch *b, int64_t nmeta, int max_ctx,
                        float *logits, tl_error *e) {
    const tl_config *c = &m->cfg;
    const int T = b->n_tok, hd = c->head_dim;
    CUCHK(e, cudaMemcpyAsync(ci->meta_d, ci->meta_h[ci->cur], (size_t)nmeta * 4, cudaMemcpyHostToDevice, ci->st));
    if (ci->srs)
        CUCHK(e, cudaMemcpyAsync(ci->samp_d, ci->samp_h[ci->cur], (size_t)b->n_logits * sizeof *ci->samp_d,
                                 cudaMemcpyHostToDevice, ci->st));
    if (ci->srs && ci->any_pen && ci->pen_n[ci->cur])
        CUCHK(e, cudaMemcpyAsync(ci->pen_d, ci->pen_h[ci->cur], ci->pen_n[ci->cur] * 2 * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, ci->st));
    /* decode-sized steps run as a CUDA graph (one launch instead of ~13 per layer), captured once per
     * shape: (T, n_logits, attention splits, KV pool, decode attention kernel); everything else the kernels
     * read lives in meta_d */
    int use_graph = ci->graph_ok && T <= 16 && b->n_logits <= 16 && b->n_logits > 0;
    /* the sampling inside the graph when every row is sampled there, no logits come back and nothing is
     * checked on the host (sample_chunk has no host work then: its kernels read samp_d, write sout_d): a
     * pipelined step is then its copies and one graph, no launch gaps between lm_head and the sampler */
    int samp_in_graph = ci->srs != NULL && !ci->no_samp_graph;
    for (int i = 0; i < b->n_logits && samp_in_graph; i++) {
        const tl_cu_samp *p = &ci->samp_h[ci->cur][i];
        samp_in_graph = !p->skip && !tl_cu_sample_may_defer(p, c->n_vocab);
    }
    if (use_graph) {
        tl_cu_attn_args probe = {.n_tok = T, .n_head = c->n_head, .n_head_kv = c->n_head_kv, .head_dim = hd,
                                 .max_split = ci->max_split, .max_ctx = max_ctx, .n_sm = ci->n_sm,
                                 .split_keys = decode_fused(ci, c, T) ? ci->split_keys : 0};
        intptr_t key[CU_GKEY] = {T, b->n_logits, tl_cu_attention_splits(&probe), (intptr_t)kv->k, (intptr_t)kv->dtype,
                                 kv->n_blocks, ci->gemv_old, ci->no_fuse, ci->no_pdl, ci->merge_last, ci->attn_dec,
                                 ci->ring, ci->dbg_skip, ci->probe, ci->att_fuse, ci->fuse_on, ci->gu_pair,
                                 ci->qkv_room, ci->gemv_dbg, ci->trace, (intptr_t)ci->sout_d, samp_in_graph,
                                 ci->samp_oneblock, ci->samp_chunked, samp_in_graph && ci->any_pen ? (intptr_t)ci->pen_d : 0,
                                 samp_in_graph && ci->any_pen, /* (penalties / top-n in the graph only with the sampling) */
                                 samp_in_graph && ci->any_top,
                                 samp_in_graph && ci->any_pen && ci->any_top ? (intptr_t)ci->penraw_d : 0};
        if (!ci->gexec || memcmp(key, ci->gkey, sizeof key)) {
            graph_drop(ci); /* (an instance still queued or running is freed when it completes) */
            cudaGraph_t g;
            CUCHK(e, cudaStreamBeginCapture(ci->st, cudaStreamCaptureModeThreadLocal));
            ci->sampling = samp_in_graph; /* else after the graph (host rows, deferred rows: host work) */
            ci->capturing = 1;
            int r = forward_body(ci, m, kv, T, b->n_logits, max_ctx, NULL, e);
            ci->capturing = 0;
            ci->sampling = 0;
            cudaError_t ce = cudaStreamEndCapture(ci->st, &g);
            if (r) return -1;
            CUCHK(e, ce);
            ce = cudaGraphInstantiate(&ci->gexec, g, 0);
            cudaGraphDestroy(g);
            if (ce != cudaSuccess) {
                ci->gexec = NULL;
                return tl_errf(e, "cuda: graph instantiate: %s", cudaGetErrorString(ce));
            }
            memcpy(ci->gkey, key, sizeof key);
        }
        CUCHK(e, cudaGraphLaunch(ci->gexec, ci->st));
        if (ci->srs) {
            if (!samp_in_graph && sample_chunk(ci, c->n_vocab, 0, b->n_logits, ci->meta_d + 5 * T, e)) return -1;
        } else {
            CUCHK(e, cudaMemcpyAsync(logits, ci->logits, (size_t)b->n_logits * c->n_vocab * 4, cudaMemcpyDeviceToHost,
                                     ci->st));
        }
    } else {
        ci->sampling = ci->srs != NULL;
        int r = forward_body(ci, m, kv, T, b->n_logits, max_ctx, logits, e);
        ci->sampling = 0;
        if (r) return -1;
    }
    if (ci->srs)
        CUCHK(e, cudaMemcpyAsync(ci->sout_h[ci->cur], ci->sout_d, (size_t)b->n_logits * sizeof *ci->sout_d,
                                 cudaMemcpyDeviceToHost, ci->st));
    if (ci->srs && ci->any_top)
        CUCHK(e, cudaMemcpyAsync(ci->top_h[ci->cur], ci->top_d, (size_t)b->n_logits * sizeof *ci->top_d,
                                 cudaMemcpyDeviceToHost, ci->st));
    return 0;
}

/* One step enqueued on ci->st with the host buffers of ci->cur (the caller waits for it); with ci->srs set
 * (cu_launch) sampled on the device. Returns -1 on an error: when that came after some of the step's work was
 * enqueued, this waits for that work (so the buffers it reads may be reused) and, with sampling, forgets the
 * previous launched step (sout_d may have been overwritten). */
static int enqueue_step(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, float *logits, tl_error *e) {
    cu_impl *ci = be->impl;
    const tl_config *c = &m->cfg;
    const int T = b->n_tok, hd = c->head_dim;
    ci->n_pev = 0; /* (no profile marks for an empty step) */
    if (T <= 0) return 0;
    if (ci->m != m) {
        graph_drop(ci);
        ci->prev_n = -1; /* token ids of another model */
        if (cu_prepare(be, (tl_model *)m, e)) return -1;
    }
    if (kv->n_head_kv != c->n_head_kv || kv->head_dim != hd || kv->n_layer != c->n_layer)
        return tl_errf(e, "cuda: KV pool shape does not match the model");
    const char *gv = getenv("TL_CUDA_GEMV"), *fu = getenv("TL_CUDA_FUSE"), *pd = getenv("TL_CUDA_PDL");
    ci->gemv_old = gv && !strcmp(gv, "mma");
    ci->no_fuse = fu && !strcmp(fu, "0");
    ci->no_pdl = pd && !strcmp(pd, "0");
    const char *sk = getenv("TL_CUDA_SPLIT_KEYS");
    ci->split_keys = sk ? atoi(sk) : CU_DEC_SPLIT_KEYS;
    const char *am = getenv("TL_CUDA_ATT_MERGE");
    ci->merge_last = !am ? -1 : !strcmp(am, "last") ? 1 : !strcmp(am, "kernel") ? 0 : !strcmp(am, "cluster") ? 2 : -1;
    const char *af = getenv("TL_CUDA_ATT_FUSE");
    ci->att_fuse = !af ? 1 : !strcmp(af, "0") ? 0 : !strcmp(af, "nopdl") ? -1 : 1;
    const char *rg = getenv("TL_CUDA_RING");
    ci->ring = rg ? atoi(rg) : CU_DECODE_RING;
    const char *gq = getenv("TL_CUDA_GU_PAIR"), *qr = getenv("TL_CUDA_QKV_ROOM");
    ci->qkv_room = !(qr && !strcmp(qr, "0"));
    ci->gu_pair = !(gq && !strcmp(gq, "0"));
    const char *ds = getenv("TL_CUDA_DBG_SKIP"), *gp = getenv("TL_CUDA_GEMV_PROBE");
    ci->dbg_skip = ds ? atoi(ds) : 0;
    const char *gd = getenv("TL_CUDA_GEMV_DBG"), *tr = getenv("TL_CUDA_TRACE");
    ci->gemv_dbg = gd ? atoi(gd) : 0;
    ci->trace = tr && !strcmp(tr, "1") && T == 1 && ci->n_sm <= TL_CU_TRACE_ROW / 4 && c->n_head <= TL_CU_TRACE_ROW / 4 &&
                ci->max_split * c->n_head_kv <= TL_CU_TRACE_ROW / 4; /* every grid's blocks fit a row */
    if (ci->trace && !ci->trace_d) {
        if (cudaMalloc((void **)&ci->trace_d, (size_t)TL_CU_TRACE_ROWS * TL_CU_TRACE_ROW * 8) != cudaSuccess)
            return tl_errf(e, "cuda: trace buffer: out of memory");
    }
    if (ci->trace) CUCHK(e, cudaMemsetAsync(ci->trace_d, 0, (size_t)TL_CU_TRACE_ROWS * TL_CU_TRACE_ROW * 8, ci->st));
    ci->probe = gp && !strcmp(gp, "ring") ? TL_CU_GEMV_RING : gp && !strcmp(gp, "math") ? TL_CU_GEMV_MATH : 0;
    const char *sc = getenv("TL_CUDA_SAMPLE_CHUNKS");
    ci->samp_chunked = !(sc && !strcmp(sc, "0"));
    const char *sg = getenv("TL_CUDA_SAMPLE_GRAPH");
    ci->no_samp_graph = sg && !strcmp(sg, "0");
    const char *qg = getenv("TL_CUDA_Q4GEMM");
    ci->q4gemm = qg ? atoi(qg) != 0 : -1;
    void *act_before = ci->act;
    if (ensure_act(ci, c, T, e)) return -1;
    int max_ctx = 0;
    void *meta_before = ci->meta_d;
    double t0 = tl_now();
    int64_t nmeta = build_meta(ci, c, kv, b, &max_ctx, e);
    /* (before the error return: build_meta may have moved meta_d and then refused the batch) */
    if (ci->act != act_before || ci->meta_d != meta_before) graph_drop(ci);
    if (nmeta < 0) return -1; /* nothing of this step enqueued */
    ci->fuse_on = ci->att_fuse > 0 && ci->dec1 && ci->attn_dec && !ci->n_tiles && decode_fused(ci, c, T);
    double t1 = tl_now();
    pmark(ci, P_OTHER);
    if (enqueue_work(ci, m, kv, b, nmeta, max_ctx, logits, e)) {
        cudaStreamSynchronize(ci->st);
        if (ci->srs) ci->prev_n = -1;
        return -1;
    }
    ci->prof[0] += t1 - t0, ci->prof[1] += tl_now() - t1, ci->prof_n++;
    return 0;
}

/* TL_CUDA_PROFILE=1: the GPU time between the profile marks of the step just completed (T tokens; prefill: it
 * had prefill tokens), summed per phase. */
static void prof_gpu(cu_impl *ci, int T, int prefill) {
    if (ci->n_pev <= 1) return;
    const int k = prefill ? 1 : 0;
    for (int i = 1; i < ci->n_pev; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, ci->pev[i - 1], ci->pev[i]) == cudaSuccess) ci->pgpu[k][ci->pcat[i]] += ms;
    }
    ci->pn[k]++, ci->ptok[k] += T;
    ci->n_pev = 0;
}

/* One forward, logits of b->logit_rows copied to `logits`; waits for it. Not while launched steps are out
 * (they are collected in order; a forward between would wait for them and reuse their buffers). */
static int cu_forward(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, float *logits, tl_error *e) {
    cu_impl *ci = be->impl;
    if (ci->n_launched)
        return tl_errf(e, "cuda: forward while %d launched steps are not collected", ci->n_launched);
    ci->cur = ci->next_buf; /* (not advanced: this step is complete before the next one is built) */
    if (enqueue_step(be, m, kv, b, logits, e)) return -1;
    double t0 = tl_now();
    CUCHK(e, cudaStreamSynchronize(ci->st));
    ci->prof[2] += tl_now() - t0;
    prof_gpu(ci, b->n_tok, b->n_tok != b->n_seq);
    return 0;
}

/* Sampling buffers for n logit rows: samp_h / sout_h (pinned, CU_NBUF each), samp_d / sout_d. Growing waits
 * for the launched steps and carries their rows over: cu_collect reads samp_h / sout_h, the next step's
 * TL_TOKEN_PREV tokens sout_d and check_prev_row samp_h. On failure the old buffers stay. */
static int ensure_samp(cu_impl *ci, int n, tl_error *e) {
    if (!ci->samp_scratch) { /* zeroed on ci->st, so the sampler's counters are zero for its first launch */
        const size_t nb = tl_cu_sample_scratch_bytes();
        void *p = NULL;
        if (cudaMalloc(&p, nb) != cudaSuccess || cudaMemsetAsync(p, 0, nb, ci->st) != cudaSuccess) {
            cudaGetLastError();
            if (p) cudaFree(p);
            return tl_errf(e, "cuda: cannot allocate the sampler's scratch (%zu bytes)", nb);
        }
        ci->samp_scratch = p;
    }
    if (n <= ci->samp_cap) return 0;
    CUCHK(e, cudaStreamSynchronize(ci->st));
    const int cap = TL_MAX(n, 256), old = ci->samp_cap;
    tl_cu_samp *sh[CU_NBUF] = {0}, *sd = NULL;
    tl_cu_samp_out *oh[CU_NBUF] = {0}, *od = NULL;
    tl_cu_top *th[CU_NBUF] = {0}, *td = NULL;
    tl_cu_lraw *ld = NULL;
    int ok = cudaMalloc((void **)&sd, (size_t)cap * sizeof *sd) == cudaSuccess &&
             cudaMalloc((void **)&od, (size_t)cap * sizeof *od) == cudaSuccess &&
             cudaMalloc((void **)&td, (size_t)cap * sizeof *td) == cudaSuccess &&
             cudaMalloc((void **)&ld, (size_t)cap * sizeof *ld) == cudaSuccess;
    for (int k = 0; k < CU_NBUF && ok; k++)
        ok = cudaMallocHost((void **)&sh[k], (size_t)cap * sizeof *sh[k]) == cudaSuccess &&
             cudaMallocHost((void **)&oh[k], (size_t)cap * sizeof *oh[k]) == cudaSuccess &&
             cudaMallocHost((void **)&th[k], (size_t)cap * sizeof *th[k]) == cudaSuccess;
    if (ok && old)
        ok = cudaMemcpyAsync(od, ci->sout_d, (size_t)old * sizeof *od, cudaMemcpyDeviceToDevice, ci->st) ==
                 cudaSuccess &&
             cudaStreamSynchronize(ci->st) == cudaSuccess;
    tl_cu_samp *fsd = ok ? ci->samp_d : sd;
    tl_cu_samp_out *fod = ok ? ci->sout_d : od;
    tl_cu_top *ftd = ok ? ci->top_d : td;
    tl_cu_lraw *fld = ok ? ci->lraw_d : ld;
    for (int k = 0; k < CU_NBUF; k++) { /* carry the rows over, then free the old (or, failed, the new) buffers */
        if (ok && old) {
            memcpy(sh[k], ci->samp_h[k], (size_t)old * sizeof *sh[k]);
            memcpy(oh[k], ci->sout_h[k], (size_t)old * sizeof *oh[k]);
            memcpy(th[k], ci->top_h[k], (size_t)old * sizeof *th[k]);
        }
        tl_cu_samp *fs = ok ? ci->samp_h[k] : sh[k];
        tl_cu_samp_out *fo = ok ? ci->sout_h[k] : oh[k];
        tl_cu_top *ft = ok ? ci->top_h[k] : th[k];
        if (fs) cudaFreeHost(fs);
        if (fo) cudaFreeHost(fo);
        if (ft) cudaFreeHost(ft);
        if (ok) ci->samp_h[k] = sh[k], ci->sout_h[k] = oh[k], ci->top_h[k] = th[k];
    }
    if (fsd) cudaFree(fsd);
    if (fod) cudaFree(fod);
    if (ftd) cudaFree(ftd);
    if (fld) cudaFree(fld);
    if (!ok) {
        cudaGetLastError();
        return tl_errf(e, "cuda: cannot allocate sampling buffers for %d rows", n);
    }
    ci->samp_d = sd, ci->sout_d = od, ci->top_d = td, ci->lraw_d = ld, ci->samp_cap = cap;
    return 0;
}

/* A row's parameters for the kernels. Rows that go to the host whole (skip: raw logits back): penalties or top-n
 * on a row the sampler might leave to the host (tl_cu_sample_may_defer; the penalties rewrite the logits in place),
 * top-n with one block a row (oneblock: no statistics scratch). Top-n with penalties stays here (its logprobs of
 * the raw logits: sample_chunk). */
static tl_cu_samp samp_of(const tl_row_sampling *rs, int n_vocab, int oneblock) {
    tl_cu_samp p = {.temperature = rs->temperature, .top_k = rs->top_k, .top_p = rs->top_p, .min_p = rs->min_p,
                    .u = rs->u, .skip = rs->host != 0, .rep = rs->repetition_penalty, .pres = rs->presence_penalty,
                    .freq = rs->frequency_penalty, .pen_n = rs->pen_n, .last_gen = rs->last_gen,
                    .n_top = TL_MIN(TL_MAX(rs->n_logprobs, 0), TL_CU_TOPN)};
    if ((tl_cu_samp_has_pen(&p) || p.n_top) && tl_cu_sample_may_defer(&p, n_vocab)) p.skip = 1;
    if (p.n_top && oneblock) p.skip = 1;
    if (p.skip) p.n_top = 0;
    if (!tl_cu_samp_has_pen(&p) || p.skip) p.rep = 1.0f, p.pres = p.freq = 0.0f, p.pen_n = 0;
    return p;
}

/* The penalty entries of the rows of launch buffer buf (samp_h[buf] filled) into pen_h[buf], each row's offset
 * into its pen_off; sets any_pen. Growing waits for the launched steps (their copies read pen_h, kernels pen_d). */
static int fill_pen(cu_impl *ci, int buf, const tl_row_sampling *rs, int n, tl_error *e) {
    size_t need = 0;
    ci->any_pen = 0;
    for (int i = 0; i < n; i++) {
        const tl_cu_samp *p = &ci->samp_h[buf][i];
        ci->any_pen |= !p->skip && tl_cu_samp_has_pen(p);
        need += (size_t)(p->pen_n > 0 ? p->pen_n : 0);
    }
    ci->pen_n[buf] = need;
    if (!ci->any_pen) return 0;
    if (need > ci->pen_cap || !ci->pen_d || !ci->penraw_d) { /* (both: a failed growth may have left one) */
        CUCHK(e, cudaStreamSynchronize(ci->st));
        for (int k = 0; k < CU_NBUF; k++)
            if (ci->pen_h[k]) cudaFreeHost(ci->pen_h[k]), ci->pen_h[k] = NULL;
        if (ci->pen_d) cudaFree(ci->pen_d), ci->pen_d = NULL;
        if (ci->penraw_d) cudaFree(ci->penraw_d), ci->penraw_d = NULL;
        ci->pen_cap = 0;
        const size_t cap = TL_MAX(need * 2, (size_t)64); /* (small at first: the tests grow it) */
        int ok = cudaMalloc((void **)&ci->pen_d, cap * 2 * sizeof(int32_t)) == cudaSuccess &&
                 cudaMalloc((void **)&ci->penraw_d, cap * sizeof(float)) == cudaSuccess;
        for (int k = 0; k < CU_NBUF && ok; k++)
            ok = cudaMallocHost((void **)&ci->pen_h[k], cap * 2 * sizeof(int32_t)) == cudaSuccess;
        if (!ok) {
            cudaGetLastError();
            return tl_errf(e, "cuda: cannot allocate the penalty lists (%zu entries)", need);
        }
        ci->pen_cap = cap;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        tl_cu_samp *p = &ci->samp_h[buf][i];
        p->pen_off = (int)off;
        if (p->pen_n <= 0) continue;
        memcpy(ci->pen_h[buf] + 2 * off, rs[i].pen, (size_t)p->pen_n * 2 * sizeof(int32_t));
        off += (size_t)p->pen_n;
    }
    return 0;
}

/* backend.h launch: the step enqueued with the host buffers of next_buf (see cu_impl.cur), its event recorded
 * after its last copy; b and rs are copied (meta_h, samp_h) before this returns. TL_CUDA_PROFILE=1: waits for
 * the step here (the profile events are reused by the next step). */
static int cu_launch(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, const tl_row_sampling *rs,
                     float *logits, tl_error *e) {
    cu_impl *ci = be->impl;
    if (ci->n_launched >= CU_NBUF)
        return tl_errf(e, "cuda: launch: %d steps launched and not collected (collect one first)", ci->n_launched);
    const int buf = ci->next_buf, n = b->n_tok > 0 ? TL_MAX(b->n_logits, 0) : 0;
    if (!ci->step_done[buf] && cudaEventCreateWithFlags(&ci->step_done[buf], cudaEventDisableTiming) != cudaSuccess) {
        ci->step_done[buf] = NULL;
        return tl_errf(e, "cuda: launch: cannot create an event: %s", cudaGetErrorString(cudaGetLastError()));
    }
    if (ensure_samp(ci, n, e)) return -1;
    ci->cur = buf; /* the step launched two before used it: collected (n_launched < CU_NBUF) */
    const char *sh = getenv("TL_CUDA_SAMPLE_HEAD"); /* (comparisons: the top-p head's size, tl_cu_samp.head) */
    const int head = sh ? atoi(sh) : 0;
    const char *so = getenv("TL_CUDA_SAMPLE_ONEBLOCK"); /* (a comparison switch, read a launch) */
    ci->samp_oneblock = so && !strcmp(so, "1");
    ci->any_top = 0;
    for (int i = 0; i < n; i++) {
        tl_cu_samp *p = &ci->samp_h[buf][i];
        *p = samp_of(&rs[i], m->cfg.n_vocab, ci->samp_oneblock), p->head = head;
        ci->any_top |= p->n_top > 0;
    }
    ci->top_on[buf] = ci->any_top;
    if (fill_pen(ci, buf, rs, n, e)) return -1;
    ci->srs = n > 0 ? rs : NULL;
    ci->slogits = logits;
    int r = enqueue_step(be, m, kv, b, NULL, e);
    ci->srs = NULL;
    ci->slogits = NULL;
    ci->any_pen = ci->any_top = 0;
    if (r) return -1;
    cudaError_t err = cudaEventRecord(ci->step_done[buf], ci->st);
    if (err != cudaSuccess) { /* not launched after all: as enqueue_step's failures */
        cudaStreamSynchronize(ci->st);
        ci->prev_n = -1;
        return tl_errf(e, "cuda: launch: cudaEventRecord: %s", cudaGetErrorString(err));
    }
    ci->n_launched++;
    ci->step_n[buf] = n;
    ci->prev_buf = buf, ci->prev_n = n;
    ci->next_buf = (buf + 1) % CU_NBUF;
    if (ci->prof_on) { /* (an error here is collect's to report: the step is launched) */
        double t0 = tl_now();
        cudaStreamSynchronize(ci->st);
        ci->prof[2] += tl_now() - t0;
        prof_gpu(ci, b->n_tok, b->n_tok != b->n_seq);
    }
    return 0;
}

/* backend.h collect: waits for the oldest launched step and reads its results from its sout_h buffer. */
static int cu_collect(tl_backend *be, int32_t *tok, float *logprob, tl_error *e) {
    cu_impl *ci = be->impl;
    if (!ci->n_launched) return tl_errf(e, "cuda: collect: no launched step to collect");
    const int buf = (ci->next_buf - ci->n_launched + CU_NBUF) % CU_NBUF; /* the oldest step's */
    ci->n_launched--;
    double t0 = tl_now();
    CUCHK(e, cudaEventSynchronize(ci->step_done[buf]));
    ci->prof[2] += tl_now() - t0;
    const tl_cu_samp *sh = ci->samp_h[buf];
    const tl_cu_samp_out *oh = ci->sout_h[buf];
    ci->last_buf = buf;
    for (int i = 0; i < ci->step_n[buf]; i++) {
        tok[i] = sh[i].skip ? -1 : oh[i].token;
        logprob[i] = oh[i].logprob;
    }
    return 0;
}

static int cu_row_on_device(const tl_backend *be, const tl_row_sampling *rs, int n_vocab) {
    const cu_impl *ci = be->impl;
    const tl_cu_samp p = samp_of(rs, n_vocab, ci->samp_oneblock);
    return !p.skip && !tl_cu_sample_may_defer(&p, n_vocab);
}

/* backend.h collected_top: row `row`'s top-n of the step collected last (its buffer's top_h, copied with sout_h);
 * n <= n_top = min(rs.n_logprobs, TL_CU_TOPN), so it fits the caller's rs.n_logprobs */
static int cu_collected_top(tl_backend *be, int row, int32_t *ids, float *logprobs) {
    cu_impl *ci = be->impl;
    const int buf = ci->last_buf;
    if (!ci->top_on[buf] || row < 0 || row >= ci->step_n[buf] || ci->samp_h[buf][row].skip ||
        ci->samp_h[buf][row].n_top <= 0)
        return 0;
    const tl_cu_top *t = &ci->top_h[buf][row];
    const int n = TL_MAX(0, TL_MIN(t->n, ci->samp_h[buf][row].n_top));
    memcpy(ids, t->id, (size_t)n * sizeof *ids);
    memcpy(logprobs, t->lp, (size_t)n * sizeof *logprobs);
    return n;
}

/* launch, then collect (nothing else launched: collect answers the oldest step) */
static int cu_forward_sample(tl_backend *be, const tl_model *m, tl_kv *kv, const tl_batch *b, const tl_row_sampling *rs,
                             int32_t *tok, float *logprob, float *logits, tl_error *e) {
    cu_impl *ci = be->impl;
    if (ci->n_launched)
        return tl_errf(e, "cuda: forward_sample while %d launched steps are not collected", ci->n_launched);
    if (cu_launch(be, m, kv, b, rs, logits, e)) return -1;
    return cu_collect(be, tok, logprob, e);
}

static void cu_free(tl_backend *be) {
    cu_impl *ci = be->impl;
    cudaStreamSynchronize(ci->st); /* launched steps not collected still copy into the buffers freed below */
    if (ci->prof_on && ci->prof_n)
        tl_info("cuda profile: %lld forwards: host build_meta %.2f ms, enqueue %.2f ms, wait for GPU %.2f ms, "
                "sampling fallbacks %.2f ms (per forward)",
                (long long)ci->prof_n, 1e3 * ci->prof[0] / ci->prof_n, 1e3 * ci->prof[1] / ci->prof_n,
                1e3 * ci->prof[2] / ci->prof_n, 1e3 * ci->prof[3] / ci->prof_n);
    for (int k = 0; k < 2; k++) {
        if (!ci->prof_on || !ci->pn[k]) continue;
        double tot = 0;
        char buf[512];
        int o = 0;
        for (int p = 0; p < P_N; p++) tot += ci->pgpu[k][p];
        for (int p = 0; p < P_N; p++)
            o += snprintf(buf + o, sizeof buf - (size_t)o, ", %s %.2f", p_name[p], ci->pgpu[k][p] / ci->pn[k]);
        tl_info("cuda profile, GPU ms per %s step (%lld steps, %.0f tokens each): total %.2f%s",
                k ? "prefill/mixed" : "decode-only", (long long)ci->pn[k], (double)ci->ptok[k] / ci->pn[k],
                tot / ci->pn[k], buf);
    }
    for (int i = 0; i < CU_PROF_EV; i++)
        if (ci->pev[i]) cudaEventDestroy(ci->pev[i]);
    for (int k = 0; k < CU_NBUF; k++) {
        if (ci->samp_h[k]) cudaFreeHost(ci->samp_h[k]);
        if (ci->sout_h[k]) cudaFreeHost(ci->sout_h[k]);
        if (ci->top_h[k]) cudaFreeHost(ci->top_h[k]);
        if (ci->meta_h[k]) cudaFreeHost(ci->meta_h[k]);
        if (ci->pen_h[k]) cudaFreeHost(ci->pen_h[k]);
        if (ci->step_done[k]) cudaEventDestroy(ci->step_done[k]);
    }
    if (ci->samp_d) cudaFree(ci->samp_d);
    if (ci->pen_d) cudaFree(ci->pen_d);
    if (ci->penraw_d) cudaFree(ci->penraw_d);
    if (ci->top_d) cudaFree(ci->top_d);
    if (ci->lraw_d) cudaFree(ci->lraw_d);
    if (ci->samp_scratch) cudaFree(ci->samp_scratch);
    if (ci->sout_d) cudaFree(ci->sout_d);
    graph_drop(ci);
    release_model(ci);
    if (ci->trace_d) cudaFree(ci->trace_d);
    if (ci->meta_d) cudaFree(ci->meta_d);
    free(ci->runs), free(ci->cov);
    if (ci->blas) cublasDestroy(ci->blas);
    if (ci->st) cudaStreamDestroy(ci->st);
    free(ci);
    free(be);
}

/* The trace of the last 1-token forward_decode step run with TL_CUDA_TRACE=1 (see cu_impl.trace_d): rows of
 * TL_CU_TRACE_ROW u64, 6 a layer; 0 where nothing was stamped. Returns the u64 copied, -1 without a trace. */
long tl_cuda_trace_read(tl_backend *be, unsigned long long *out, long n) {
    cu_impl *ci = be->impl;
    const long have = (long)TL_CU_TRACE_ROWS * TL_CU_TRACE_ROW;
    if (!ci->trace_d) return -1;
    if (n > have) n = have;
    if (cudaStreamSynchronize(ci->st) != cudaSuccess ||
        cudaMemcpy(out, ci->trace_d, (size_t)n * 8, cudaMemcpyDeviceToHost) != cudaSuccess)
        return -1;
    return n;
}

/* Measurement: the last captured decode step's graph replayed n times back to back on the stream (the same
 * metadata: every replay recomputes that step and rewrites its KV slot; no sampling, nothing copied back), so
 * the GPU never waits for the host between steps. Returns ms a replay, -1 without a graph or on an error. */
double tl_cuda_graph_replay_ms(tl_backend *be, int n) {
    cu_impl *ci = be->impl;
    cudaEvent_t e0, e1;
    if (!ci->gexec || n < 1 || cudaEventCreate(&e0) != cudaSuccess) return -1;
    if (cudaEventCreate(&e1) != cudaSuccess) return cudaEventDestroy(e0), -1;
    float ms = -1.f;
    int ok = cudaGraphLaunch(ci->gexec, ci->st) == cudaSuccess && cudaStreamSynchronize(ci->st) == cudaSuccess &&
             cudaEventRecord(e0, ci->st) == cudaSuccess; /* (one replay first: warm) */
    for (int i = 0; i < n && ok; i++) ok = cudaGraphLaunch(ci->gexec, ci->st) == cudaSuccess;
    ok = ok && cudaEventRecord(e1, ci->st) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess &&
         cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess;
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    return ok ? ms / n : -1;
}

tl_backend *tl_backend_cuda_new(float gpu_mem_util, tl_error *e) {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        cudaGetLastError();
        tl_errf(e, "no CUDA device (%s)", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        return NULL;
    }
    if (gpu_mem_util <= 0.f || gpu_mem_util > 1.f) gpu_mem_util = 0.9f;
    cu_impl *ci = tl_calloc(1, sizeof *ci);
    ci->util = gpu_mem_util;
    const char *gv = getenv("TL_CUDA_GEMV");
    ci->no_tiled = gv && !strcmp(gv, "fp32");
    const char *gg = getenv("TL_CUDA_GRAPH");
    ci->no_graph = gg && !strcmp(gg, "0");
    const char *gp = getenv("TL_CUDA_PROFILE");
    ci->prof_on = gp && !strcmp(gp, "1");
    ci->pmm = P_MATMUL;
    ci->prev_n = -1; /* no launched step yet */
    struct cudaDeviceProp prop;
    if (cudaSetDevice(0) != cudaSuccess || cudaGetDeviceProperties(&prop, 0) != cudaSuccess ||
        cudaStreamCreateWithFlags(&ci->st, cudaStreamNonBlocking) != cudaSuccess) {
        tl_errf(e, "cuda: cannot initialize device 0: %s", cudaGetErrorString(cudaGetLastError()));
        free(ci);
        return NULL;
    }
    if (cublasCreate(&ci->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(ci->blas, ci->st) != CUBLAS_STATUS_SUCCESS) {
        tl_errf(e, "cuda: cublasCreate failed");
        cudaStreamDestroy(ci->st);
        free(ci);
        return NULL;
    }
    ci->n_sm = prop.multiProcessorCount;
    snprintf(ci->dev_name, sizeof ci->dev_name, "%s", prop.name);
    tl_backend *be = tl_calloc(1, sizeof *be);
    be->name = "cuda";
    be->prepare = cu_prepare;
    be->kv_default_budget = cu_kv_default_budget;
    be->kv_alloc = cu_kv_alloc;
    be->kv_free = cu_kv_free;
    be->forward = cu_forward;
    be->forward_sample = cu_forward_sample;
    be->launch = cu_launch;
    be->collect = cu_collect;
    be->row_on_device = cu_row_on_device;
    be->penalties = 1;
    be->penalties_top = 1;
    be->collected_top = cu_collected_top;
    be->free = cu_free;
    be->impl = ci;
    return be;
}
#else
typedef int tl_cuda_backend_unused; /* built without CUDA: see backend/cuda_stub.c */
#endif

/* stop.c: stop strings over streamed text. A stop string can span token boundaries, so the longest
 * suffix of the text seen so far that is a proper prefix of some stop string is held back until the
 * next piece rules it in or out; emitted text therefore never contains any part of a match.
 * Invariant: pending holds fewer than max_len bytes between calls, and no match starts before it. */
#include "server/server.h"

void tl_stopper_init(tl_stopper *st, const char *const *stop, int n_stop) {
    memset(st, 0, sizeof *st);
    st->stop = stop;
    st->n_stop = n_stop;
    for (int i = 0; i < n_stop; i++) st->max_len = TL_MAX(st->max_len, strlen(stop[i]));
}

void tl_stopper_free(tl_stopper *st) { tl_strbuf_free(&st->pending); }

/* Length of the longest suffix of p[0..n) that is a proper prefix of s. */
static size_t overlap(const char *p, size_t n, const char *s, size_t ls) {
    size_t k = TL_MIN(n, ls - 1);
    for (; k > 0; k--)
        if (!memcmp(p + n - k, s, k)) return k;
    return 0;
}

int tl_stopper_push(tl_stopper *st, const char *text, size_t len, tl_strbuf *out) {
    if (st->matched) return 1;
    if (st->n_stop == 0) {
        tl_strbuf_append(out, text, len);
        return 0;
    }
    tl_strbuf_append(&st->pending, text, len);
    const char *p = st->pending.p;
    size_t n = st->pending.len;
    size_t first = n;
    for (int i = 0; i < st->n_stop; i++) {
        const char *hit = memmem(p, n, st->stop[i], strlen(st->stop[i]));
        if (hit && (size_t)(hit - p) < first) first = (size_t)(hit - p);
    }
    if (first < n) {
        tl_strbuf_append(out, p, first);
        st->pending.len = 0;
        st->matched = true;
        return 1;
    }
    size_t hold = 0;
    for (int i = 0; i < st->n_stop; i++) hold = TL_MAX(hold, overlap(p, n, st->stop[i], strlen(st->stop[i])));
    tl_strbuf_append(out, p, n - hold);
    memmove(st->pending.p, p + n - hold, hold);
    st->pending.len = hold;
    return 0;
}

void tl_stopper_flush(tl_stopper *st, tl_strbuf *out) {
    if (!st->matched && st->pending.len) tl_strbuf_append(out, st->pending.p, st->pending.len);
    st->pending.len = 0;
}

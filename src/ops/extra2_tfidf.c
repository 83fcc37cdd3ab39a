/* TfIdfVectorizer (opset 9): X [C] or [B, C] integers -> Y [O] or [B, O] float32,
 * O = max(ngram_indexes) + 1.
 *
 * The pool of n-grams lives in attributes: pool_int64s holds them back to back,
 * grouped by length (ngram_counts[i] is where the (i+1)-grams start), and the
 * j-th n-gram of the pool counts into column ngram_indexes[j]. An n-gram of
 * length n in [min_gram_length, max_gram_length] is found at (start, d) when
 * X[start + d*i] equals its i-th item for every i < n, with the items inside the
 * row; d runs over 1..max_skip_count+1 for n >= 2 and is 1 for unigrams (they
 * are not affected by skips). A pool n-gram listed twice counts only in the
 * column of its last listing (the reference's trie keeps the last id).
 *
 * Kernel IR has no constant arrays, so the kept n-grams are copied into tables
 * ordered by column (items, their start and length, and where each column's
 * n-grams start) and one kernel over Y counts, for each column, the matches of
 * its n-grams with nested reductions:
 *   Y[b, col] = weight(sum over q < count(col), d, start of
 *                      all over i < n_q of X[b, start + (d+1)*i] == item_q[i])
 * weight: TF the count, IDF weights[col] (or 1) when the count is positive,
 * TFIDF weights[col] (or 1) times the count.
 * String pools and inputs need string tensors in kernels and are refused. */
#include <string.h>

#include "ops/ops.h"

enum { MODE_TF, MODE_IDF, MODE_TFIDF };

typedef struct tfidf {
  int mode;
  int64_t min_n, max_n, skip, O;
  const int64_t *pool;
  int64_t n_pool;
  /* kept n-grams in column order */
  int64_t n_kept, *goff, *glen, *colptr, max_per_col, max_len;
  const float *w;
  int n_w;
} tfidf_t;

typedef struct gram {
  int64_t j, off, len, col;
} gram_t;

/* Orders n-grams by length, then items, then listing; equal n-grams end up adjacent. */
static int cmp_gram(const gram_t *a, const gram_t *b, const int64_t *pool) {
  if (a->len != b->len) return a->len < b->len ? -1 : 1;
  for (int64_t i = 0; i < a->len; i++) {
    int64_t x = pool[a->off + i], y = pool[b->off + i];
    if (x != y) return x < y ? -1 : 1;
  }
  return a->j < b->j ? -1 : a->j > b->j;
}

/* Bottom-up merge sort (qsort has no way to pass the pool without global state). */
static void sort_grams(gram_t *g, int64_t n, const int64_t *pool, fl_arena_t *a) {
  gram_t *tmp = fl_arena_alloc(a, sizeof(*tmp) * (size_t)(n + 1)), *src = g, *dst = tmp;
  for (int64_t w = 1; w < n; w *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * w) {
      int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
      while (i < mid && j < hi) dst[k++] = cmp_gram(&src[j], &src[i], pool) < 0 ? src[j++] : src[i++];
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    gram_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != g) memcpy(g, src, sizeof(*g) * (size_t)n);
}

static bool same_gram(const gram_t *a, const gram_t *b, const int64_t *pool) {
  return a->len == b->len && memcmp(pool + a->off, pool + b->off, sizeof(int64_t) * (size_t)a->len) == 0;
}

/* Reads the attributes and lays the kept n-grams out by column (arena memory). */
static flagos_status_t tfidf_plan(ops_ctx_t *c, tfidf_t *t) {
  const fir_node_t *n = c->node;
  memset(t, 0, sizeof(*t));
  const char *mode = fir_attr_string(n, "mode", NULL);
  if (!mode) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing required attribute 'mode'");
  if (strcmp(mode, "TF") == 0)
    t->mode = MODE_TF;
  else if (strcmp(mode, "IDF") == 0)
    t->mode = MODE_IDF;
  else if (strcmp(mode, "TFIDF") == 0)
    t->mode = MODE_TFIDF;
  else
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "mode '%s' is not TF, IDF or TFIDF", mode);
  t->min_n = fir_attr_int(n, "min_gram_length", -1);
  t->max_n = fir_attr_int(n, "max_gram_length", -1);
  t->skip = fir_attr_int(n, "max_skip_count", -1);
  if (t->min_n < 1 || t->max_n < t->min_n || t->skip < 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT,
                   "min_gram_length (%lld), max_gram_length (%lld) and max_skip_count (%lld) must be given with "
                   "1 <= min <= max and skips >= 0",
                   (long long)t->min_n, (long long)t->max_n, (long long)t->skip);
  const fir_attr_t *ps = fir_node_attr(n, "pool_strings");
  if (ps && ps->n > 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "pool_strings needs string tensors, which kernels do not support yet");
  const int64_t *counts, *indexes;
  int nc = fir_attr_ints(n, "ngram_counts", &counts), ni = fir_attr_ints(n, "ngram_indexes", &indexes);
  int np = fir_attr_ints(n, "pool_int64s", &t->pool);
  if (nc < 0 || ni < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "ngram_counts and ngram_indexes are required");
  if (np < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "pool_int64s is required");
  t->n_pool = np;
  t->n_w = fir_attr_floats(n, "weights", &t->w);
  if (t->n_w < 0) t->n_w = 0;
  for (int i = 0; i < ni; i++) {
    if (indexes[i] < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "ngram_indexes[%d] is negative", i);
    if (indexes[i] + 1 > t->O) t->O = indexes[i] + 1;
  }
  if (t->n_w > 0 && t->n_w < t->O)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "weights has %d entries for %lld output columns", t->n_w,
                   (long long)t->O);
  /* Enumerate the pool's n-grams, numbered over every length, keeping those in range. */
  int64_t total = 0;
  for (int i = 0; i < nc; i++) {
    int64_t st = counts[i], en = i + 1 < nc ? counts[i + 1] : np;
    if (st < 0 || en < st || en > np)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "ngram_counts[%d] = %lld is out of order or range", i,
                     (long long)st);
    total += (en - st) / (i + 1);
  }
  gram_t *g = fl_arena_alloc(c->arena, sizeof(*g) * (size_t)(total + 1));
  int64_t ng = 0, j = 0;
  for (int i = 0; i < nc; i++) {
    int64_t len = i + 1, st = counts[i], en = i + 1 < nc ? counts[i + 1] : np;
    for (int64_t q = 0; q < (en - st) / len; q++, j++) {
      if (len < t->min_n || len > t->max_n) continue;
      if (j >= ni)
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the pool has more n-grams than ngram_indexes (%d) lists", ni);
      g[ng++] = (gram_t){j, st + q * len, len, indexes[j]};
    }
  }
  /* Drop all but the last listing of a repeated n-gram. */
  sort_grams(g, ng, t->pool, c->arena);
  int64_t kept = 0;
  for (int64_t i = 0; i < ng; i++)
    if (i + 1 >= ng || !same_gram(&g[i], &g[i + 1], t->pool)) g[kept++] = g[i];
  t->n_kept = kept;
  t->colptr = fl_arena_alloc(c->arena, sizeof(int64_t) * (size_t)(t->O + 2));
  t->goff = fl_arena_alloc(c->arena, sizeof(int64_t) * (size_t)(kept + 1));
  t->glen = fl_arena_alloc(c->arena, sizeof(int64_t) * (size_t)(kept + 1));
  for (int64_t i = 0; i < kept; i++) {
    t->colptr[g[i].col + 1]++;
    if (g[i].len > t->max_len) t->max_len = g[i].len;
  }
  for (int64_t col = 0; col < t->O; col++) {
    if (t->colptr[col + 1] > t->max_per_col) t->max_per_col = t->colptr[col + 1];
    t->colptr[col + 1] += t->colptr[col];
  }
  int64_t *fill = fl_arena_memdup(c->arena, t->colptr, sizeof(int64_t) * (size_t)(t->O + 1));
  for (int64_t i = 0; i < kept; i++) {
    int64_t at = fill[g[i].col]++;
    t->goff[at] = g[i].off;
    t->glen[at] = g[i].len;
  }
  return NULL;
}

flagos_status_t ops_x2_tfidf_infer(ops_ctx_t *c) {
  if (c->n_in != 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects one input X");
  const ops_tensor_info_t *X = &c->in[0];
  if (X->dtype == FLAGOS_STRING)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "string input X needs string tensors, which kernels do not support yet");
  if (X->dtype != FLAGOS_INT32 && X->dtype != FLAGOS_INT64)
    return ops_err(c, FLAGOS_ERR_SHAPE, "X must be int32 or int64, got %s", flagos_dtype_name(X->dtype));
  if (X->rank != 1 && X->rank != 2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "X must be [C] or [B, C], got rank %d", X->rank);
  tfidf_t t;
  FL_TRY(tfidf_plan(c, &t));
  c->n_params = 0;
  int64_t dims[2] = {X->rank == 2 ? X->dims[0] : t.O, t.O};
  ops_set_out(c, 0, FLAGOS_FLOAT32, X->rank, dims);
  return NULL;
}

/* A temp of n entries filled by one kernel of constant stores (one entry at least). */
static int table_i64(ops_ctx_t *c, const char *suffix, int64_t n, const int64_t *v) {
  fl_arena_t *a = c->arena;
  kir_expr_t *len = kir_i64(a, n > 0 ? n : 1), *one = kir_i64(a, 1), *sp[1];
  int t = ops_temp(c, FLAGOS_INT64, 1, &len);
  kir_kernel_t *k = ops_kernel(c, suffix);
  int b = ops_buf_temp(c, k, t);
  kir_set_space(k, 1, &one, sp);
  for (int64_t i = 0; i < n; i++) {
    kir_expr_t *ix = kir_i64(a, i);
    kir_store(k, b, &ix, kir_i64(a, v[i]), NULL);
  }
  if (n <= 0) kir_store(k, b, sp, kir_i64(a, 0), NULL);
  return t;
}

static int table_f32(ops_ctx_t *c, const char *suffix, int64_t n, const float *v) {
  fl_arena_t *a = c->arena;
  kir_expr_t *len = kir_i64(a, n > 0 ? n : 1), *one = kir_i64(a, 1), *sp[1];
  int t = ops_temp(c, FLAGOS_FLOAT32, 1, &len);
  kir_kernel_t *k = ops_kernel(c, suffix);
  int b = ops_buf_temp(c, k, t);
  kir_set_space(k, 1, &one, sp);
  for (int64_t i = 0; i < n; i++) {
    kir_expr_t *ix = kir_i64(a, i);
    kir_store(k, b, &ix, kir_const(a, FLAGOS_FLOAT32, (double)v[i]), NULL);
  }
  if (n <= 0) kir_store(k, b, sp, kir_const(a, FLAGOS_FLOAT32, 0.0), NULL);
  return t;
}

flagos_status_t ops_x2_tfidf_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  tfidf_t t;
  FL_TRY(tfidf_plan(c, &t));
  int r = c->in[0].rank;
  kir_expr_t *v[2];
  kir_expr_t *zero = kir_i64(a, 0), *one = kir_i64(a, 1), *cnt;
  int tp = -1, to = -1, tl = -1, tc = -1, tw = -1;
  if (t.n_kept > 0) {
    tp = table_i64(c, "pool", t.n_pool, t.pool);
    to = table_i64(c, "gram_start", t.n_kept, t.goff);
    tl = table_i64(c, "gram_len", t.n_kept, t.glen);
    tc = table_i64(c, "col_start", t.O + 1, t.colptr);
  }
  if (t.n_w > 0 && t.mode != MODE_TF) tw = table_f32(c, "weights", t.n_w, t.w);
  kir_kernel_t *kk = ops_out_kernel(c, 0, "count", v);
  kir_expr_t *b = r == 2 ? v[0] : NULL, *col = v[r - 1];
  if (t.n_kept == 0) {
    cnt = zero;
  } else {
    int bx = ops_buf_in(c, kk, 0), bp = ops_buf_temp(c, kk, tp), bo = ops_buf_temp(c, kk, to);
    int bl = ops_buf_temp(c, kk, tl), bc = ops_buf_temp(c, kk, tc);
    kir_expr_t *C = ops_in_dim(c, 0, r - 1);
    int qv = kir_new_var(kk), dv = kir_new_var(kk), sv = kir_new_var(kk), iv = kir_new_var(kk);
    kir_expr_t *q = kir_var(a, qv), *d = kir_add(a, kir_var(a, dv), one), *st = kir_var(a, sv), *i = kir_var(a, iv);
    kir_expr_t *c0 = kir_load(kk, bc, &col), *col1 = kir_add(a, col, one);
    kir_expr_t *ncol = kir_sub(a, kir_load(kk, bc, &col1), c0);
    kir_expr_t *gi = kir_add(a, c0, q);
    kir_expr_t *len = kir_load(kk, bl, &gi), *off = kir_load(kk, bo, &gi);
    /* Item i matches (or lies past the n-gram's end). */
    kir_expr_t *pos = kir_add(a, st, kir_mul(a, d, i)), *pi = kir_add(a, off, i);
    kir_expr_t *xi[2] = {b, pos};
    kir_expr_t *x = kir_cast(a, FLAGOS_INT64, kir_load(kk, bx, r == 2 ? xi : xi + 1));
    kir_expr_t *item_ok =
        kir_select(a, kir_bin(a, KIR_GE, i, len), kir_bool(a, true), kir_bin(a, KIR_EQ, x, kir_load(kk, bp, &pi)));
    kir_expr_t *lmax = kir_i64(a, t.max_len);
    kir_expr_t *match = kir_reduce(a, KIR_RALL, 1, &iv, &lmax, item_ok);
    /* The whole n-gram inside the row; unigrams only at d = 1. */
    kir_expr_t *last = kir_add(a, st, kir_mul(a, d, kir_sub(a, len, one)));
    kir_expr_t *fits =
        kir_bin(a, KIR_AND, kir_bin(a, KIR_LT, last, C),
                kir_bin(a, KIR_OR, kir_bin(a, KIR_EQ, kir_var(a, dv), zero), kir_bin(a, KIR_GT, len, one)));
    /* SELECT is lazy: nothing is loaded for a q past the column's n-grams. */
    kir_expr_t *body =
        kir_select(a, kir_bin(a, KIR_LT, q, ncol), kir_select(a, fits, kir_select(a, match, one, zero), zero), zero);
    int rv[3] = {qv, dv, sv};
    kir_expr_t *ext[3] = {kir_i64(a, t.max_per_col), kir_i64(a, t.skip + 1), C};
    cnt = kir_reduce(a, KIR_RSUM, 3, rv, ext, body);
  }
  kir_expr_t *y = kir_cast(a, FLAGOS_FLOAT32, cnt);
  kir_expr_t *w = tw >= 0 ? kir_load(kk, ops_buf_temp(c, kk, tw), &col) : kir_const(a, FLAGOS_FLOAT32, 1.0);
  kir_expr_t *f0 = kir_const(a, FLAGOS_FLOAT32, 0.0);
  if (t.mode == MODE_IDF)
    y = kir_select(a, kir_bin(a, KIR_GT, cnt, zero), w, f0);
  else if (t.mode == MODE_TFIDF && tw >= 0)
    y = kir_bin(a, KIR_MUL, w, y);
  kir_store(kk, 0, v, y, NULL);
  return NULL;
}

double ops_x2_tfidf_flops(const ops_ctx_t *c) {
  /* One comparison per item tried: rows x columns x start positions, roughly. */
  const ops_tensor_info_t *X = &c->in[0];
  double rows = X->rank == 2 ? (double)X->dims[0] : 1.0, C = (double)X->dims[X->rank - 1];
  return rows * C * (double)(c->out[0].dims[c->out[0].rank - 1]);
}

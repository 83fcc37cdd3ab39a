/* NonMaxSuppression (boxes, scores, max_output_boxes_per_class, iou_threshold,
 * score_threshold) -> selected_indices [num_selected, 3] int64.
 *
 * Per batch b and class c, boxes are visited by decreasing score (ties: lower
 * box index first); a box is kept when its score passes score_threshold, fewer
 * than max_output_boxes_per_class boxes were kept before it, and no kept box
 * overlaps it with IoU > iou_threshold. Rows are (b, c, box) in (b, c, visit)
 * order. Boxes with a NaN score are never kept.
 *
 * num_selected decides the output shape, so infer runs the same greedy pass on
 * the host from the input values (value_inputs: all five) only to count the
 * kept boxes; the kernels then find which boxes they are, with no limit on how
 * many:
 *   rank[b,c,i] = #{ j : box j is visited before box i }         O(N^2)
 *   ord[b,c,r]  = the box whose rank is r                          O(N^2)
 *   kept[b,c,:], cnt[b,c] = the boxes kept so far and their number: a serial
 *                 kernel visits ord[0..N) in turn and tests each against the
 *                 boxes kept before it                             O(N * kept)
 *   off[b,c]    = kept boxes of every (b, c) before this one
 *   out[off + q] = (b, c, kept[b,c,q]) for q < cnt[b,c]
 * Host and kernels compute IoU with the same operations in the same type (f32
 * for f16/f32 boxes, f64 for f64), so they agree on every comparison. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/elementwise.h"

enum { IN_BOXES, IN_SCORES, IN_MAX, IN_IOU, IN_SCORE_THR };

/* An optional scalar input that is present and holds a value (an empty tensor
 * counts as absent, as in ONNX's reference). */
static bool scalar_given(const ops_ctx_t *c, int k) { return ops_has_in(c, k) && c->in[k].numel != 0; }

static flagos_status_t check_scalar_in(ops_ctx_t *c, int k, const char *what, uint64_t allowed) {
  if (!ops_has_in(c, k)) return NULL;
  FL_TRY(ops_ew_check_in(c, k, allowed));
  const ops_tensor_info_t *t = &c->in[k];
  if (t->rank > 1 || t->numel > 1)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' must hold a single value, has %lld", what, (long long)t->numel);
  return NULL;
}

/* ---- the host pass that counts kept boxes ---- */
typedef struct nms_host {
  bool f64, center;
  double iou_thr;
} nms_host_t;

/* Rounds to the compute type, so double arithmetic followed by rd() gives
 * exactly the f32 result of each operation. */
static double rd(const nms_host_t *h, double x) { return h->f64 ? x : (double)(float)x; }

/* min and max that propagate NaN, like the kernels' KIR_MIN / KIR_MAX */
static double nmin(double p, double q) { return isnan(p) || isnan(q) ? NAN : p < q ? p : q; }
static double nmax(double p, double q) { return isnan(p) || isnan(q) ? NAN : p < q ? q : p; }

static void extent(const nms_host_t *h, const double *bx, int lo_k, int size_k, double *lo, double *hi) {
  if (h->center) {
    double half = rd(h, bx[size_k] / 2);
    *lo = rd(h, bx[lo_k] - half);
    *hi = rd(h, bx[lo_k] + half);
  } else {
    *lo = nmin(bx[lo_k], bx[size_k]);
    *hi = nmax(bx[lo_k], bx[size_k]);
  }
}

static bool host_suppress(const nms_host_t *h, const double *a, const double *b) {
  double xa0, xa1, ya0, ya1, xb0, xb1, yb0, yb1;
  /* corners: [y1, x1, y2, x2]; centers: [x, y, w, h] */
  extent(h, a, h->center ? 0 : 1, h->center ? 2 : 3, &xa0, &xa1);
  extent(h, a, h->center ? 1 : 0, h->center ? 3 : 2, &ya0, &ya1);
  extent(h, b, h->center ? 0 : 1, h->center ? 2 : 3, &xb0, &xb1);
  extent(h, b, h->center ? 1 : 0, h->center ? 3 : 2, &yb0, &yb1);
  double ix0 = nmax(xa0, xb0), ix1 = nmin(xa1, xb1), iy0 = nmax(ya0, yb0), iy1 = nmin(ya1, yb1);
  if (!(ix1 > ix0) || !(iy1 > iy0)) return false;
  double inter = rd(h, rd(h, ix1 - ix0) * rd(h, iy1 - iy0));
  double area_a = rd(h, rd(h, xa1 - xa0) * rd(h, ya1 - ya0));
  double area_b = rd(h, rd(h, xb1 - xb0) * rd(h, yb1 - yb0));
  double uni = rd(h, rd(h, area_a + area_b) - inter);
  if (!(inter > 0) || !(area_a > 0) || !(area_b > 0) || !(uni > 0)) return false;
  return rd(h, inter / uni) > h->iou_thr;
}

typedef struct nms_item {
  double score; /* NaN mapped to -inf, like the kernels' visiting order */
  int64_t idx;
} nms_item_t;

static int item_cmp(const void *pa, const void *pb) {
  const nms_item_t *a = pa, *b = pb;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static flagos_status_t host_count(const ops_ctx_t *c, bool center, int64_t *count) {
  const ops_tensor_info_t *bx = &c->in[IN_BOXES];
  int64_t B = bx->dims[0], N = bx->dims[1], C = c->in[IN_SCORES].dims[1];
  nms_host_t h = {.f64 = bx->dtype == FLAGOS_FLOAT64, .center = center};
  int64_t max_out = scalar_given(c, IN_MAX) ? ops_in_int(c, IN_MAX, 0) : 0;
  h.iou_thr = scalar_given(c, IN_IOU) ? rd(&h, ops_in_float(c, IN_IOU, 0)) : 0.0;
  bool has_st = scalar_given(c, IN_SCORE_THR);
  double st = has_st ? rd(&h, ops_in_float(c, IN_SCORE_THR, 0)) : 0.0;
  *count = 0;
  if (max_out <= 0 || N == 0) return NULL;
  nms_item_t *items = malloc(sizeof(*items) * (size_t)N);
  double *boxes = malloc(sizeof(*boxes) * 4 * (size_t)N);
  int64_t *kept = malloc(sizeof(*kept) * (size_t)N);
  if (!items || !boxes || !kept) {
    free(items);
    free(boxes);
    free(kept);
    return ops_err(c, FLAGOS_ERR_OUT_OF_MEMORY, "out of memory counting the selected boxes of %lld", (long long)N);
  }
  for (int64_t b = 0; b < B; b++) {
    for (int64_t i = 0; i < 4 * N; i++) boxes[i] = rd(&h, ops_in_float(c, IN_BOXES, b * N * 4 + i));
    for (int64_t cl = 0; cl < C; cl++) {
      for (int64_t i = 0; i < N; i++) {
        double s = rd(&h, ops_in_float(c, IN_SCORES, (b * C + cl) * N + i));
        items[i].score = isnan(s) ? -INFINITY : s;
        items[i].idx = i;
      }
      qsort(items, (size_t)N, sizeof(*items), item_cmp);
      int64_t n_kept = 0;
      for (int64_t r = 0; r < N && n_kept < max_out; r++) {
        int64_t i = items[r].idx;
        double s = rd(&h, ops_in_float(c, IN_SCORES, (b * C + cl) * N + i));
        if (isnan(s) || (has_st && !(s > st))) continue;
        bool keep = true;
        for (int64_t q = 0; q < n_kept && keep; q++)
          if (host_suppress(&h, &boxes[4 * kept[q]], &boxes[4 * i])) keep = false;
        if (keep) kept[n_kept++] = i;
      }
      *count += n_kept;
    }
  }
  free(items);
  free(boxes);
  free(kept);
  return NULL;
}

static flagos_status_t infer_nms(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 2, 5));
  uint64_t fl = OPS_DT(FLAGOS_FLOAT16) | OPS_DT(FLAGOS_FLOAT32) | OPS_DT(FLAGOS_FLOAT64);
  FL_TRY(ops_ew_check_in(c, IN_BOXES, fl));
  FL_TRY(ops_ew_check_in(c, IN_SCORES, fl));
  const ops_tensor_info_t *bx = &c->in[IN_BOXES], *sc = &c->in[IN_SCORES];
  if (bx->rank != 3 || (bx->dims[2] >= 0 && bx->dims[2] != 4))
    return ops_err(c, FLAGOS_ERR_SHAPE, "boxes must be [num_batches, spatial_dimension, 4]");
  if (sc->rank != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "scores must be [num_batches, num_classes, spatial_dimension]");
  if (sc->dtype != bx->dtype)
    return ops_err(c, FLAGOS_ERR_SHAPE, "scores are %s but boxes are %s", flagos_dtype_name(sc->dtype),
                   flagos_dtype_name(bx->dtype));
  if ((bx->dims[0] >= 0 && sc->dims[0] >= 0 && bx->dims[0] != sc->dims[0]) ||
      (bx->dims[1] >= 0 && sc->dims[2] >= 0 && bx->dims[1] != sc->dims[2]))
    return ops_err(c, FLAGOS_ERR_SHAPE, "boxes [%lld, %lld, 4] and scores [%lld, %lld, %lld] disagree",
                   (long long)bx->dims[0], (long long)bx->dims[1], (long long)sc->dims[0], (long long)sc->dims[1],
                   (long long)sc->dims[2]);
  FL_TRY(check_scalar_in(c, IN_MAX, "max_output_boxes_per_class", OPS_DT(FLAGOS_INT64)));
  FL_TRY(check_scalar_in(c, IN_IOU, "iou_threshold", OPS_DT(FLAGOS_FLOAT32) | fl));
  FL_TRY(check_scalar_in(c, IN_SCORE_THR, "score_threshold", OPS_DT(FLAGOS_FLOAT32) | fl));
  int64_t center = fir_attr_int(c->node, "center_point_box", 0);
  if (center != 0 && center != 1)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "center_point_box must be 0 or 1, got %lld", (long long)center);
  if (scalar_given(c, IN_IOU) && c->in[IN_IOU].value) {
    double t = ops_in_float(c, IN_IOU, 0);
    if (!(t >= 0 && t <= 1))
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "iou_threshold must lie in [0, 1], got %g", t);
  }
  bool known = bx->value && sc->value && bx->numel >= 0 && sc->numel >= 0;
  for (int k = IN_MAX; k <= IN_SCORE_THR; k++)
    if (ops_has_in(c, k) && (!c->in[k].value || c->in[k].numel < 0)) known = false;
  int64_t d[2] = {-1, 3};
  if (known) FL_TRY(host_count(c, center != 0, &d[0]));
  ops_set_out(c, 0, FLAGOS_INT64, 2, d);
  return NULL;
}

/* ---- lowering ---- */
typedef struct nms_low {
  ops_ctx_t *c;
  fl_arena_t *a;
  flagos_dtype_t cd;
  bool center;
  kir_expr_t *B, *C, *N;
} nms_low_t;

/* Element 0 of optional scalar input k as dtype dt, or dflt when absent or empty. */
static kir_expr_t *scalar_in(nms_low_t *L, kir_kernel_t *k, int in, flagos_dtype_t dt, kir_expr_t *dflt) {
  ops_ctx_t *c = L->c;
  if (!ops_has_in(c, in) || c->in[in].numel == 0) return dflt;
  kir_expr_t *zero[1] = {kir_i64(L->a, 0)};
  kir_expr_t *v = kir_cast(L->a, dt, kir_load(k, ops_buf_in(c, k, in), zero));
  if (c->in[in].rank == 0 || c->in[in].numel == 1) return v;
  return kir_select(L->a, kir_bin(L->a, KIR_GT, ops_in_dim(c, in, 0), kir_i64(L->a, 0)), v, dflt);
}

static kir_expr_t *score_key(nms_low_t *L, kir_expr_t *s) {
  return kir_select(L->a, kir_un(L->a, KIR_ISNAN, s), kir_const(L->a, L->cd, -INFINITY), s);
}

static void box_extent(nms_low_t *L, kir_expr_t *const *bx, int lo_k, int size_k, kir_expr_t **lo, kir_expr_t **hi) {
  fl_arena_t *a = L->a;
  if (L->center) {
    kir_expr_t *half = kir_bin(a, KIR_DIV, bx[size_k], kir_const(a, L->cd, 2.0));
    *lo = kir_bin(a, KIR_SUB, bx[lo_k], half);
    *hi = kir_bin(a, KIR_ADD, bx[lo_k], half);
  } else {
    *lo = kir_bin(a, KIR_MIN, bx[lo_k], bx[size_k]);
    *hi = kir_bin(a, KIR_MAX, bx[lo_k], bx[size_k]);
  }
}

/* IoU(box a, box b) > thr, with the degenerate cases of the spec giving false. */
static kir_expr_t *suppress(nms_low_t *L, kir_expr_t *const *ba, kir_expr_t *const *bb, kir_expr_t *thr) {
  fl_arena_t *a = L->a;
  int xl = L->center ? 0 : 1, xs = L->center ? 2 : 3, yl = L->center ? 1 : 0, ys = L->center ? 3 : 2;
  kir_expr_t *xa0, *xa1, *ya0, *ya1, *xb0, *xb1, *yb0, *yb1;
  box_extent(L, ba, xl, xs, &xa0, &xa1);
  box_extent(L, ba, yl, ys, &ya0, &ya1);
  box_extent(L, bb, xl, xs, &xb0, &xb1);
  box_extent(L, bb, yl, ys, &yb0, &yb1);
  kir_expr_t *ix0 = kir_bin(a, KIR_MAX, xa0, xb0), *ix1 = kir_bin(a, KIR_MIN, xa1, xb1);
  kir_expr_t *iy0 = kir_bin(a, KIR_MAX, ya0, yb0), *iy1 = kir_bin(a, KIR_MIN, ya1, yb1);
  kir_expr_t *zero = kir_const(a, L->cd, 0.0);
  kir_expr_t *inter = kir_bin(a, KIR_MUL, kir_bin(a, KIR_SUB, ix1, ix0), kir_bin(a, KIR_SUB, iy1, iy0));
  kir_expr_t *area_a = kir_bin(a, KIR_MUL, kir_bin(a, KIR_SUB, xa1, xa0), kir_bin(a, KIR_SUB, ya1, ya0));
  kir_expr_t *area_b = kir_bin(a, KIR_MUL, kir_bin(a, KIR_SUB, xb1, xb0), kir_bin(a, KIR_SUB, yb1, yb0));
  kir_expr_t *uni = kir_bin(a, KIR_SUB, kir_bin(a, KIR_ADD, area_a, area_b), inter);
  kir_expr_t *ok = kir_bin(a, KIR_AND, kir_bin(a, KIR_GT, ix1, ix0), kir_bin(a, KIR_GT, iy1, iy0));
  ok = kir_bin(a, KIR_AND, ok, kir_bin(a, KIR_GT, inter, zero));
  ok = kir_bin(a, KIR_AND, ok, kir_bin(a, KIR_AND, kir_bin(a, KIR_GT, area_a, zero), kir_bin(a, KIR_GT, area_b, zero)));
  ok = kir_bin(a, KIR_AND, ok, kir_bin(a, KIR_GT, uni, zero));
  return kir_select(a, ok, kir_bin(a, KIR_GT, kir_bin(a, KIR_DIV, inter, uni), thr), kir_bool(a, false));
}

/* The four coordinates of box `i` of batch b, in the compute type. */
static void load_box(nms_low_t *L, kir_kernel_t *k, int bb, kir_expr_t *b, kir_expr_t *i, kir_expr_t **out) {
  for (int q = 0; q < 4; q++) {
    kir_expr_t *idx[3] = {b, i, kir_i64(L->a, q)};
    out[q] = kir_cast(L->a, L->cd, kir_load(k, bb, idx));
  }
}

static kir_kernel_t *temp_kernel(nms_low_t *L, int t, const char *suffix, kir_expr_t **v, int *tb) {
  kir_kernel_t *k = ops_kernel(L->c, suffix);
  *tb = ops_buf_temp(L->c, k, t);
  kir_set_space(k, k->bufs[*tb].rank, k->bufs[*tb].dims, v);
  return k;
}

static flagos_status_t lower_nms(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  nms_low_t L = {.c = c, .a = a, .center = fir_attr_int(c->node, "center_point_box", 0) != 0};
  L.cd = c->in[IN_BOXES].dtype == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  L.B = ops_in_dim(c, IN_BOXES, 0);
  L.N = ops_in_dim(c, IN_BOXES, 1);
  L.C = ops_in_dim(c, IN_SCORES, 1);
  kir_expr_t *bcn[3] = {L.B, L.C, L.N}, *v[3], *idx[3];
  kir_expr_t *zero = kir_i64(a, 0);

  /* rank: boxes visited before box v[2] */
  int trank = ops_temp(c, FLAGOS_INT64, 3, bcn), tb;
  kir_kernel_t *k = temp_kernel(&L, trank, "rank", v, &tb);
  int sb = ops_buf_in(c, k, IN_SCORES);
  int jv = kir_new_var(k);
  kir_expr_t *j = kir_var(a, jv);
  idx[0] = v[0];
  idx[1] = v[1];
  idx[2] = j;
  kir_expr_t *si = score_key(&L, kir_cast(a, L.cd, kir_load(k, sb, v)));
  kir_expr_t *sj = score_key(&L, kir_cast(a, L.cd, kir_load(k, sb, idx)));
  kir_expr_t *before = kir_bin(a, KIR_OR, kir_bin(a, KIR_GT, sj, si),
                               kir_bin(a, KIR_AND, kir_bin(a, KIR_EQ, sj, si), kir_bin(a, KIR_LT, j, v[2])));
  kir_store(k, tb, v, kir_reduce(a, KIR_RSUM, 1, &jv, &L.N, kir_cast(a, FLAGOS_INT64, before)), NULL);

  /* ord: the box of rank v[2] (exactly one matches) */
  int tord = ops_temp(c, FLAGOS_INT64, 3, bcn);
  k = temp_kernel(&L, tord, "order", v, &tb);
  int rb = ops_buf_temp(c, k, trank);
  jv = kir_new_var(k);
  j = kir_var(a, jv);
  idx[2] = j;
  kir_expr_t *hit = kir_bin(a, KIR_EQ, kir_load(k, rb, idx), v[2]);
  kir_store(k, tb, v, kir_reduce(a, KIR_RSUM, 1, &jv, &L.N, kir_select(a, hit, j, zero)), NULL);

  /* cnt[b,c] = 0: the running count of kept boxes */
  kir_expr_t *bc[2] = {L.B, L.C};
  int tcnt = ops_temp(c, FLAGOS_INT64, 2, bc);
  k = temp_kernel(&L, tcnt, "init", v, &tb);
  kir_store(k, tb, v, zero, NULL);

  /* The greedy pass, in visiting order: box i = ord[r] is kept when it passes the
   * score test, there is room, and none of the n boxes kept so far overlaps it;
   * kept boxes are appended to kept[b,c,:]. Each visit reads what earlier visits
   * stored, so the kernel is serial; a visit costs O(kept), not O(N). */
  int tkept = ops_temp(c, FLAGOS_INT64, 3, bcn);
  k = ops_kernel(c, "greedy");
  kir_set_space(k, 3, bcn, v);
  k->serial = true;
  int cb = ops_buf_temp(c, k, tcnt), kb = ops_buf_temp(c, k, tkept);
  int ob = ops_buf_temp(c, k, tord), bb = ops_buf_in(c, k, IN_BOXES), sb2 = ops_buf_in(c, k, IN_SCORES);
  kir_expr_t *max_out = scalar_in(&L, k, IN_MAX, FLAGOS_INT64, zero);
  kir_expr_t *thr = scalar_in(&L, k, IN_IOU, L.cd, kir_const(a, L.cd, 0.0));
  kir_expr_t *i = kir_load(k, ob, v);
  idx[2] = i;
  kir_expr_t *s = kir_cast(a, L.cd, kir_load(k, sb2, idx));
  kir_expr_t *cand = kir_un(a, KIR_NOT, kir_un(a, KIR_ISNAN, s));
  if (scalar_given(c, IN_SCORE_THR)) {
    kir_expr_t *st = scalar_in(&L, k, IN_SCORE_THR, L.cd, kir_const(a, L.cd, -INFINITY));
    cand = kir_bin(a, KIR_AND, cand, kir_bin(a, KIR_GT, s, st));
  }
  kir_expr_t *n_kept = kir_load(k, cb, v);
  kir_expr_t *bi[4], *bq[4];
  load_box(&L, k, bb, v[0], i, bi);
  int qv = kir_new_var(k);
  kir_expr_t *qidx[3] = {v[0], v[1], kir_var(a, qv)};
  load_box(&L, k, bb, v[0], kir_load(k, kb, qidx), bq);
  kir_expr_t *suppressed = kir_reduce(a, KIR_RANY, 1, &qv, &n_kept, suppress(&L, bq, bi, thr));
  kir_expr_t *room = kir_bin(a, KIR_LT, n_kept, max_out);
  kir_expr_t *keep = kir_select(a, cand, kir_select(a, room, kir_un(a, KIR_NOT, suppressed), kir_bool(a, false)),
                                kir_bool(a, false));
  kir_expr_t *at[3] = {v[0], v[1], n_kept};
  kir_store(k, kb, at, i, keep);
  kir_store(k, cb, v, kir_add(a, n_kept, kir_cast(a, FLAGOS_INT64, keep)), NULL);

  /* off: kept boxes of every (b', c') that comes before (b, c) */
  int toff = ops_temp(c, FLAGOS_INT64, 2, bc);
  k = temp_kernel(&L, toff, "offset", v, &tb);
  cb = ops_buf_temp(c, k, tcnt);
  jv = kir_new_var(k);
  j = kir_var(a, jv);
  kir_expr_t *bc_total = kir_mul(a, L.B, L.C), *flat = kir_add(a, kir_mul(a, v[0], L.C), v[1]);
  kir_expr_t *cidx[2] = {kir_bin(a, KIR_DIV, j, L.C), kir_bin(a, KIR_MOD, j, L.C)};
  kir_store(k, tb, v,
            kir_reduce(a, KIR_RSUM, 1, &jv, &bc_total, kir_select(a, kir_bin(a, KIR_LT, j, flat), kir_load(k, cb, cidx), zero)),
            NULL);

  /* rows of the output: out[off[b,c] + q] = (b, c, kept[b,c,q]) for q < cnt[b,c] */
  k = ops_kernel(c, "write");
  kir_set_space(k, 3, bcn, v);
  int yb = ops_buf_out(c, k, 0);
  cb = ops_buf_temp(c, k, tcnt);
  kb = ops_buf_temp(c, k, tkept);
  int fb = ops_buf_temp(c, k, toff);
  kir_expr_t *row = kir_add(a, kir_load(k, fb, v), v[2]);
  kir_expr_t *ok = kir_bin(a, KIR_AND, kir_bin(a, KIR_LT, v[2], kir_load(k, cb, v)),
                           kir_bin(a, KIR_LT, row, ops_out_dim(c, 0, 0)));
  kir_expr_t *vals[3] = {v[0], v[1], kir_load(k, kb, v)};
  for (int col = 0; col < 3; col++) {
    kir_expr_t *yidx[2] = {row, kir_i64(a, col)};
    kir_store(k, yb, yidx, vals[col], ok);
  }
  return NULL;
}

static double flops_nms(const ops_ctx_t *c) {
  const ops_tensor_info_t *sc = &c->in[IN_SCORES];
  if (sc->numel < 0) return 0;
  /* the pairwise passes dominate: ranking and the IoU tests */
  return (double)sc->numel * (double)sc->dims[2] * 24.0;
}

const ops_def_t ops_family_extra1[] = {
    {.op_type = "NonMaxSuppression", .domain = "", .value_inputs = 0x1F, .infer = infer_nms, .lower = lower_nms,
     .flops = flops_nms},
    {.op_type = NULL},
};

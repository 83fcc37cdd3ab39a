/* Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
 *
 * Both pick, for each sample position (n, d1, ...), the log-probability of the
 * target class t: loss = -w[t] * logp[n, t, d...], 0 where t == ignore_index.
 * reduction "none" keeps the [N, d...] shape; "sum" adds; "mean" divides by the
 * sum of the weights of the non-ignored targets (their count without weights).
 * The target is only used as an index when it is not ignored (lazy select), so
 * an out-of-range ignore_index is safe. */
#include <string.h>

#include "ops/reduce_common.h"

typedef enum loss_red { LOSS_NONE, LOSS_SUM, LOSS_MEAN } loss_red_t;

static bool out_wanted(const ops_ctx_t *c, int k) { return k < c->n_out && c->node->outputs[k] != NULL; }

static flagos_status_t loss_reduction(const ops_ctx_t *c, loss_red_t *out) {
  const char *r = fir_attr_string(c->node, "reduction", "mean");
  if (strcmp(r, "none") == 0)
    *out = LOSS_NONE;
  else if (strcmp(r, "sum") == 0)
    *out = LOSS_SUM;
  else if (strcmp(r, "mean") == 0)
    *out = LOSS_MEAN;
  else
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'reduction' must be none, sum or mean, is '%s'", r);
  return NULL;
}

/* Shared checks: input [N, C, d...] float, target [N, d...] int, weight [C] float. */
static flagos_status_t loss_infer(ops_ctx_t *c, bool sce) {
  const char *in_name = sce ? "scores" : "input", *t_name = sce ? "labels" : "target";
  if (c->n_in < 2 || !ops_has_in(c, 0) || !ops_has_in(c, 1))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects inputs '%s' and '%s'", in_name, t_name);
  const ops_tensor_info_t *x = &c->in[0], *t = &c->in[1];
  if (x->rank < 0 || t->rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "inputs of unknown rank");
  if (!flagos_dtype_is_float(x->dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' must be float, is %s", in_name, flagos_dtype_name(x->dtype));
  if (t->dtype != FLAGOS_INT32 && t->dtype != FLAGOS_INT64)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' must be int32 or int64, is %s", t_name,
                   flagos_dtype_name(t->dtype));
  if (x->rank < 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' must have rank >= 2 (N, C, ...)", in_name);
  if (t->rank != x->rank - 1)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input '%s' must have rank %d, has %d", t_name, x->rank - 1, t->rank);
  for (int i = 0; i < t->rank; i++) {
    int64_t xd = x->dims[i == 0 ? 0 : i + 1], td = t->dims[i];
    if (xd >= 0 && td >= 0 && xd != td)
      return ops_err(c, FLAGOS_ERR_SHAPE, "'%s' dim %d is %lld, '%s' has %lld", t_name, i, (long long)td, in_name,
                     (long long)xd);
  }
  if (ops_has_in(c, 2)) {
    const ops_tensor_info_t *w = &c->in[2];
    if (w->rank != 1 || w->dtype != x->dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input 'weights' must be 1-D of the input's dtype");
    if (w->dims[0] >= 0 && x->dims[1] >= 0 && w->dims[0] != x->dims[1])
      return ops_err(c, FLAGOS_ERR_SHAPE, "input 'weights' has %lld entries for %lld classes", (long long)w->dims[0],
                     (long long)x->dims[1]);
  }
  loss_red_t red;
  FL_TRY(loss_reduction(c, &red));
  if (red == LOSS_NONE)
    ops_set_out(c, 0, x->dtype, t->rank, t->dims);
  else
    ops_set_out(c, 0, x->dtype, 0, NULL);
  if (sce && out_wanted(c, 1)) ops_set_out(c, 1, x->dtype, x->rank, x->dims);
  return NULL;
}

static flagos_status_t nll_infer(ops_ctx_t *c) { return loss_infer(c, false); }
static flagos_status_t sce_infer(ops_ctx_t *c) { return loss_infer(c, true); }

/* Per-kernel view of the buffers the loss terms read. */
typedef struct loss_bufs {
  int x, t, w; /* w = -1 without weights */
  int lse; /* SCE: temp buffer of log-sum-exp per position, else -1 */
  flagos_dtype_t acc;
} loss_bufs_t;

/* Log-probability of class `cls` at target position pos[0..rank-1] = (n, d...). */
static kir_expr_t *logp_at(ops_ctx_t *c, kir_kernel_t *k, const loss_bufs_t *b, kir_expr_t *const *pos,
                           kir_expr_t *cls) {
  int xr = c->in[0].rank;
  kir_expr_t *xi[OPS_MAX_RANK];
  xi[0] = pos[0];
  xi[1] = cls;
  for (int i = 2; i < xr; i++)
    xi[i] = pos[i - 1];
  kir_expr_t *lp = ops_red_load(c, k, b->x, xi, b->acc);
  if (b->lse >= 0) {
    xi[1] = kir_i64(c->arena, 0);
    lp = kir_bin(c->arena, KIR_SUB, lp, kir_load(k, b->lse, xi));
  }
  return lp;
}

/* The (loss, weight) terms at target position pos; ignored positions give 0 for both. */
static void loss_terms(ops_ctx_t *c, kir_kernel_t *k, const loss_bufs_t *b, kir_expr_t *const *pos, kir_expr_t **loss,
                       kir_expr_t **weight) {
  fl_arena_t *a = c->arena;
  kir_expr_t *tgt = kir_cast(a, FLAGOS_INT64, kir_load(k, b->t, pos));
  kir_expr_t *zero = ops_red_fconst(c, b->acc, 0);
  kir_expr_t *w = b->w >= 0 ? ops_red_load(c, k, b->w, &tgt, b->acc) : ops_red_fconst(c, b->acc, 1);
  kir_expr_t *l = kir_un(a, KIR_NEG, kir_bin(a, KIR_MUL, logp_at(c, k, b, pos, tgt), w));
  const fir_attr_t *ii = fir_node_attr(c->node, "ignore_index");
  if (ii) {
    kir_expr_t *ign = kir_bin(a, KIR_EQ, tgt, kir_i64(a, ii->i));
    l = kir_select(a, ign, zero, l);
    w = kir_select(a, ign, zero, w);
  }
  *loss = l;
  *weight = w;
}

static flagos_status_t loss_lower(ops_ctx_t *c, bool sce) {
  fl_arena_t *a = c->arena;
  int xr = c->in[0].rank, tr = c->in[1].rank;
  loss_red_t red;
  FL_TRY(loss_reduction(c, &red));
  flagos_dtype_t acc = ops_red_acc_dtype(c->in[0].dtype, true);
  kir_expr_t *v[OPS_MAX_RANK], *ki[OPS_MAX_RANK];
  int tlse = -1;
  if (sce) {
    /* log-sum-exp over classes per position, via the row max (O(n) overall). */
    kir_expr_t *flag[OPS_MAX_RANK], *kd[OPS_MAX_RANK];
    ops_red_flags_mask(c, xr, 2, flag);
    ops_red_keep_dims(c, 0, flag, kd);
    int tmax = ops_temp(c, acc, xr, kd), tb;
    tlse = ops_temp(c, acc, xr, kd);
    ops_red_space_t s;
    kir_kernel_t *k = ops_red_temp_kernel(c, tmax, "rowmax", v, &tb);
    int xb = ops_buf_in(c, k, 0);
    ops_red_space(c, k, xb, v, flag, &s);
    kir_store(k, tb, v, ops_red_reduce(c, KIR_RMAX, &s, ops_red_load(c, k, xb, s.idx, acc)), NULL);
    k = ops_red_temp_kernel(c, tlse, "lse", v, &tb);
    xb = ops_buf_in(c, k, 0);
    int mb = ops_buf_temp(c, k, tmax);
    ops_red_space(c, k, xb, v, flag, &s);
    kir_expr_t *m = kir_load(k, mb, v);
    kir_expr_t *sum =
        ops_red_reduce(c, KIR_RSUM, &s, kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, s.idx, acc), m)));
    kir_store(k, tb, v, kir_bin(a, KIR_ADD, m, kir_un(a, KIR_LOG, sum)), NULL);
    if (out_wanted(c, 1)) {
      k = ops_out_kernel(c, 1, "log_prob", v);
      xb = ops_buf_in(c, k, 0);
      int lb = ops_buf_temp(c, k, tlse);
      ops_red_keep_idx(c, xr, flag, v, ki);
      kir_store(k, 0, v, kir_bin(a, KIR_SUB, ops_red_load(c, k, xb, v, acc), kir_load(k, lb, ki)), NULL);
    }
  }

  kir_kernel_t *k = ops_out_kernel(c, 0, "loss", v);
  loss_bufs_t b = {.x = ops_buf_in(c, k, 0), .t = ops_buf_in(c, k, 1), .w = -1, .lse = -1, .acc = acc};
  if (ops_has_in(c, 2)) b.w = ops_buf_in(c, k, 2);
  if (tlse >= 0) b.lse = ops_buf_temp(c, k, tlse);
  kir_expr_t *l, *w;
  if (red == LOSS_NONE) {
    loss_terms(c, k, &b, v, &l, &w);
    kir_store(k, 0, v, l, NULL);
    return NULL;
  }
  int rv[OPS_MAX_RANK];
  kir_expr_t *pos[OPS_MAX_RANK], *ext[OPS_MAX_RANK];
  for (int i = 0; i < tr; i++) {
    rv[i] = kir_new_var(k);
    pos[i] = kir_var(a, rv[i]);
    ext[i] = ops_in_dim(c, 1, i);
  }
  loss_terms(c, k, &b, pos, &l, &w);
  kir_expr_t *y = kir_reduce(a, KIR_RSUM, tr, rv, ext, l);
  if (red == LOSS_MEAN) {
    /* The weight sum needs its own reduction vars. */
    int rv2[OPS_MAX_RANK];
    for (int i = 0; i < tr; i++) {
      rv2[i] = kir_new_var(k);
      pos[i] = kir_var(a, rv2[i]);
    }
    loss_terms(c, k, &b, pos, &l, &w);
    y = kir_bin(a, KIR_DIV, y, kir_reduce(a, KIR_RSUM, tr, rv2, ext, w));
  }
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

static flagos_status_t nll_lower(ops_ctx_t *c) { return loss_lower(c, false); }
static flagos_status_t sce_lower(ops_ctx_t *c) { return loss_lower(c, true); }

const ops_def_t ops_family_nn[] = {
    {"NegativeLogLikelihoodLoss", "", 0, nll_infer, nll_lower, ops_red_flops_in0},
    {"SoftmaxCrossEntropyLoss", "", 0, sce_infer, sce_lower, ops_red_flops_in0},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

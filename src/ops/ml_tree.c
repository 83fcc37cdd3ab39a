/* TreeEnsemble (ai.onnx.ml opset 5): X [N, F] -> Y [N, n_targets].
 *
 * The trees live in attributes: interior nodes (nodes_*) and leaves (leaf_*),
 * each tree starting at one of tree_roots. Kernel IR has no loops with a data-
 * dependent trip count, so a tree is walked a fixed number of levels D, the
 * deepest root-to-leaf path over all trees (found on the host from the
 * attributes); a walk that reaches a leaf early stays there. Node ids are
 * combined: interior node j is j, leaf l is M + l (M interior nodes), so "still
 * inside the tree" is cur < M.
 *
 * The node arrays are copied into temp tables (ops_ml_table), then:
 *   leaf[n, t] = the leaf tree t reaches for row n       one walk of D levels
 *   y[n, k]    = aggregate over trees t of the weight of leaf[n, t] when that
 *                leaf belongs to target k (sum, average, min or max)
 *   post_transform (softmax, logistic, softmax_zero, probit) on each row.
 * Comparisons are made in f64 (what ONNX's reference does: Python floats), so
 * f32 inputs against f32 or f64 splits decide exactly as there. With no leaf
 * for a target, MIN and MAX give the largest/lowest value of the type, as the
 * reference does. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/elementwise.h"
#include "ops/ml_internal.h"

enum { MODE_LEQ, MODE_LT, MODE_GTE, MODE_GT, MODE_EQ, MODE_NEQ, MODE_MEMBER, MODE_COUNT };
enum { AGG_AVERAGE, AGG_SUM, AGG_MIN, AGG_MAX };
enum { POST_NONE, POST_SOFTMAX, POST_LOGISTIC, POST_SOFTMAX_ZERO, POST_PROBIT };

typedef struct tree_def {
  int64_t M, L, T, n_targets;
  const int64_t *feat, *tids, *fids, *tleaf, *fleaf, *ltarget, *roots, *mvtt;
  const int64_t *modes;
  const double *split, *lweight;
  int64_t *next_t, *next_f; /* combined ids */
  double *members;          /* member sets, back to back */
  int64_t n_members, *mstart, *mlen, max_members;
  unsigned mode_mask;       /* modes used */
  bool any_mvtt;
  int agg, post;
  int depth;
} tree_def_t;

static flagos_status_t need_ints(const ops_ctx_t *c, const char *name, int64_t want, const int64_t **out) {
  int64_t n;
  FL_TRY(ops_ml_attr_ints(c, name, &n, out));
  if (n < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing required attribute '%s'", name);
  if (want >= 0 && n != want)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute '%s' has %lld entries, expected %lld", name, (long long)n,
                   (long long)want);
  return NULL;
}

/* Longest chain of interior nodes from each root (an explicit stack: trees can
 * be deep). A cycle is an error. */
static flagos_status_t tree_depth(const ops_ctx_t *c, tree_def_t *d) {
  int64_t M = d->M;
  int *depth = calloc((size_t)(M > 0 ? M : 1), sizeof(int));
  unsigned char *state = calloc((size_t)(M > 0 ? M : 1), 1);
  int64_t *stack = malloc(sizeof(int64_t) * (size_t)(M > 0 ? M : 1));
  flagos_status_t err = NULL;
  if (!depth || !state || !stack) {
    err = ops_err(c, FLAGOS_ERR_OUT_OF_MEMORY, "out of memory walking %lld tree nodes", (long long)M);
    goto done;
  }
  d->depth = 0;
  for (int64_t t = 0; t < d->T && !err; t++) {
    int64_t sp = 0;
    if (state[d->roots[t]] != 2) stack[sp++] = d->roots[t];
    while (sp > 0 && !err) {
      int64_t j = stack[sp - 1];
      int64_t kids[2] = {d->next_t[j], d->next_f[j]};
      if (state[j] == 0) {
        state[j] = 1;
        for (int q = 0; q < 2; q++) {
          if (kids[q] >= M || state[kids[q]] == 2) continue;
          if (state[kids[q]] == 1) {
            err = ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the trees have a cycle through node %lld", (long long)kids[q]);
            break;
          }
          stack[sp++] = kids[q];
        }
        continue;
      }
      sp--;
      if (state[j] == 2) continue;
      int best = 0;
      for (int q = 0; q < 2; q++)
        if (kids[q] < M && depth[kids[q]] > best) best = depth[kids[q]];
      depth[j] = best + 1;
      state[j] = 2;
    }
    if (!err && depth[d->roots[t]] > d->depth) d->depth = depth[d->roots[t]];
  }
done:
  free(depth);
  free(state);
  free(stack);
  return err;
}

static flagos_status_t tree_read(const ops_ctx_t *c, tree_def_t *d) {
  memset(d, 0, sizeof(*d));
  int64_t n;
  FL_TRY(ops_ml_attr_ints(c, "nodes_featureids", &n, &d->feat));
  if (n < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing required attribute 'nodes_featureids'");
  d->M = n;
  FL_TRY(need_ints(c, "nodes_truenodeids", d->M, &d->tids));
  FL_TRY(need_ints(c, "nodes_falsenodeids", d->M, &d->fids));
  FL_TRY(need_ints(c, "nodes_trueleafs", d->M, &d->tleaf));
  FL_TRY(need_ints(c, "nodes_falseleafs", d->M, &d->fleaf));
  FL_TRY(need_ints(c, "nodes_modes", d->M, &d->modes));
  FL_TRY(ops_ml_attr_ints(c, "tree_roots", &d->T, &d->roots));
  if (d->T < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing required attribute 'tree_roots'");
  FL_TRY(ops_ml_attr_doubles(c, "nodes_splits", &n, &d->split, NULL));
  if (n != d->M)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'nodes_splits' has %lld entries, expected %lld",
                   (long long)n, (long long)d->M);
  FL_TRY(ops_ml_attr_ints(c, "nodes_missing_value_tracks_true", &n, &d->mvtt));
  if (n >= 0 && n != d->M)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT,
                   "attribute 'nodes_missing_value_tracks_true' has %lld entries, expected %lld", (long long)n,
                   (long long)d->M);
  FL_TRY(ops_ml_attr_ints(c, "leaf_targetids", &d->L, &d->ltarget));
  if (d->L < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing required attribute 'leaf_targetids'");
  FL_TRY(ops_ml_attr_doubles(c, "leaf_weights", &n, &d->lweight, NULL));
  if (n != d->L)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'leaf_weights' has %lld entries, leaf_targetids %lld",
                   (long long)n, (long long)d->L);
  d->agg = (int)fir_attr_int(c->node, "aggregate_function", AGG_SUM);
  d->post = (int)fir_attr_int(c->node, "post_transform", POST_NONE);
  if (d->agg < AGG_AVERAGE || d->agg > AGG_MAX)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown aggregate_function %d", d->agg);
  if (d->post < POST_NONE || d->post > POST_PROBIT)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "unknown post_transform %d", d->post);
  int64_t max_target = -1;
  for (int64_t l = 0; l < d->L; l++) {
    if (d->ltarget[l] < 0)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "leaf %lld has a negative target id", (long long)l);
    if (d->ltarget[l] > max_target) max_target = d->ltarget[l];
  }
  d->n_targets = fir_attr_int(c->node, "n_targets", max_target + 1);
  if (d->n_targets < 1 || max_target >= d->n_targets)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "n_targets is %lld but a leaf names target %lld",
                   (long long)d->n_targets, (long long)max_target);

  d->next_t = fl_arena_alloc(c->arena, sizeof(int64_t) * (size_t)(d->M > 0 ? d->M : 1));
  d->next_f = fl_arena_alloc(c->arena, sizeof(int64_t) * (size_t)(d->M > 0 ? d->M : 1));
  for (int64_t j = 0; j < d->M; j++) {
    const int64_t ids[2] = {d->tids[j], d->fids[j]}, leaf[2] = {d->tleaf[j], d->fleaf[j]};
    for (int q = 0; q < 2; q++) {
      int64_t lim = leaf[q] ? d->L : d->M;
      if (ids[q] < 0 || ids[q] >= lim)
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "node %lld: %s branch %s %lld is out of range [0, %lld)",
                       (long long)j, q ? "false" : "true", leaf[q] ? "leaf" : "node", (long long)ids[q], (long long)lim);
      (q ? d->next_f : d->next_t)[j] = leaf[q] ? d->M + ids[q] : ids[q];
    }
    if (d->modes[j] < 0 || d->modes[j] >= MODE_COUNT)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "node %lld has unknown mode %lld", (long long)j, (long long)d->modes[j]);
    if (d->feat[j] < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "node %lld has a negative feature id", (long long)j);
    d->mode_mask |= 1u << d->modes[j];
    if (d->mvtt && d->mvtt[j]) d->any_mvtt = true;
  }
  for (int64_t t = 0; t < d->T; t++)
    if (d->roots[t] < 0 || d->roots[t] >= d->M)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "tree %lld has root %lld, out of range [0, %lld)", (long long)t,
                     (long long)d->roots[t], (long long)d->M);

  /* Member sets, in the order the BRANCH_MEMBER nodes appear, NaN-delimited. */
  if (d->mode_mask & (1u << MODE_MEMBER)) {
    const double *mv;
    int64_t nm;
    FL_TRY(ops_ml_attr_doubles(c, "membership_values", &nm, &mv, NULL));
    if (nm < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "BRANCH_MEMBER nodes need attribute 'membership_values'");
    d->members = fl_arena_alloc(c->arena, sizeof(double) * (size_t)(nm > 0 ? nm : 1));
    d->mstart = fl_arena_alloc(c->arena, sizeof(int64_t) * (size_t)(d->M > 0 ? d->M : 1));
    d->mlen = fl_arena_alloc(c->arena, sizeof(int64_t) * (size_t)(d->M > 0 ? d->M : 1));
    int64_t pos = 0;
    for (int64_t j = 0; j < d->M; j++) {
      d->mstart[j] = d->n_members;
      d->mlen[j] = 0;
      if (d->modes[j] != MODE_MEMBER) continue;
      if (pos >= nm)
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "membership_values has no set for member node %lld", (long long)j);
      while (pos < nm && !isnan(mv[pos])) d->members[d->n_members++] = mv[pos++];
      pos++; /* the NaN delimiter */
      d->mlen[j] = d->n_members - d->mstart[j];
      if (d->mlen[j] > d->max_members) d->max_members = d->mlen[j];
    }
  }
  return tree_depth(c, d);
}

flagos_status_t ops_ml_tree_infer(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, OPS_DT_FLOATS));
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank != 2) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'X' must be [N, F], has rank %d", x->rank);
  tree_def_t d;
  FL_TRY(tree_read(c, &d));
  if (x->dims[1] >= 0)
    for (int64_t j = 0; j < d.M; j++)
      if (d.feat[j] >= x->dims[1])
        return ops_err(c, FLAGOS_ERR_SHAPE, "node %lld tests feature %lld but 'X' has %lld features", (long long)j,
                       (long long)d.feat[j], (long long)x->dims[1]);
  int64_t od[2] = {x->dims[0], d.n_targets};
  ops_set_out(c, 0, x->dtype, 2, od);
  return NULL;
}

/* ---- lowering ---- */
typedef struct tree_low {
  ops_ctx_t *c;
  fl_arena_t *a;
  tree_def_t d;
  kir_kernel_t *k;
  int xb, feat, split, mode, mvtt, mstart, mlen, members;
  kir_expr_t *row;
} tree_low_t;

static kir_expr_t *tload(tree_low_t *L, int buf, kir_expr_t *i) { return kir_load(L->k, buf, &i); }

static kir_expr_t *compare(tree_low_t *L, int mode, kir_expr_t *xv, kir_expr_t *s, kir_expr_t *cur) {
  fl_arena_t *a = L->a;
  switch (mode) {
  case MODE_LEQ: return kir_bin(a, KIR_LE, xv, s);
  case MODE_LT: return kir_bin(a, KIR_LT, xv, s);
  case MODE_GTE: return kir_bin(a, KIR_GE, xv, s);
  case MODE_GT: return kir_bin(a, KIR_GT, xv, s);
  case MODE_EQ: return kir_bin(a, KIR_EQ, xv, s);
  case MODE_NEQ: return kir_bin(a, KIR_NE, xv, s);
  default: {
    int mv = kir_new_var(L->k);
    kir_expr_t *m = kir_var(a, mv), *ext = kir_i64(a, L->d.max_members);
    kir_expr_t *in_set = kir_bin(a, KIR_LT, m, tload(L, L->mlen, cur));
    kir_expr_t *member = tload(L, L->members, kir_add(a, tload(L, L->mstart, cur), m));
    return kir_reduce(a, KIR_RANY, 1, &mv, &ext, kir_select(a, in_set, kir_bin(a, KIR_EQ, xv, member), kir_bool(a, false)));
  }
  }
}

/* Whether interior node `cur` sends row L->row down its true branch. */
static kir_expr_t *branch_true(tree_low_t *L, kir_expr_t *cur) {
  fl_arena_t *a = L->a;
  ops_ctx_t *c = L->c;
  kir_expr_t *f = tload(L, L->feat, cur), *idx[2] = {L->row, f};
  kir_expr_t *xv = kir_cast(a, FLAGOS_FLOAT64, kir_load(L->k, L->xb, idx));
  if (c->in[0].dims[1] < 0) /* feature ids were checked against F only if F was known */
    xv = kir_select(a, kir_bin(a, KIR_LT, f, ops_in_dim(c, 0, 1)), xv, kir_const(a, FLAGOS_FLOAT64, NAN));
  kir_expr_t *s = tload(L, L->split, cur), *cond = NULL;
  unsigned mask = L->d.mode_mask;
  if ((mask & (mask - 1)) == 0) {
    int only = 0;
    while (!(mask >> only & 1)) only++;
    cond = compare(L, only, xv, s, cur);
  } else {
    kir_expr_t *m = tload(L, L->mode, cur);
    for (int md = MODE_COUNT - 1; md >= 0; md--) {
      if (!(mask >> md & 1)) continue;
      kir_expr_t *cmp = compare(L, md, xv, s, cur);
      cond = cond ? kir_select(a, kir_bin(a, KIR_EQ, m, kir_i64(a, md)), cmp, cond) : cmp;
    }
  }
  if (L->d.any_mvtt)
    cond = kir_bin(a, KIR_OR, cond, kir_bin(a, KIR_AND, kir_bin(a, KIR_NE, tload(L, L->mvtt, cur), kir_i64(a, 0)),
                                            kir_un(a, KIR_ISNAN, xv)));
  return cond;
}

/* erfinv(x) for x in (-1, 1) by M. Giles' single-precision approximation
 * ("Approximating the erfinv function", GPU Computing Gems, 2011): a polynomial
 * in w = -log(1 - x^2), one for the centre and one for the tails; relative error
 * below 4e-7. Both branches are selects, so only the needed one runs. */
static kir_expr_t *horner(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *w, const double *p, int n) {
  kir_expr_t *r = kir_const(a, dt, p[0]);
  for (int i = 1; i < n; i++) r = kir_bin(a, KIR_ADD, kir_const(a, dt, p[i]), kir_bin(a, KIR_MUL, r, w));
  return r;
}

static kir_expr_t *erfinv(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *x) {
  static const double centre[] = {2.81022636e-08,  3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                                  -0.00125372503, -0.00417768164, 0.246640727,    1.50140941};
  static const double tail[] = {-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                                -0.0076224613,   0.00943887047,  1.00167406,    2.83297682};
  kir_expr_t *one = kir_const(a, dt, 1.0);
  kir_expr_t *w = kir_un(a, KIR_NEG, kir_un(a, KIR_LOG, kir_bin(a, KIR_MUL, kir_bin(a, KIR_SUB, one, x),
                                                                kir_bin(a, KIR_ADD, one, x))));
  kir_expr_t *pc = horner(a, dt, kir_bin(a, KIR_SUB, w, kir_const(a, dt, 2.5)), centre, 9);
  kir_expr_t *pt = horner(a, dt, kir_bin(a, KIR_SUB, kir_un(a, KIR_SQRT, w), kir_const(a, dt, 3.0)), tail, 9);
  kir_expr_t *p = kir_select(a, kir_bin(a, KIR_LT, w, kir_const(a, dt, 5.0)), pc, pt);
  return kir_bin(a, KIR_MUL, p, x);
}

static void lower_post(ops_ctx_t *c, const tree_def_t *d, int traw, flagos_dtype_t wd) {
  fl_arena_t *a = c->arena;
  kir_expr_t *v[2];
  kir_kernel_t *k = ops_out_kernel(c, 0, "post", v);
  int rb = ops_buf_temp(c, k, traw);
  kir_expr_t *x = kir_load(k, rb, v), *y;
  kir_expr_t *one = kir_const(a, wd, 1.0), *zero = kir_const(a, wd, 0.0);
  if (d->post == POST_LOGISTIC) {
    y = kir_bin(a, KIR_DIV, one, kir_bin(a, KIR_ADD, one, kir_un(a, KIR_EXP, kir_un(a, KIR_NEG, x))));
  } else if (d->post == POST_PROBIT) {
    kir_expr_t *z = kir_bin(a, KIR_SUB, kir_bin(a, KIR_MUL, x, kir_const(a, wd, 2.0)), one);
    y = kir_bin(a, KIR_MUL, kir_const(a, wd, M_SQRT2), erfinv(a, wd, z));
  } else {
    kir_expr_t *nt = ops_out_dim(c, 0, 1);
    int jv = kir_new_var(k);
    kir_expr_t *idx[2] = {v[0], kir_var(a, jv)};
    kir_expr_t *xj = kir_load(k, rb, idx);
    kir_expr_t *mx = kir_reduce(a, KIR_RMAX, 1, &jv, &nt, xj);
    if (d->post == POST_SOFTMAX) {
      int sv = kir_new_var(k);
      kir_expr_t *sidx[2] = {v[0], kir_var(a, sv)};
      kir_expr_t *sum = kir_reduce(a, KIR_RSUM, 1, &sv, &nt, kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, kir_load(k, rb, sidx), mx)));
      y = kir_bin(a, KIR_DIV, kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, x, mx)), sum);
    } else {
      /* Softmax over the non-zero scores; (near) zero scores stay (near) zero. */
      kir_expr_t *eps = kir_const(a, wd, 1e-7);
      int sv = kir_new_var(k);
      kir_expr_t *sidx[2] = {v[0], kir_var(a, sv)};
      kir_expr_t *xs = kir_load(k, rb, sidx);
      kir_expr_t *nz_s = kir_bin(a, KIR_GT, kir_un(a, KIR_ABS, xs), eps);
      kir_expr_t *sum = kir_reduce(a, KIR_RSUM, 1, &sv, &nt,
                                   kir_select(a, nz_s, kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, xs, mx)), zero));
      kir_expr_t *nz = kir_bin(a, KIR_GT, kir_un(a, KIR_ABS, x), eps);
      kir_expr_t *e = kir_select(a, nz, kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, x, mx)),
                                 kir_bin(a, KIR_MUL, x, kir_un(a, KIR_EXP, kir_un(a, KIR_NEG, mx))));
      y = kir_bin(a, KIR_DIV, e, sum);
    }
  }
  kir_store(k, 0, v, y, NULL);
}

flagos_status_t ops_ml_tree_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  tree_low_t L = {.c = c, .a = a};
  tree_def_t *d = &L.d;
  FL_TRY(tree_read(c, d));
  flagos_dtype_t wd = ops_ew_float_compute(c->in[0].dtype);
  int64_t M = d->M;

  /* tables */
  L.feat = ops_ml_table(c, "feat", FLAGOS_INT64, M, NULL, d->feat);
  L.split = ops_ml_table(c, "split", FLAGOS_FLOAT64, M, d->split, NULL);
  int tnext = ops_ml_table(c, "tnext", FLAGOS_INT64, M, NULL, d->next_t);
  int fnext = ops_ml_table(c, "fnext", FLAGOS_INT64, M, NULL, d->next_f);
  bool one_mode = (d->mode_mask & (d->mode_mask - 1)) == 0;
  L.mode = one_mode ? -1 : ops_ml_table(c, "mode", FLAGOS_INT64, M, NULL, d->modes);
  L.mvtt = d->any_mvtt ? ops_ml_table(c, "mvtt", FLAGOS_INT64, M, NULL, d->mvtt) : -1;
  bool member = d->mode_mask >> MODE_MEMBER & 1;
  if (member) {
    L.mstart = ops_ml_table(c, "mstart", FLAGOS_INT64, M, NULL, d->mstart);
    L.mlen = ops_ml_table(c, "mlen", FLAGOS_INT64, M, NULL, d->mlen);
    L.members = ops_ml_table(c, "members", FLAGOS_FLOAT64, d->n_members, d->members, NULL);
  }
  int troots = ops_ml_table(c, "roots", FLAGOS_INT64, d->T, NULL, d->roots);
  int ltarget = ops_ml_table(c, "ltarget", FLAGOS_INT64, d->L, NULL, d->ltarget);
  int lweight = ops_ml_table(c, "lweight", wd, d->L, d->lweight, NULL);

  /* walk: leaf[n, t] */
  kir_expr_t *nt[2] = {ops_in_dim(c, 0, 0), kir_i64(a, d->T)}, *v[2];
  int tleaf = ops_temp(c, FLAGOS_INT64, 2, nt), tb;
  kir_kernel_t *k = L.k = ops_kernel(c, "walk");
  tb = ops_buf_temp(c, k, tleaf);
  kir_set_space(k, 2, nt, v);
  L.xb = ops_buf_in(c, k, 0);
  L.row = v[0];
  int buf_feat = ops_buf_temp(c, k, L.feat), buf_split = ops_buf_temp(c, k, L.split);
  L.feat = buf_feat;
  L.split = buf_split;
  if (L.mode >= 0) L.mode = ops_buf_temp(c, k, L.mode);
  if (L.mvtt >= 0) L.mvtt = ops_buf_temp(c, k, L.mvtt);
  if (member) {
    L.mstart = ops_buf_temp(c, k, L.mstart);
    L.mlen = ops_buf_temp(c, k, L.mlen);
    L.members = ops_buf_temp(c, k, L.members);
  }
  int bt = ops_buf_temp(c, k, tnext), bf = ops_buf_temp(c, k, fnext), br = ops_buf_temp(c, k, troots);
  kir_expr_t *mM = kir_i64(a, M);
  kir_expr_t *cur = d->T > 0 ? tload(&L, br, v[1]) : kir_i64(a, 0);
  for (int lv = 0; lv < d->depth; lv++) {
    kir_expr_t *nxt = kir_select(a, branch_true(&L, cur), tload(&L, bt, cur), tload(&L, bf, cur));
    /* Roots are interior nodes, so the first level needs no test. */
    cur = lv == 0 ? nxt : kir_select(a, kir_bin(a, KIR_LT, cur, mM), nxt, cur);
  }
  kir_store(k, tb, v, kir_sub(a, cur, mM), NULL);

  /* aggregate over trees */
  int traw = -1;
  kir_expr_t *od[2] = {ops_out_dim(c, 0, 0), ops_out_dim(c, 0, 1)};
  if (d->post != POST_NONE) {
    traw = ops_temp(c, wd, 2, od);
    k = ops_kernel(c, "aggregate");
    tb = ops_buf_temp(c, k, traw);
    kir_set_space(k, 2, od, v);
  } else {
    k = ops_out_kernel(c, 0, "aggregate", v);
    tb = 0;
  }
  int lb = ops_buf_temp(c, k, tleaf), gb = ops_buf_temp(c, k, ltarget), wb = ops_buf_temp(c, k, lweight);
  int tv = kir_new_var(k);
  kir_expr_t *t = kir_var(a, tv), *lidx[2] = {v[0], t}, *T = kir_i64(a, d->T);
  kir_expr_t *leaf = kir_load(k, lb, lidx);
  kir_expr_t *w = kir_load(k, wb, &leaf);
  kir_expr_t *mine = d->n_targets == 1 ? kir_bool(a, true) : kir_bin(a, KIR_EQ, kir_load(k, gb, &leaf), v[1]);
  flagos_dtype_t odt = c->out[0].dtype;
  kir_expr_t *y;
  if (d->agg == AGG_SUM || d->agg == AGG_AVERAGE) {
    y = kir_reduce(a, KIR_RSUM, 1, &tv, &T, kir_select(a, mine, w, kir_const(a, wd, 0.0)));
    if (d->agg == AGG_AVERAGE && d->T > 0) y = kir_bin(a, KIR_DIV, y, kir_const(a, wd, (double)d->T));
  } else {
    bool mn = d->agg == AGG_MIN;
    kir_expr_t *lim = kir_const(a, wd, mn ? ops_ew_dtype_max(odt) : ops_ew_dtype_lowest(odt));
    y = kir_reduce(a, mn ? KIR_RMIN : KIR_RMAX, 1, &tv, &T, kir_select(a, mine, w, lim));
    y = kir_bin(a, mn ? KIR_MIN : KIR_MAX, y, lim);
  }
  kir_store(k, tb, v, y, NULL);
  if (d->post != POST_NONE) lower_post(c, d, traw, wd);
  return NULL;
}

double ops_ml_tree_flops(const ops_ctx_t *c) {
  /* One comparison per level per tree and row: use the output size as a floor. */
  return c->out[0].numel > 0 ? (double)c->out[0].numel : 0.0;
}

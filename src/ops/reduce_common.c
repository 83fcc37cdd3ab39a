/* Reduction helpers shared by the reduce, norm, nn and sort families. */
#include "ops/reduce_common.h"

flagos_dtype_t ops_red_acc_dtype(flagos_dtype_t dt, bool want_float) {
  flagos_dtype_t a = kir_compute_dtype(dt);
  if (want_float && !flagos_dtype_is_float(a)) return FLAGOS_FLOAT64;
  return a;
}

kir_expr_t *ops_red_fconst(ops_ctx_t *c, flagos_dtype_t dt, double v) { return kir_const(c->arena, dt, v); }

kir_expr_t *ops_red_load(ops_ctx_t *c, kir_kernel_t *k, int buf, kir_expr_t *const *idx, flagos_dtype_t dt) {
  return kir_cast(c->arena, dt, kir_load(k, buf, idx));
}

void ops_red_space(ops_ctx_t *c, kir_kernel_t *k, int buf, kir_expr_t *const *outer, kir_expr_t *const *flag,
                   ops_red_space_t *s) {
  fl_arena_t *a = c->arena;
  const kir_buf_t *b = &k->bufs[buf];
  s->nr = 0;
  s->count = kir_i64(a, 1);
  for (int i = 0; i < b->rank; i++) {
    kir_expr_t *f = flag[i];
    if (kir_is_const(f, 0)) {
      s->idx[i] = outer[i];
      continue;
    }
    kir_expr_t *ext = b->dims[i];
    int rv = kir_new_var(k);
    kir_expr_t *var = kir_var(a, rv);
    if (kir_is_const(f, 1)) {
      s->idx[i] = var;
    } else {
      ext = kir_select(a, kir_bin(a, KIR_NE, f, kir_i64(a, 0)), ext, kir_i64(a, 1));
      s->idx[i] = kir_add(a, outer[i], var);
    }
    s->rvars[s->nr] = rv;
    s->rext[s->nr] = ext;
    s->nr++;
    s->count = kir_mul(a, s->count, ext);
  }
}

kir_expr_t *ops_red_reduce(ops_ctx_t *c, kir_op_t op, const ops_red_space_t *s, kir_expr_t *body) {
  if (s->nr == 0) {
    /* A reduction over no axis is the identity on each element, except that the
     * bool any/all of one element is itself as well. */
    return body;
  }
  return kir_reduce(c->arena, op, s->nr, s->rvars, s->rext, body);
}

void ops_red_flags_mask(ops_ctx_t *c, int rank, uint64_t mask, kir_expr_t **flag) {
  for (int i = 0; i < rank; i++)
    flag[i] = kir_i64(c->arena, (mask >> i) & 1 ? 1 : 0);
}

void ops_red_keep_dims(ops_ctx_t *c, int in, kir_expr_t *const *flag, kir_expr_t **dims) {
  fl_arena_t *a = c->arena;
  for (int i = 0; i < c->in[in].rank; i++) {
    if (kir_is_const(flag[i], 0))
      dims[i] = ops_in_dim(c, in, i);
    else if (kir_is_const(flag[i], 1))
      dims[i] = kir_i64(a, 1);
    else
      dims[i] = kir_select(a, kir_bin(a, KIR_NE, flag[i], kir_i64(a, 0)), kir_i64(a, 1), ops_in_dim(c, in, i));
  }
}

void ops_red_keep_idx(ops_ctx_t *c, int rank, kir_expr_t *const *flag, kir_expr_t *const *vars, kir_expr_t **idx) {
  fl_arena_t *a = c->arena;
  for (int i = 0; i < rank; i++) {
    if (kir_is_const(flag[i], 0))
      idx[i] = vars[i];
    else if (kir_is_const(flag[i], 1))
      idx[i] = kir_i64(a, 0);
    else
      idx[i] = kir_select(a, kir_bin(a, KIR_NE, flag[i], kir_i64(a, 0)), kir_i64(a, 0), vars[i]);
  }
}

kir_kernel_t *ops_red_temp_kernel(ops_ctx_t *c, int t, const char *suffix, kir_expr_t **vars, int *tbuf) {
  kir_kernel_t *k = ops_kernel(c, suffix);
  int b = ops_buf_temp(c, k, t);
  kir_set_space(k, k->bufs[b].rank, k->bufs[b].dims, vars);
  *tbuf = b;
  return k;
}

kir_expr_t *ops_red_eq(ops_ctx_t *c, kir_expr_t *x, int64_t v) {
  return kir_bin(c->arena, KIR_EQ, x, kir_i64(c->arena, v));
}

void ops_red_unflatten(ops_ctx_t *c, kir_expr_t *flat, int rank, kir_expr_t *const *dims, kir_expr_t **idx) {
  fl_arena_t *a = c->arena;
  kir_expr_t *rest = flat;
  for (int i = rank - 1; i >= 0; i--) {
    if (i == 0) {
      idx[i] = rest;
      break;
    }
    idx[i] = kir_bin(a, KIR_MOD, rest, dims[i]);
    rest = kir_bin(a, KIR_DIV, rest, dims[i]);
  }
}

double ops_red_flops_in0(const ops_ctx_t *c) {
  if (c->n_in < 1 || c->in[0].numel < 0) return 0;
  return (double)c->in[0].numel;
}

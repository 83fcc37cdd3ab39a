/* Shape family, part 2: operators that remap element positions (Transpose,
 * Concat, Split, Expand, Tile, DepthToSpace, SpaceToDepth). Each lowering is a
 * pure gather: an output element reads exactly one input element. */
#include <string.h>

#include "ops/shape_util.h"

/* ---- Transpose ---- */
static flagos_status_t transpose_perm(ops_ctx_t *c, int *perm) {
  int r = c->in[0].rank;
  const int64_t *p;
  int n = fir_attr_ints(c->node, "perm", &p);
  if (n < 0) {
    for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
    return NULL;
  }
  if (n != r) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "perm has %d entries for an input of rank %d", n, r);
  bool seen[OPS_MAX_RANK] = {false};
  for (int i = 0; i < r; i++) {
    int a;
    FL_TRY(ops_axis(c, p[i], r, &a));
    if (seen[a]) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "perm lists axis %d twice", a);
    seen[a] = true;
    perm[i] = a;
  }
  return NULL;
}

flagos_status_t ops_sh_infer_transpose(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "data"));
  int perm[OPS_MAX_RANK];
  FL_TRY(transpose_perm(c, perm));
  int64_t d[OPS_MAX_RANK];
  for (int i = 0; i < c->in[0].rank; i++) d[i] = c->in[0].dims[perm[i]];
  ops_set_out(c, 0, c->in[0].dtype, c->in[0].rank, d);
  return NULL;
}

flagos_status_t ops_sh_lower_transpose(ops_ctx_t *c) {
  int perm[OPS_MAX_RANK];
  FL_TRY(transpose_perm(c, perm));
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "transpose", v);
  int x = ops_buf_in(c, k, 0);
  for (int i = 0; i < c->in[0].rank; i++) idx[perm[i]] = v[i];
  kir_store(k, 0, v, kir_load(k, x, idx), NULL);
  return NULL;
}

/* ---- Concat ---- */
static flagos_status_t concat_axis(ops_ctx_t *c, int *axis) {
  if (c->opset >= 4 && !fir_node_attr(c->node, "axis"))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'axis' is required");
  return ops_axis(c, fir_attr_int(c->node, "axis", 1), c->in[0].rank, axis);
}

flagos_status_t ops_sh_infer_concat(ops_ctx_t *c) {
  if (c->n_in < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "needs at least one input");
  for (int k = 0; k < c->n_in; k++) FL_TRY(ops_sh_need_tensor(c, k, "input"));
  const ops_tensor_info_t *x = &c->in[0];
  int axis;
  FL_TRY(concat_axis(c, &axis));
  int64_t d[OPS_MAX_RANK];
  memcpy(d, x->dims, sizeof(int64_t) * (size_t)x->rank);
  d[axis] = 0;
  for (int k = 0; k < c->n_in; k++) {
    const ops_tensor_info_t *t = &c->in[k];
    if (t->dtype != x->dtype)
      return ops_err(c, FLAGOS_ERR_SHAPE, "input %d is %s, input 0 is %s", k, flagos_dtype_name(t->dtype),
                     flagos_dtype_name(x->dtype));
    if (t->rank != x->rank) return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has rank %d, input 0 has %d", k, t->rank, x->rank);
    for (int i = 0; i < x->rank; i++) {
      if (i == axis) continue;
      if (t->dims[i] >= 0 && d[i] >= 0 && t->dims[i] != d[i])
        return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has size %lld on axis %d, expected %lld", k, (long long)t->dims[i],
                       i, (long long)d[i]);
      if (d[i] < 0) d[i] = t->dims[i];
    }
    if (t->dims[axis] < 0 || d[axis] < 0) d[axis] = -1;
    else d[axis] += t->dims[axis];
  }
  ops_set_out(c, 0, x->dtype, x->rank, d);
  return NULL;
}

flagos_status_t ops_sh_lower_concat(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int axis;
  FL_TRY(concat_axis(c, &axis));
  kir_expr_t *off = kir_i64(a, 0);
  for (int k = 0; k < c->n_in; k++) {
    kir_expr_t *extent = ops_in_dim(c, k, axis);
    if (c->in[k].numel != 0) {
      kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
      kir_kernel_t *kk = ops_sh_in_kernel(c, k, "part", v);
      int o = ops_buf_out(c, kk, 0);
      int x = ops_buf_in(c, kk, k);
      memcpy(idx, v, sizeof(*v) * (size_t)c->in[k].rank);
      idx[axis] = kir_add(a, v[axis], off);
      kir_store(kk, o, idx, kir_load(kk, x, v), NULL);
    }
    off = kir_add(a, off, extent);
  }
  return NULL;
}

/* ---- Split ---- */
/* params[k] = start of output k along the axis. */
flagos_status_t ops_sh_infer_split(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  const ops_tensor_info_t *x = &c->in[0];
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), x->rank, &axis));
  int n = c->n_out;
  if (n < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "has no outputs");
  if (n > OPS_MAX_PARAMS) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "%d outputs", n);
  ops_sh_list_t *s = fl_arena_alloc(c->arena, sizeof(*s));
  FL_TRY(ops_sh_int_list(c, c->opset < 13, "split", 1, s));
  int64_t dim = x->dims[axis];
  int64_t sizes[OPS_MAX_PARAMS];
  bool known = true;
  if (s->present) {
    if (s->n >= 0 && s->n != n)
      return ops_err(c, FLAGOS_ERR_SHAPE, "split has %d entries for %d outputs", s->n, n);
    if (!s->known) {
      known = false;
    } else {
      int64_t sum = 0;
      for (int i = 0; i < n; i++) {
        if (s->v[i] < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "split entry %d is negative", i);
        sizes[i] = s->v[i];
        sum += s->v[i];
      }
      if (dim >= 0 && sum != dim)
        return ops_err(c, FLAGOS_ERR_SHAPE, "split sizes add up to %lld, axis %d has %lld", (long long)sum, axis,
                       (long long)dim);
    }
  } else if (dim < 0) {
    known = false;
  } else {
    int64_t num = c->opset >= 18 ? fir_attr_int(c->node, "num_outputs", n) : n;
    if (num != n) return ops_err(c, FLAGOS_ERR_SHAPE, "num_outputs is %lld but the node has %d outputs", (long long)num, n);
    if (c->opset >= 18 && fir_node_attr(c->node, "num_outputs")) {
      /* Opset 18: chunks of ceil(dim / n), the last one smaller. */
      int64_t chunk = (dim + n - 1) / n, left = dim;
      for (int i = 0; i < n; i++) {
        sizes[i] = left < chunk ? left : chunk;
        left -= sizes[i];
      }
    } else {
      if (dim % n) return ops_err(c, FLAGOS_ERR_SHAPE, "axis %d of size %lld does not split into %d equal parts", axis,
                                  (long long)dim, n);
      for (int i = 0; i < n; i++) sizes[i] = dim / n;
    }
  }
  int64_t d[OPS_MAX_RANK], off = 0;
  memcpy(d, x->dims, sizeof(int64_t) * (size_t)x->rank);
  for (int i = 0; i < n; i++) {
    d[axis] = known ? sizes[i] : -1;
    c->params[i] = off;
    if (known) off += sizes[i];
    if (c->node->outputs[i]) ops_set_out(c, i, x->dtype, x->rank, d);
  }
  c->n_params = n;
  return NULL;
}

/* One kernel over the input: each element goes to the output whose range
 * along the axis holds it (a conditional store per output), one launch for
 * all the parts (GPT-2 splits its fused query-key-value product in three). */
flagos_status_t ops_sh_lower_split(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int axis, r = c->in[0].rank;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), r, &axis));
  kir_expr_t *ext[OPS_MAX_RANK], *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  for (int d = 0; d < r; d++) ext[d] = ops_in_dim(c, 0, d);
  kir_kernel_t *kk = ops_kernel(c, "split");
  int x = ops_buf_in(c, kk, 0);
  kir_set_space(kk, r, ext, v);
  kir_expr_t *val = kir_load(kk, x, v);
  for (int k = 0; k < c->n_out; k++) {
    if (!c->out[k].present || c->out[k].numel == 0) continue;
    int ob = ops_buf_out(c, kk, k);
    kir_expr_t *off = ops_param(c, k), *end = kir_add(a, off, ops_out_dim(c, k, axis));
    memcpy(idx, v, sizeof(*v) * (size_t)r);
    idx[axis] = kir_sub(a, v[axis], off);
    kir_expr_t *in = kir_bin(a, KIR_AND, kir_bin(a, KIR_GE, v[axis], off), kir_bin(a, KIR_LT, v[axis], end));
    kir_store(kk, ob, idx, val, in);
  }
  return NULL;
}

/* ---- Expand ---- */
flagos_status_t ops_sh_infer_expand(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  const ops_tensor_info_t *x = &c->in[0];
  ops_sh_list_t *s = fl_arena_alloc(c->arena, sizeof(*s));
  FL_TRY(ops_sh_int_list(c, false, "shape", 1, s));
  if (!s->present) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input 1 (shape) is missing");
  if (s->n < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the shape input's length is unknown, so the output rank is");
  int r = s->n > x->rank ? s->n : x->rank;
  if (r > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, OPS_MAX_RANK);
  int64_t d[OPS_MAX_RANK];
  for (int i = 0; i < r; i++) {
    int xi = i - (r - x->rank), si = i - (r - s->n);
    int64_t a = xi >= 0 ? x->dims[xi] : 1;
    if (si >= 0 && !s->known) {
      /* A known input dim other than 1 decides the output without the target. */
      d[i] = a >= 0 && a != 1 ? a : -1;
      continue;
    }
    int64_t t = si >= 0 ? s->v[si] : 1;
    if (t < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "shape entry %d is negative (%lld)", si, (long long)t);
    if (a == 1) d[i] = t;
    else if (t == 1 || a == t) d[i] = a;
    else if (a < 0) d[i] = t;
    else return ops_err(c, FLAGOS_ERR_SHAPE, "cannot expand size %lld to %lld on axis %d", (long long)a, (long long)t, i);
  }
  ops_set_out(c, 0, x->dtype, r, d);
  return NULL;
}

flagos_status_t ops_sh_lower_expand(ops_ctx_t *c) {
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "expand", v);
  int x = ops_buf_in(c, k, 0);
  kir_store(k, 0, v, ops_load_bcast(c, k, x, 0, c->out[0].rank, v), NULL);
  return NULL;
}

/* ---- Tile ---- */
flagos_status_t ops_sh_infer_tile(ops_ctx_t *c) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  const ops_tensor_info_t *x = &c->in[0];
  if (c->opset < 6) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "Tile before opset 6 (tiles/axis inputs) is not supported");
  ops_sh_list_t *s = fl_arena_alloc(c->arena, sizeof(*s));
  FL_TRY(ops_sh_int_list(c, false, "repeats", 1, s));
  if (!s->present) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input 1 (repeats) is missing");
  if (s->n >= 0 && s->n != x->rank)
    return ops_err(c, FLAGOS_ERR_SHAPE, "repeats has %d entries for an input of rank %d", s->n, x->rank);
  int64_t d[OPS_MAX_RANK];
  for (int i = 0; i < x->rank; i++) {
    if (s->known && s->v[i] < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "repeats entry %d is negative", i);
    d[i] = !s->known || x->dims[i] < 0 ? -1 : x->dims[i] * s->v[i];
  }
  ops_set_out(c, 0, x->dtype, x->rank, d);
  return NULL;
}

flagos_status_t ops_sh_lower_tile(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  kir_expr_t *v[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "tile", v);
  int x = ops_buf_in(c, k, 0);
  for (int i = 0; i < c->in[0].rank; i++) {
    bool same = c->in[0].dims[i] >= 0 && c->in[0].dims[i] == c->out[0].dims[i];
    idx[i] = same ? v[i] : kir_bin(a, KIR_MOD, v[i], ops_in_dim(c, 0, i));
  }
  kir_store(k, 0, v, kir_load(k, x, idx), NULL);
  return NULL;
}

/* ---- DepthToSpace / SpaceToDepth ---- */
static flagos_status_t block_size(ops_ctx_t *c, int64_t *b) {
  FL_TRY(ops_sh_need_tensor(c, 0, "input"));
  if (c->in[0].rank != 4) return ops_err(c, FLAGOS_ERR_SHAPE, "input must be 4-D, has rank %d", c->in[0].rank);
  *b = fir_attr_int(c->node, "blocksize", 0);
  if (*b <= 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "blocksize must be positive, is %lld", (long long)*b);
  return NULL;
}

static int crd_mode(const ops_ctx_t *c) {
  const char *m = c->opset >= 11 ? fir_attr_string(c->node, "mode", "DCR") : "DCR";
  return strcmp(m, "CRD") == 0 ? 1 : strcmp(m, "DCR") == 0 ? 0 : -1;
}

flagos_status_t ops_sh_infer_depth_to_space(ops_ctx_t *c) {
  int64_t b = 0;
  FL_TRY(block_size(c, &b));
  if (crd_mode(c) < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "mode must be DCR or CRD");
  const int64_t *x = c->in[0].dims;
  if (x[1] >= 0 && x[1] % (b * b))
    return ops_err(c, FLAGOS_ERR_SHAPE, "channels %lld are not divisible by blocksize^2 = %lld", (long long)x[1],
                   (long long)(b * b));
  int64_t d[4] = {x[0], x[1] < 0 ? -1 : x[1] / (b * b), x[2] < 0 ? -1 : x[2] * b, x[3] < 0 ? -1 : x[3] * b};
  ops_set_out(c, 0, c->in[0].dtype, 4, d);
  return NULL;
}

flagos_status_t ops_sh_lower_depth_to_space(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int64_t bs = 0;
  FL_TRY(block_size(c, &bs));
  kir_expr_t *v[4], *b = kir_i64(a, bs);
  kir_kernel_t *k = ops_out_kernel(c, 0, "d2s", v);
  int x = ops_buf_in(c, k, 0);
  kir_expr_t *bh = kir_bin(a, KIR_MOD, v[2], b), *bw = kir_bin(a, KIR_MOD, v[3], b);
  kir_expr_t *blk = kir_add(a, kir_mul(a, bh, b), bw), *ch;
  if (crd_mode(c)) ch = kir_add(a, kir_mul(a, v[1], kir_i64(a, bs * bs)), blk);
  else ch = kir_add(a, kir_mul(a, blk, ops_out_dim(c, 0, 1)), v[1]);
  kir_expr_t *idx[4] = {v[0], ch, kir_bin(a, KIR_DIV, v[2], b), kir_bin(a, KIR_DIV, v[3], b)};
  kir_store(k, 0, v, kir_load(k, x, idx), NULL);
  return NULL;
}

flagos_status_t ops_sh_infer_space_to_depth(ops_ctx_t *c) {
  int64_t b = 0;
  FL_TRY(block_size(c, &b));
  const int64_t *x = c->in[0].dims;
  for (int i = 2; i < 4; i++)
    if (x[i] >= 0 && x[i] % b)
      return ops_err(c, FLAGOS_ERR_SHAPE, "axis %d of size %lld is not divisible by blocksize %lld", i, (long long)x[i],
                     (long long)b);
  int64_t d[4] = {x[0], x[1] < 0 ? -1 : x[1] * b * b, x[2] < 0 ? -1 : x[2] / b, x[3] < 0 ? -1 : x[3] / b};
  ops_set_out(c, 0, c->in[0].dtype, 4, d);
  return NULL;
}

flagos_status_t ops_sh_lower_space_to_depth(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  int64_t bs = 0;
  FL_TRY(block_size(c, &bs));
  kir_expr_t *v[4], *b = kir_i64(a, bs), *cin = ops_in_dim(c, 0, 1);
  kir_kernel_t *k = ops_out_kernel(c, 0, "s2d", v);
  int x = ops_buf_in(c, k, 0);
  kir_expr_t *blk = kir_bin(a, KIR_DIV, v[1], cin);
  kir_expr_t *bh = kir_bin(a, KIR_DIV, blk, b), *bw = kir_bin(a, KIR_MOD, blk, b);
  kir_expr_t *idx[4] = {v[0], kir_bin(a, KIR_MOD, v[1], cin), kir_add(a, kir_mul(a, v[2], b), bh),
                        kir_add(a, kir_mul(a, v[3], b), bw)};
  kir_store(k, 0, v, kir_load(k, x, idx), NULL);
  return NULL;
}

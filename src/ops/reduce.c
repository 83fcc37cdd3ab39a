/* Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare,
 * ArgMax/ArgMin, and (reduce_scan.c) CumSum/CumProd.
 *
 * Reduce* take their axes from an attribute before opset 13 (ReduceSum) or 18
 * (the others) and from an optional input after. When that input is known only
 * at run time, infer records per input axis a "reduced" flag in params[0..r)
 * and, without keepdims, the input axis of each output dim in params[r..); the
 * lowering reads them as symbols, so one kernel serves any axes. */
#include <math.h>
#include <string.h>

#include "ops/reduce_common.h"

typedef enum red_kind {
  RED_SUM,
  RED_MEAN,
  RED_MAX,
  RED_MIN,
  RED_PROD,
  RED_L1,
  RED_L2,
  RED_LOGSUM,
  RED_LOGSUMEXP,
  RED_SUMSQUARE
} red_kind_t;

static red_kind_t red_kind_of(const char *op) {
  static const struct {
    const char *name;
    red_kind_t kind;
  } map[] = {{"ReduceSum", RED_SUM},
             {"ReduceMean", RED_MEAN},
             {"ReduceMax", RED_MAX},
             {"ReduceMin", RED_MIN},
             {"ReduceProd", RED_PROD},
             {"ReduceL1", RED_L1},
             {"ReduceL2", RED_L2},
             {"ReduceLogSum", RED_LOGSUM},
             {"ReduceLogSumExp", RED_LOGSUMEXP},
             {"ReduceSumSquare", RED_SUMSQUARE}};
  for (size_t i = 0; i < FL_ARRAY_LEN(map); i++)
    if (strcmp(map[i].name, op) == 0) return map[i].kind;
  return RED_SUM;
}

/* Opset from which axes come from input 1 instead of an attribute. */
static int axes_input_opset(red_kind_t k) { return k == RED_SUM ? 13 : 18; }

static bool axes_from_input(const ops_ctx_t *c) {
  return c->opset >= axes_input_opset(red_kind_of(c->node->op_type)) && ops_has_in(c, 1);
}

/* True when the reduced axes are known now (attribute, constant or absent input). */
static bool axes_known(const ops_ctx_t *c) { return !axes_from_input(c) || c->in[1].value != NULL; }

static flagos_status_t reduce_infer(ops_ctx_t *c) {
  if (c->n_in < 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing input 'data'");
  const ops_tensor_info_t *x = &c->in[0];
  red_kind_t kind = red_kind_of(c->node->op_type);
  if (x->rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input 'data' has unknown rank");
  if (x->dtype == FLAGOS_STRING || x->dtype == FLAGOS_COMPLEX64 || x->dtype == FLAGOS_COMPLEX128)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input 'data' has unsupported dtype %s", flagos_dtype_name(x->dtype));
  if (x->dtype == FLAGOS_BOOL && kind != RED_MAX && kind != RED_MIN)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input 'data' of dtype bool is only allowed for ReduceMax/ReduceMin");
  int r = x->rank;
  bool keep = fir_attr_int(c->node, "keepdims", 1) != 0;
  bool noop = fir_attr_int(c->node, "noop_with_empty_axes", 0) != 0;

  bool known = axes_known(c);
  int64_t n_axes = 0;
  uint64_t mask = 0;
  if (axes_from_input(c)) {
    const ops_tensor_info_t *ax = &c->in[1];
    if (ax->rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'axes' must be 1-D, has rank %d", ax->rank);
    if (!flagos_dtype_is_int(ax->dtype)) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'axes' must be int64");
    n_axes = ax->dims[0];
    if (known) {
      for (int64_t i = 0; i < n_axes; i++) {
        int a;
        FL_TRY(ops_axis(c, ops_in_int(c, 1, i), r, &a));
        if (mask & (1ull << a)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis %d is repeated in 'axes'", a);
        mask |= 1ull << a;
      }
    }
  } else {
    const int64_t *ax;
    int n = fir_attr_ints(c->node, "axes", &ax);
    n_axes = n < 0 ? 0 : n;
    for (int i = 0; i < n; i++) {
      int a;
      FL_TRY(ops_axis(c, ax[i], r, &a));
      if (mask & (1ull << a)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "axis %d is repeated in 'axes'", a);
      mask |= 1ull << a;
    }
  }
  if (known && n_axes == 0 && !noop) mask = r ? (r >= 64 ? ~0ull : (1ull << r) - 1) : 0;

  int orank;
  if (keep)
    orank = r;
  else if (known)
    orank = r - __builtin_popcountll(mask);
  else if (n_axes >= 0)
    orank = n_axes == 0 ? (noop ? r : 0) : r - (int)n_axes;
  else
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED,
                   "keepdims=0 with 'axes' of unknown length leaves the output rank unknown");
  if (orank < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "more axes (%lld) than dims (%d)", (long long)n_axes, r);

  c->n_params = r + (keep ? 0 : orank);
  int64_t od[OPS_MAX_RANK];
  int j = 0;
  for (int i = 0; i < r; i++) {
    bool red = (mask >> i) & 1;
    c->params[i] = red;
    if (!known) {
      if (keep) od[i] = x->dims[i] == 1 ? 1 : -1;
      continue;
    }
    if (red && !keep) continue;
    if (!keep) c->params[r + j] = i;
    od[j++] = red ? 1 : x->dims[i];
  }
  if (!known && !keep)
    for (int i = 0; i < orank; i++)
      od[i] = -1;
  ops_set_out(c, 0, x->dtype, orank, od);
  return NULL;
}

/* Flags and outer (non-reduced) index of each input axis, for a kernel whose
 * vars follow the output's layout. */
static void reduce_axes(ops_ctx_t *c, kir_expr_t *const *v, kir_expr_t **flag, kir_expr_t **outer) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank, orank = c->out[0].rank;
  bool keep = fir_attr_int(c->node, "keepdims", 1) != 0;
  bool known = axes_known(c) || c->is_static;
  int j = 0;
  for (int i = 0; i < r; i++) {
    flag[i] = known ? kir_i64(a, c->params[i]) : ops_param(c, i);
    if (keep) {
      outer[i] = v[i];
    } else if (known) {
      outer[i] = c->params[i] ? kir_i64(a, 0) : v[j++];
    } else {
      kir_expr_t *o = kir_i64(a, 0);
      for (int q = 0; q < orank; q++)
        o = kir_add(a, o, kir_select(a, kir_bin(a, KIR_EQ, ops_param(c, r + q), kir_i64(a, i)), v[q], kir_i64(a, 0)));
      outer[i] = o;
    }
  }
}

/* ---- the split form of a reduction over leading axes ----
 * Reducing the leading axes of a [R, C] view (R rows of the reduced axes, C
 * elements of the kept trailing ones) gives C points of R iterations each: one
 * thread per column, too few threads on a GPU when R is long. Instead a first
 * kernel reduces chunks of RED_SPLIT_ROWS rows into a temp [ceil(R / rows), C]
 * (a thread per chunk and column: consecutive threads read consecutive columns)
 * and a second combines the chunks. Every combine is associative, so only the
 * order of floating-point additions changes, which no reduction promises. */
#define RED_SPLIT_ROWS 256
#define RED_SPLIT_MIN_ROWS 1024   /* shorter reductions stay one pass */
#define RED_SPLIT_MIN_COLS 16     /* fewer columns: too little to share per chunk */
#define RED_SPLIT_MAX_COLS (1 << 20) /* that many columns already fill a device */

/* Number of leading reduced axes p when the reduction may take the split form
 * (static shapes, reduced axes exactly 0..p-1, R and C in range), else 0. */
static int split_prefix(const ops_ctx_t *c, int64_t *rows, int64_t *cols) {
  int r = c->in[0].rank, p = 0;
  if (!c->is_static || r < 2) return 0;
  while (p < r && c->params[p]) p++;
  int64_t R = 1, C = 1;
  for (int i = 0; i < r; i++) {
    if (i >= p && c->params[i]) return 0;
    if (c->in[0].dims[i] < 0) return 0;
    if (i < p) R *= c->in[0].dims[i];
    else C *= c->in[0].dims[i];
  }
  if (p == 0 || p == r || R < RED_SPLIT_MIN_ROWS || C < RED_SPLIT_MIN_COLS || C > RED_SPLIT_MAX_COLS) return 0;
  *rows = R;
  *cols = C;
  return p;
}

/* The op the first pass applies to each element and the second to the chunks. */
static kir_op_t split_ops(red_kind_t kind, flagos_dtype_t acc, kir_op_t *second) {
  kir_op_t op = KIR_RSUM;
  if (kind == RED_MAX) op = acc == FLAGOS_BOOL ? KIR_RANY : KIR_RMAX;
  else if (kind == RED_MIN) op = acc == FLAGOS_BOOL ? KIR_RALL : KIR_RMIN;
  else if (kind == RED_PROD) op = KIR_RPROD;
  *second = op;
  return op;
}

static void reduce_lower_split(ops_ctx_t *c, int p, int64_t R, red_kind_t kind, flagos_dtype_t acc) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank;
  bool keep = fir_attr_int(c->node, "keepdims", 1) != 0;
  int64_t chunks = (R + RED_SPLIT_ROWS - 1) / RED_SPLIT_ROWS;
  kir_op_t op2, op1 = split_ops(kind, acc, &op2);

  /* pass 1: part[q, kept...] = op over rows q*ROWS .. min(R, (q+1)*ROWS) */
  kir_expr_t *td[OPS_MAX_RANK], *w[OPS_MAX_RANK], *rd[OPS_MAX_RANK], *idx[OPS_MAX_RANK];
  td[0] = kir_i64(a, chunks);
  for (int i = p; i < r; i++) td[1 + i - p] = ops_in_dim(c, 0, i);
  int t = ops_temp(c, acc, 1 + r - p, td), tb;
  kir_kernel_t *k = ops_red_temp_kernel(c, t, "part", w, &tb);
  int xb = ops_buf_in(c, k, 0);
  int rv = kir_new_var(k);
  kir_expr_t *first = kir_mul(a, w[0], kir_i64(a, RED_SPLIT_ROWS));
  kir_expr_t *ext = kir_bin(a, KIR_MIN, kir_i64(a, RED_SPLIT_ROWS), kir_bin(a, KIR_SUB, kir_i64(a, R), first));
  for (int i = 0; i < p; i++) rd[i] = ops_in_dim(c, 0, i);
  ops_red_unflatten(c, kir_add(a, first, kir_var(a, rv)), p, rd, idx);
  for (int i = p; i < r; i++) idx[i] = w[1 + i - p];
  kir_expr_t *x = ops_red_load(c, k, xb, idx, acc);
  if (kind == RED_L1) x = kir_un(a, KIR_ABS, x);
  else if (kind == RED_L2 || kind == RED_SUMSQUARE) x = kir_bin(a, KIR_MUL, x, x);
  kir_store(k, tb, w, kir_reduce(a, op1, 1, &rv, &ext, x), NULL);

  /* pass 2: the output combines the chunks of its column */
  kir_expr_t *v[OPS_MAX_RANK], *pi[OPS_MAX_RANK];
  k = ops_out_kernel(c, 0, "reduce", v);
  tb = ops_buf_temp(c, k, t);
  int qv = kir_new_var(k);
  pi[0] = kir_var(a, qv);
  for (int i = p; i < r; i++) pi[1 + i - p] = v[keep ? i : i - p];
  kir_expr_t *n = kir_i64(a, chunks), *y = kir_reduce(a, op2, 1, &qv, &n, kir_load(k, tb, pi));
  if (kind == RED_MEAN) y = kir_bin(a, KIR_DIV, y, kir_cast(a, acc, kir_i64(a, R)));
  else if (kind == RED_L2) y = kir_un(a, KIR_SQRT, y);
  else if (kind == RED_LOGSUM) y = kir_un(a, KIR_LOG, y);
  kir_store(k, 0, v, y, NULL);
}

static flagos_status_t reduce_lower(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  red_kind_t kind = red_kind_of(c->node->op_type);
  flagos_dtype_t xdt = c->in[0].dtype;
  bool real = kind == RED_L2 || kind == RED_LOGSUM || kind == RED_LOGSUMEXP || kind == RED_MEAN;
  flagos_dtype_t acc = ops_red_acc_dtype(xdt, real);
  kir_expr_t *v[OPS_MAX_RANK], *flag[OPS_MAX_RANK], *outer[OPS_MAX_RANK];

  int64_t rows, cols;
  int p = kind == RED_LOGSUMEXP ? 0 : split_prefix(c, &rows, &cols);
  if (p > 0) {
    reduce_lower_split(c, p, rows, kind, acc);
    return NULL;
  }

  int tmax = -1;
  if (kind == RED_LOGSUMEXP) {
    /* The row max goes to a temp first: inside the sum it would be recomputed per element. */
    kir_expr_t *od[OPS_MAX_RANK];
    for (int i = 0; i < c->out[0].rank; i++)
      od[i] = ops_out_dim(c, 0, i);
    tmax = ops_temp(c, acc, c->out[0].rank, od);
    int tb;
    kir_kernel_t *k = ops_red_temp_kernel(c, tmax, "rowmax", v, &tb);
    int xb = ops_buf_in(c, k, 0);
    reduce_axes(c, v, flag, outer);
    ops_red_space_t s;
    ops_red_space(c, k, xb, outer, flag, &s);
    kir_store(k, tb, v, ops_red_reduce(c, KIR_RMAX, &s, ops_red_load(c, k, xb, s.idx, acc)), NULL);
  }

  kir_kernel_t *k = ops_out_kernel(c, 0, "reduce", v);
  int xb = ops_buf_in(c, k, 0);
  reduce_axes(c, v, flag, outer);
  ops_red_space_t s;
  ops_red_space(c, k, xb, outer, flag, &s);
  kir_expr_t *x = ops_red_load(c, k, xb, s.idx, acc), *y = NULL;
  switch (kind) {
  case RED_SUM: y = ops_red_reduce(c, KIR_RSUM, &s, x); break;
  case RED_MEAN: y = kir_bin(a, KIR_DIV, ops_red_reduce(c, KIR_RSUM, &s, x), kir_cast(a, acc, s.count)); break;
  case RED_MAX: y = ops_red_reduce(c, acc == FLAGOS_BOOL ? KIR_RANY : KIR_RMAX, &s, x); break;
  case RED_MIN: y = ops_red_reduce(c, acc == FLAGOS_BOOL ? KIR_RALL : KIR_RMIN, &s, x); break;
  case RED_PROD: y = ops_red_reduce(c, KIR_RPROD, &s, x); break;
  case RED_L1: y = ops_red_reduce(c, KIR_RSUM, &s, kir_un(a, KIR_ABS, x)); break;
  case RED_L2: y = kir_un(a, KIR_SQRT, ops_red_reduce(c, KIR_RSUM, &s, kir_bin(a, KIR_MUL, x, x))); break;
  case RED_SUMSQUARE: y = ops_red_reduce(c, KIR_RSUM, &s, kir_bin(a, KIR_MUL, x, x)); break;
  case RED_LOGSUM: y = kir_un(a, KIR_LOG, ops_red_reduce(c, KIR_RSUM, &s, x)); break;
  case RED_LOGSUMEXP: {
    int tb = ops_buf_temp(c, k, tmax);
    kir_expr_t *m = kir_load(k, tb, v);
    /* An infinite max (all -inf, or some +inf) would make x - max NaN; shifting by 0
     * instead gives log(0) = -inf or log(inf) = inf, as the math says. */
    kir_expr_t *inf = kir_bin(a, KIR_OR, kir_un(a, KIR_ISINF_POS, m), kir_un(a, KIR_ISINF_NEG, m));
    m = kir_select(a, inf, ops_red_fconst(c, acc, 0), m);
    kir_expr_t *sum = ops_red_reduce(c, KIR_RSUM, &s, kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, x, m)));
    y = kir_bin(a, KIR_ADD, m, kir_un(a, KIR_LOG, sum));
    break;
  }
  }
  kir_store(k, 0, v, y, NULL);
  return NULL;
}

/* ---- ArgMax / ArgMin ---- */

static flagos_status_t arg_infer(ops_ctx_t *c) {
  if (c->n_in < 1 || !ops_has_in(c, 0)) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing input 'data'");
  const ops_tensor_info_t *x = &c->in[0];
  if (x->rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input 'data' has unknown rank");
  if (!flagos_dtype_is_float(x->dtype) && !flagos_dtype_is_int(x->dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "input 'data' has unsupported dtype %s", flagos_dtype_name(x->dtype));
  int axis;
  FL_TRY(ops_axis(c, fir_attr_int(c->node, "axis", 0), x->rank, &axis));
  if (x->rank == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "input 'data' is a scalar");
  if (x->dims[axis] == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "axis %d has no elements to pick from", axis);
  bool keep = fir_attr_int(c->node, "keepdims", 1) != 0;
  int64_t od[OPS_MAX_RANK];
  int j = 0;
  for (int i = 0; i < x->rank; i++) {
    if (i == axis) {
      if (keep) od[j++] = 1;
    } else {
      od[j++] = x->dims[i];
    }
  }
  c->n_params = 1;
  c->params[0] = axis;
  ops_set_out(c, 0, FLAGOS_INT64, j, od);
  return NULL;
}

static flagos_status_t arg_lower(ops_ctx_t *c, bool is_max) {
  fl_arena_t *a = c->arena;
  int r = c->in[0].rank, axis = (int)c->params[0];
  bool keep = fir_attr_int(c->node, "keepdims", 1) != 0;
  bool last = fir_attr_int(c->node, "select_last_index", 0) != 0;
  flagos_dtype_t dt = c->in[0].dtype;
  kir_expr_t *flag[OPS_MAX_RANK], *kd[OPS_MAX_RANK], *v[OPS_MAX_RANK], *outer[OPS_MAX_RANK];
  ops_red_flags_mask(c, r, 1ull << axis, flag);
  ops_red_keep_dims(c, 0, flag, kd);

  /* Pass 1: the extreme value of each row. */
  int t = ops_temp(c, dt, r, kd), tb;
  kir_kernel_t *k = ops_red_temp_kernel(c, t, "extreme", v, &tb);
  int xb = ops_buf_in(c, k, 0);
  ops_red_space_t s;
  ops_red_space(c, k, xb, v, flag, &s);
  kir_store(k, tb, v, ops_red_reduce(c, is_max ? KIR_RMAX : KIR_RMIN, &s, kir_load(k, xb, s.idx)), NULL);

  /* Pass 2: the first (or last) index holding it. */
  k = ops_out_kernel(c, 0, "index", v);
  xb = ops_buf_in(c, k, 0);
  tb = ops_buf_temp(c, k, t);
  for (int i = 0, j = 0; i < r; i++) {
    if (i == axis) {
      outer[i] = kir_i64(a, 0);
      if (keep) j++;
    } else {
      outer[i] = v[j++];
    }
  }
  ops_red_space(c, k, xb, outer, flag, &s);
  kir_expr_t *xv = kir_load(k, xb, s.idx), *m = kir_load(k, tb, outer);
  kir_expr_t *hit = kir_bin(a, KIR_EQ, xv, m);
  /* Max/min propagate NaN, so a NaN row extreme is found at the NaN elements. */
  if (flagos_dtype_is_float(dt)) hit = kir_bin(a, KIR_OR, hit, kir_un(a, KIR_ISNAN, xv));
  kir_expr_t *j = kir_var(a, s.rvars[0]);
  kir_expr_t *idx = last ? ops_red_reduce(c, KIR_RMAX, &s, kir_select(a, hit, j, kir_i64(a, -1)))
                         : ops_red_reduce(c, KIR_RMIN, &s, kir_select(a, hit, j, ops_in_dim(c, 0, axis)));
  kir_store(k, 0, v, idx, NULL);
  return NULL;
}

static flagos_status_t argmax_lower(ops_ctx_t *c) { return arg_lower(c, true); }
static flagos_status_t argmin_lower(ops_ctx_t *c) { return arg_lower(c, false); }

#define REDUCE(name)                                                                                                   \
  { name, "", 2, reduce_infer, reduce_lower, ops_red_flops_in0 }
const ops_def_t ops_family_reduce[] = {
    REDUCE("ReduceSum"),
    REDUCE("ReduceMean"),
    REDUCE("ReduceMax"),
    REDUCE("ReduceMin"),
    REDUCE("ReduceProd"),
    REDUCE("ReduceL1"),
    REDUCE("ReduceL2"),
    REDUCE("ReduceLogSum"),
    REDUCE("ReduceLogSumExp"),
    REDUCE("ReduceSumSquare"),
    {"ArgMax", "", 0, arg_infer, argmax_lower, ops_red_flops_in0},
    {"ArgMin", "", 0, arg_infer, argmin_lower, ops_red_flops_in0},
    {"CumSum", "", 2, ops_red_cum_infer, ops_red_cumsum_lower, ops_red_flops_in0},
    {"CumProd", "", 2, ops_red_cum_infer, ops_red_cumprod_lower, ops_red_flops_in0},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

/* Random family: RandomUniform, RandomNormal, RandomUniformLike,
 * RandomNormalLike, Bernoulli and Multinomial.
 *
 * Kernels have no state, so numbers come from a counter-based generator: the
 * value at flat output index i is a pure function of (key, i), which any backend
 * computes in parallel with integer ops alone. The function is SplitMix64's
 * output step on the state key + (i + 1) * golden; it passes BigCrush as a
 * stream and is cheap (two multiplies). The key comes from the `seed` attribute
 * (the same seed gives the same tensor on every backend and every run) or, when
 * no seed is given, from a hash of the node's names, so unseeded nodes differ
 * from one another but repeat from run to run: a kernel cannot draw a fresh
 * seed per run. ONNX's reference draws from NumPy's Mersenne Twister, which this
 * does not reproduce, so conformance outputs can only match in shape and dtype.
 *
 * Uniform numbers take the top mantissa-width bits of a draw, so they lie in
 * [0, 1) in the output type; normal numbers use Box-Muller on two draws. */
#include <math.h>
#include <string.h>

#include "ops/elementwise.h"
#include "ops/shape_util.h"

#define RND_GOLDEN UINT64_C(0x9E3779B97F4A7C15)

static uint64_t rnd_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* The generator key of the node: from `seed` when given, else from its names. */
static uint64_t rnd_key(const ops_ctx_t *c) {
  const fir_attr_t *s = fir_node_attr(c->node, "seed");
  if (s) {
    double d = s->f;
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return rnd_mix(bits ^ UINT64_C(0x5EED5EED5EED5EED));
  }
  uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
  const char *parts[3] = {c->node->op_type, c->node->name,
                          c->node->n_outputs > 0 && c->node->outputs[0] ? c->node->outputs[0]->name : NULL};
  for (int p = 0; p < 3; p++) {
    for (const char *q = parts[p]; q && *q; q++) h = (h ^ (unsigned char)*q) * UINT64_C(1099511628211);
    h = (h ^ 0xff) * UINT64_C(1099511628211);
  }
  return rnd_mix(h);
}

static kir_expr_t *u64(fl_arena_t *a, uint64_t v) { return kir_const_int(a, FLAGOS_UINT64, (int64_t)v); }

/* 64 random bits for int64 counter i. */
static kir_expr_t *rnd_bits(fl_arena_t *a, uint64_t key, kir_expr_t *i) {
  kir_expr_t *z = kir_bin(a, KIR_ADD, u64(a, key),
                          kir_bin(a, KIR_MUL, kir_bitcast(a, FLAGOS_UINT64, kir_add(a, i, kir_i64(a, 1))), u64(a, RND_GOLDEN)));
  z = kir_bin(a, KIR_MUL, kir_bin(a, KIR_BITXOR, z, kir_bin(a, KIR_SHR, z, u64(a, 30))), u64(a, UINT64_C(0xBF58476D1CE4E5B9)));
  z = kir_bin(a, KIR_MUL, kir_bin(a, KIR_BITXOR, z, kir_bin(a, KIR_SHR, z, u64(a, 27))), u64(a, UINT64_C(0x94D049BB133111EB)));
  return kir_bin(a, KIR_BITXOR, z, kir_bin(a, KIR_SHR, z, u64(a, 31)));
}

/* Significant bits of dtype dt (with the implicit one): a uniform number with
 * that many bits is exact in dt, so it never rounds up to 1. */
static int rnd_mant_bits(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_FLOAT64: return 53;
  case FLAGOS_FLOAT16: return 11;
  case FLAGOS_BFLOAT16: return 8;
  default: return 24;
  }
}

/* A uniform f64 in [0, 1) with `bits` random bits, from counter i. */
static kir_expr_t *rnd_unit(fl_arena_t *a, uint64_t key, kir_expr_t *i, int bits) {
  kir_expr_t *top = kir_bin(a, KIR_SHR, rnd_bits(a, key, i), u64(a, (uint64_t)(64 - bits)));
  kir_expr_t *f = kir_cast(a, FLAGOS_FLOAT64, kir_bitcast(a, FLAGOS_INT64, top));
  return kir_bin(a, KIR_MUL, f, kir_const(a, FLAGOS_FLOAT64, ldexp(1.0, -bits)));
}

/* A standard normal f64 from counters 2i and 2i+1 (Box-Muller). */
static kir_expr_t *rnd_normal(fl_arena_t *a, uint64_t key, kir_expr_t *i) {
  kir_expr_t *i2 = kir_mul(a, i, kir_i64(a, 2));
  /* 1 - u lies in (0, 1], so the logarithm is finite. */
  kir_expr_t *u1 = kir_bin(a, KIR_SUB, kir_const(a, FLAGOS_FLOAT64, 1.0), rnd_unit(a, key, i2, 53));
  kir_expr_t *u2 = rnd_unit(a, key, kir_add(a, i2, kir_i64(a, 1)), 53);
  kir_expr_t *rad = kir_un(a, KIR_SQRT, kir_bin(a, KIR_MUL, kir_const(a, FLAGOS_FLOAT64, -2.0), kir_un(a, KIR_LOG, u1)));
  kir_expr_t *ang = kir_bin(a, KIR_MUL, kir_const(a, FLAGOS_FLOAT64, 2.0 * M_PI), u2);
  return kir_bin(a, KIR_MUL, rad, kir_un(a, KIR_COS, ang));
}

/* Flat row-major index of output k at vars v. */
static kir_expr_t *flat_index(ops_ctx_t *c, int k, kir_expr_t *const *v) {
  kir_expr_t *dims[OPS_MAX_RANK];
  ops_sh_out_dims(c, k, dims);
  return ops_sh_linear(c->arena, c->out[k].rank, v, dims);
}

#define RND_FLOATS OPS_DT_FLOATS

/* Output dtype from attribute `dtype`, else `dflt` (FLAGOS_UNDEFINED: required). */
static flagos_status_t out_dtype(ops_ctx_t *c, flagos_dtype_t dflt, uint64_t allowed, flagos_dtype_t *dt) {
  const fir_attr_t *at = fir_node_attr(c->node, "dtype");
  flagos_dtype_t d = at ? (flagos_dtype_t)at->i : dflt;
  if (d == FLAGOS_UNDEFINED) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the output dtype is not given");
  if (!ops_dt_in(d, allowed))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "output dtype %s is not allowed here",
                   d > 0 && d < FLAGOS_DTYPE_COUNT ? flagos_dtype_name(d) : "(invalid)");
  *dt = d;
  return NULL;
}

/* ---- RandomUniform / RandomNormal (shape from the attribute) ---- */
static flagos_status_t infer_random(ops_ctx_t *c) {
  if (c->n_in != 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "takes no inputs, got %d", c->n_in);
  const int64_t *shape;
  int r = fir_attr_ints(c->node, "shape", &shape);
  if (r < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "missing required attribute 'shape'");
  if (r > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "shape has rank %d (at most %d)", r, OPS_MAX_RANK);
  for (int i = 0; i < r; i++)
    if (shape[i] < 0) return ops_err(c, FLAGOS_ERR_SHAPE, "shape entry %d is negative (%lld)", i, (long long)shape[i]);
  flagos_dtype_t dt;
  FL_TRY(out_dtype(c, FLAGOS_FLOAT32, RND_FLOATS, &dt));
  ops_set_out(c, 0, dt, r, shape);
  return NULL;
}

/* ---- RandomUniformLike / RandomNormalLike (shape of the input) ---- */
static flagos_status_t infer_random_like(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  /* Only the input's shape is used, so any element type will do (strings too). */
  if (!ops_has_in(c, 0) || c->in[0].kind != FIR_TYPE_TENSOR || c->in[0].rank < 0)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "input 0 must be a tensor of known rank");
  flagos_dtype_t in = c->in[0].dtype, dt;
  FL_TRY(out_dtype(c, ops_dt_in(in, RND_FLOATS) ? in : FLAGOS_UNDEFINED, RND_FLOATS, &dt));
  ops_set_out(c, 0, dt, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static bool is_normal(const ops_ctx_t *c) { return strstr(c->node->op_type, "Normal") != NULL; }

static flagos_status_t lower_random(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  flagos_dtype_t dt = c->out[0].dtype;
  uint64_t key = rnd_key(c);
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "random", v);
  kir_expr_t *i = flat_index(c, 0, v), *y;
  if (is_normal(c)) {
    double mean = fir_attr_float(c->node, "mean", 0.0f), scale = fir_attr_float(c->node, "scale", 1.0f);
    y = kir_bin(a, KIR_ADD, kir_bin(a, KIR_MUL, rnd_normal(a, key, i), kir_const(a, FLAGOS_FLOAT64, scale)),
                kir_const(a, FLAGOS_FLOAT64, mean));
  } else {
    double lo = fir_attr_float(c->node, "low", 0.0f), hi = fir_attr_float(c->node, "high", 1.0f);
    y = kir_bin(a, KIR_ADD, kir_bin(a, KIR_MUL, rnd_unit(a, key, i, rnd_mant_bits(dt)), kir_const(a, FLAGOS_FLOAT64, hi - lo)),
                kir_const(a, FLAGOS_FLOAT64, lo));
  }
  kir_store(k, 0, v, kir_cast(a, dt, y), NULL);
  return NULL;
}

/* ---- Bernoulli: y = 1 with probability x ---- */
static flagos_status_t infer_bernoulli(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, RND_FLOATS));
  flagos_dtype_t dt;
  FL_TRY(out_dtype(c, c->in[0].dtype, OPS_DT_NUMERIC | OPS_DT_BOOL, &dt));
  ops_set_out(c, 0, dt, c->in[0].rank, c->in[0].dims);
  return NULL;
}

static flagos_status_t lower_bernoulli(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *k = ops_out_kernel(c, 0, "bernoulli", v);
  kir_expr_t *p = kir_cast(a, FLAGOS_FLOAT64, kir_load(k, ops_buf_in(c, k, 0), v));
  /* u < p with u in [0, 1): never for p <= 0, always for p >= 1. */
  kir_expr_t *hit = kir_bin(a, KIR_LT, rnd_unit(a, rnd_key(c), flat_index(c, 0, v), 53), p);
  flagos_dtype_t dt = c->out[0].dtype;
  kir_store(k, 0, v, dt == FLAGOS_BOOL ? hit : kir_cast(a, dt, hit), NULL);
  return NULL;
}

/* ---- Multinomial: sample_size class indices per row of log-probabilities ----
 * mx[b] = max_j x[b,j]; cdf[b,j] = sum_{k<=j} exp(x[b,k] - mx[b]) (a serial scan:
 * O(classes) instead of O(classes^2)); sample s of row b is the number of
 * classes whose cdf lies at or below u * cdf[b, last], i.e. the first class
 * whose cdf exceeds it. */
static flagos_status_t infer_multinomial(ops_ctx_t *c) {
  FL_TRY(ops_ew_check_count(c, 1, 1));
  FL_TRY(ops_ew_check_in(c, 0, RND_FLOATS));
  if (c->in[0].rank != 2)
    return ops_err(c, FLAGOS_ERR_SHAPE, "input must be [batch_size, class_size], has rank %d", c->in[0].rank);
  if (c->in[0].dims[1] == 0) return ops_err(c, FLAGOS_ERR_SHAPE, "input has no classes");
  int64_t s = fir_attr_int(c->node, "sample_size", 1);
  if (s < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "sample_size is negative (%lld)", (long long)s);
  flagos_dtype_t dt;
  FL_TRY(out_dtype(c, FLAGOS_INT32, OPS_DT(FLAGOS_INT32) | OPS_DT(FLAGOS_INT64), &dt));
  int64_t d[2] = {c->in[0].dims[0], s};
  ops_set_out(c, 0, dt, 2, d);
  return NULL;
}

static flagos_status_t lower_multinomial(ops_ctx_t *c) {
  fl_arena_t *a = c->arena;
  kir_expr_t *B = ops_in_dim(c, 0, 0), *C = ops_in_dim(c, 0, 1), *v[OPS_MAX_RANK], *idx[2];

  int tmax = ops_temp(c, FLAGOS_FLOAT64, 1, &B);
  kir_kernel_t *k = ops_kernel(c, "rowmax");
  int tb = ops_buf_temp(c, k, tmax), xb = ops_buf_in(c, k, 0);
  kir_set_space(k, 1, &B, v);
  int jv = kir_new_var(k);
  idx[0] = v[0];
  idx[1] = kir_var(a, jv);
  kir_store(k, tb, v, kir_reduce(a, KIR_RMAX, 1, &jv, &C, kir_cast(a, FLAGOS_FLOAT64, kir_load(k, xb, idx))), NULL);

  kir_expr_t *bc[2] = {B, C};
  int tcdf = ops_temp(c, FLAGOS_FLOAT64, 2, bc);
  k = ops_kernel(c, "cdf");
  k->serial = true;
  tb = ops_buf_temp(c, k, tcdf);
  xb = ops_buf_in(c, k, 0);
  int mb = ops_buf_temp(c, k, tmax);
  kir_set_space(k, 2, bc, v);
  kir_expr_t *e = kir_un(a, KIR_EXP, kir_bin(a, KIR_SUB, kir_cast(a, FLAGOS_FLOAT64, kir_load(k, xb, v)), kir_load(k, mb, v)));
  /* NaN or -inf rows give zero weights rather than poisoning the scan. */
  e = kir_select(a, kir_un(a, KIR_ISNAN, e), kir_const(a, FLAGOS_FLOAT64, 0.0), e);
  kir_expr_t *prev_idx[2] = {v[0], kir_sub(a, v[1], kir_i64(a, 1))};
  kir_expr_t *prev = kir_select(a, kir_bin(a, KIR_GT, v[1], kir_i64(a, 0)), kir_load(k, tb, prev_idx),
                                kir_const(a, FLAGOS_FLOAT64, 0.0));
  kir_store(k, tb, v, kir_bin(a, KIR_ADD, prev, e), NULL);

  k = ops_out_kernel(c, 0, "sample", v);
  int cb = ops_buf_temp(c, k, tcdf);
  kir_expr_t *last[2] = {v[0], kir_sub(a, C, kir_i64(a, 1))};
  kir_expr_t *target = kir_bin(a, KIR_MUL, rnd_unit(a, rnd_key(c), flat_index(c, 0, v), 53), kir_load(k, cb, last));
  jv = kir_new_var(k);
  kir_expr_t *at[2] = {v[0], kir_var(a, jv)};
  kir_expr_t *below = kir_cast(a, FLAGOS_INT64, kir_bin(a, KIR_LE, kir_load(k, cb, at), target));
  kir_expr_t *cls = kir_bin(a, KIR_MIN, kir_reduce(a, KIR_RSUM, 1, &jv, &C, below), kir_sub(a, C, kir_i64(a, 1)));
  kir_store(k, 0, v, kir_cast(a, c->out[0].dtype, cls), NULL);
  return NULL;
}

static double flops_multinomial(const ops_ctx_t *c) {
  const ops_tensor_info_t *x = &c->in[0];
  if (x->numel < 0 || c->out[0].numel < 0) return 0;
  return 3.0 * (double)x->numel + (double)c->out[0].numel * (double)x->dims[1];
}

#define RND_ENTRY(name, inf, low) {.op_type = name, .domain = "", .infer = inf, .lower = low}
const ops_def_t ops_family_random[] = {
    RND_ENTRY("RandomUniform", infer_random, lower_random),
    RND_ENTRY("RandomNormal", infer_random, lower_random),
    RND_ENTRY("RandomUniformLike", infer_random_like, lower_random),
    RND_ENTRY("RandomNormalLike", infer_random_like, lower_random),
    RND_ENTRY("Bernoulli", infer_bernoulli, lower_bernoulli),
    {.op_type = "Multinomial", .domain = "", .infer = infer_multinomial, .lower = lower_multinomial,
     .flops = flops_multinomial},
    {.op_type = NULL},
};
#undef RND_ENTRY

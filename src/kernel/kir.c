#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kir.h"

static const char *const k_op_names[KIR_OP_COUNT] = {
    [KIR_NEG] = "neg", [KIR_ABS] = "abs", [KIR_NOT] = "not", [KIR_BITNOT] = "bitnot", [KIR_EXP] = "exp",
    [KIR_LOG] = "log", [KIR_SQRT] = "sqrt", [KIR_SIN] = "sin", [KIR_COS] = "cos", [KIR_TAN] = "tan",
    [KIR_ASIN] = "asin", [KIR_ACOS] = "acos", [KIR_ATAN] = "atan", [KIR_SINH] = "sinh", [KIR_COSH] = "cosh",
    [KIR_TANH] = "tanh", [KIR_ASINH] = "asinh", [KIR_ACOSH] = "acosh", [KIR_ATANH] = "atanh", [KIR_ERF] = "erf",
    [KIR_FLOOR] = "floor", [KIR_CEIL] = "ceil", [KIR_ROUND] = "round", [KIR_SIGN] = "sign",
    [KIR_ISNAN] = "isnan", [KIR_ISINF_POS] = "isinf_pos", [KIR_ISINF_NEG] = "isinf_neg", [KIR_LOG1P] = "log1p",
    [KIR_EXPM1] = "expm1", [KIR_ADD] = "add", [KIR_SUB] = "sub", [KIR_MUL] = "mul", [KIR_DIV] = "div",
    [KIR_MOD] = "mod", [KIR_FLOORDIV] = "floordiv", [KIR_FLOORMOD] = "floormod", [KIR_POW] = "pow",
    [KIR_MIN] = "min", [KIR_MAX] = "max", [KIR_ATAN2] = "atan2", [KIR_EQ] = "eq", [KIR_NE] = "ne",
    [KIR_LT] = "lt", [KIR_LE] = "le", [KIR_GT] = "gt", [KIR_GE] = "ge", [KIR_AND] = "and", [KIR_OR] = "or",
    [KIR_XOR] = "xor", [KIR_BITAND] = "bitand", [KIR_BITOR] = "bitor", [KIR_BITXOR] = "bitxor",
    [KIR_SHL] = "shl", [KIR_SHR] = "shr", [KIR_RSUM] = "rsum", [KIR_RPROD] = "rprod", [KIR_RMIN] = "rmin",
    [KIR_RMAX] = "rmax", [KIR_RANY] = "rany", [KIR_RALL] = "rall",
};

const char *kir_op_name(kir_op_t op) { return (unsigned)op < KIR_OP_COUNT ? k_op_names[op] : "?"; }

bool kir_op_is_compare(kir_op_t op) { return op >= KIR_EQ && op <= KIR_GE; }

flagos_dtype_t kir_compute_dtype(flagos_dtype_t dt) {
  switch (dt) {
  case FLAGOS_FLOAT16:
  case FLAGOS_BFLOAT16:
  case FLAGOS_FLOAT8E4M3FN:
  case FLAGOS_FLOAT8E4M3FNUZ:
  case FLAGOS_FLOAT8E5M2:
  case FLAGOS_FLOAT8E5M2FNUZ:
  case FLAGOS_FLOAT4E2M1:
  case FLAGOS_FLOAT8E8M0: return FLAGOS_FLOAT32;
  case FLAGOS_INT4:
  case FLAGOS_UINT4:
  case FLAGOS_INT2:
  case FLAGOS_UINT2: return FLAGOS_INT32;
  default: return dt;
  }
}

/* A type error in a lowering is a FlagOS bug, not bad user input. */
static void bug(const char *what, kir_op_t op, flagos_dtype_t a, flagos_dtype_t b) {
  fprintf(stderr, "flagos: internal error in kernel IR: %s (op %s, dtypes %s and %s)\n", what, kir_op_name(op),
          flagos_dtype_name(a), flagos_dtype_name(b));
  abort();
}

static kir_expr_t *node(fl_arena_t *a, kir_kind_t kind, flagos_dtype_t dt, int n) {
  kir_expr_t *e = fl_arena_alloc(a, sizeof(*e));
  e->kind = kind;
  e->dtype = dt;
  e->n = n;
  if (n) e->a = fl_arena_alloc(a, sizeof(*e->a) * (size_t)n);
  return e;
}

kir_kernel_t *kir_kernel_create(fl_arena_t *a, const char *name) {
  kir_kernel_t *k = fl_arena_alloc(a, sizeof(*k));
  k->arena = a;
  k->name = fl_arena_strdup(a, name);
  return k;
}

int kir_add_buf(kir_kernel_t *k, const char *name, flagos_dtype_t dt, int rank, kir_expr_t *const *dims) {
  if (k->n_bufs == k->cap_bufs) {
    int nc = k->cap_bufs ? k->cap_bufs * 2 : 8;
    kir_buf_t *nb = fl_arena_alloc(k->arena, sizeof(*nb) * (size_t)nc);
    if (k->n_bufs) memcpy(nb, k->bufs, sizeof(*nb) * (size_t)k->n_bufs);
    k->bufs = nb;
    k->cap_bufs = nc;
  }
  kir_buf_t *b = &k->bufs[k->n_bufs];
  b->name = fl_arena_strdup(k->arena, name ? name : "b");
  b->dtype = dt;
  b->rank = rank;
  b->dims = fl_arena_alloc(k->arena, sizeof(*b->dims) * (size_t)(rank > 0 ? rank : 1));
  for (int i = 0; i < rank; i++) b->dims[i] = dims[i];
  return k->n_bufs++;
}

int kir_new_var(kir_kernel_t *k) { return k->next_var++; }

void kir_set_space(kir_kernel_t *k, int rank, kir_expr_t *const *extents, kir_expr_t **vars_out) {
  k->rank = rank;
  k->vars = fl_arena_alloc(k->arena, sizeof(int) * (size_t)(rank > 0 ? rank : 1));
  k->extents = fl_arena_alloc(k->arena, sizeof(*k->extents) * (size_t)(rank > 0 ? rank : 1));
  for (int i = 0; i < rank; i++) {
    k->vars[i] = kir_new_var(k);
    k->extents[i] = extents[i];
    if (vars_out) vars_out[i] = kir_var(k->arena, k->vars[i]);
  }
}

void kir_store(kir_kernel_t *k, int buf, kir_expr_t *const *idx, kir_expr_t *value, kir_expr_t *cond) {
  if (k->n_stores == k->cap_stores) {
    int nc = k->cap_stores ? k->cap_stores * 2 : 4;
    kir_store_t *ns = fl_arena_alloc(k->arena, sizeof(*ns) * (size_t)nc);
    if (k->n_stores) memcpy(ns, k->stores, sizeof(*ns) * (size_t)k->n_stores);
    k->stores = ns;
    k->cap_stores = nc;
  }
  kir_buf_t *b = &k->bufs[buf];
  b->written = true;
  kir_store_t *s = &k->stores[k->n_stores++];
  s->buf = buf;
  s->idx = fl_arena_alloc(k->arena, sizeof(*s->idx) * (size_t)(b->rank > 0 ? b->rank : 1));
  for (int i = 0; i < b->rank; i++) s->idx[i] = idx[i];
  s->value = value;
  s->cond = cond;
}

kir_expr_t *kir_const_int(fl_arena_t *a, flagos_dtype_t dt, int64_t v) {
  kir_expr_t *e = node(a, KIR_CONST, dt, 0);
  e->ci = v;
  e->cf = (double)v;
  return e;
}

kir_expr_t *kir_i64(fl_arena_t *a, int64_t v) { return kir_const_int(a, FLAGOS_INT64, v); }

kir_expr_t *kir_bool(fl_arena_t *a, bool v) { return kir_const_int(a, FLAGOS_BOOL, v ? 1 : 0); }

kir_expr_t *kir_const(fl_arena_t *a, flagos_dtype_t dt, double v) {
  kir_expr_t *e = node(a, KIR_CONST, dt, 0);
  e->cf = v;
  e->ci = flagos_dtype_is_float(dt) ? 0 : (int64_t)v;
  if (!flagos_dtype_is_float(dt)) e->cf = (double)e->ci;
  return e;
}

kir_expr_t *kir_var(fl_arena_t *a, int var) {
  kir_expr_t *e = node(a, KIR_VAR, FLAGOS_INT64, 0);
  e->var = var;
  return e;
}

kir_expr_t *kir_sym(fl_arena_t *a, int sym) {
  kir_expr_t *e = node(a, KIR_SYM, FLAGOS_INT64, 0);
  e->sym = sym;
  return e;
}

kir_expr_t *kir_load(kir_kernel_t *k, int buf, kir_expr_t *const *idx) {
  kir_buf_t *b = &k->bufs[buf];
  kir_expr_t *e = node(k->arena, KIR_LOAD, b->dtype, b->rank);
  e->buf = buf;
  for (int i = 0; i < b->rank; i++) {
    if (idx[i]->dtype != FLAGOS_INT64) bug("load index is not int64", KIR_ADD, idx[i]->dtype, FLAGOS_INT64);
    e->a[i] = idx[i];
  }
  return e;
}

static bool is_int_const(const kir_expr_t *e) { return e->kind == KIR_CONST && !flagos_dtype_is_float(e->dtype); }

bool kir_is_const(const kir_expr_t *e, int64_t v) { return is_int_const(e) && e->ci == v; }

static flagos_dtype_t unary_result(kir_op_t op, flagos_dtype_t dt) {
  if (op == KIR_ISNAN || op == KIR_ISINF_POS || op == KIR_ISINF_NEG) return FLAGOS_BOOL;
  return dt;
}

kir_expr_t *kir_un(fl_arena_t *a, kir_op_t op, kir_expr_t *x) {
  if (op == KIR_NOT && x->dtype != FLAGOS_BOOL) bug("not of a non-bool", op, x->dtype, x->dtype);
  if (is_int_const(x) && x->dtype == FLAGOS_INT64) {
    if (op == KIR_NEG) return kir_i64(a, -x->ci);
    if (op == KIR_ABS) return kir_i64(a, x->ci < 0 ? -x->ci : x->ci);
  }
  if (op == KIR_NOT && x->kind == KIR_CONST) return kir_bool(a, !x->ci);
  kir_expr_t *e = node(a, KIR_UNARY, unary_result(op, x->dtype), 1);
  e->op = op;
  e->a[0] = x;
  return e;
}

static int64_t floordiv64(int64_t x, int64_t y) {
  int64_t q = x / y;
  if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
  return q;
}

static int64_t floormod64(int64_t x, int64_t y) {
  int64_t r = x % y;
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}

/* Folds int64 arithmetic on constants and the identities that static shapes create. */
static kir_expr_t *fold_int(fl_arena_t *a, kir_op_t op, kir_expr_t *x, kir_expr_t *y) {
  bool cx = is_int_const(x), cy = is_int_const(y);
  if (cx && cy) {
    int64_t p = x->ci, q = y->ci;
    switch (op) {
    case KIR_ADD: return kir_i64(a, p + q);
    case KIR_SUB: return kir_i64(a, p - q);
    case KIR_MUL: return kir_i64(a, p * q);
    case KIR_DIV: return q ? kir_i64(a, p / q) : NULL;
    case KIR_MOD: return q ? kir_i64(a, p % q) : NULL;
    case KIR_FLOORDIV: return q ? kir_i64(a, floordiv64(p, q)) : NULL;
    case KIR_FLOORMOD: return q ? kir_i64(a, floormod64(p, q)) : NULL;
    case KIR_MIN: return kir_i64(a, p < q ? p : q);
    case KIR_MAX: return kir_i64(a, p > q ? p : q);
    case KIR_EQ: return kir_bool(a, p == q);
    case KIR_NE: return kir_bool(a, p != q);
    case KIR_LT: return kir_bool(a, p < q);
    case KIR_LE: return kir_bool(a, p <= q);
    case KIR_GT: return kir_bool(a, p > q);
    case KIR_GE: return kir_bool(a, p >= q);
    default: return NULL;
    }
  }
  switch (op) {
  case KIR_ADD:
    if (cx && x->ci == 0) return y;
    if (cy && y->ci == 0) return x;
    break;
  case KIR_SUB:
    if (cy && y->ci == 0) return x;
    break;
  case KIR_MUL:
    if ((cx && x->ci == 0) || (cy && y->ci == 0)) return kir_i64(a, 0);
    if (cx && x->ci == 1) return y;
    if (cy && y->ci == 1) return x;
    break;
  case KIR_DIV:
  case KIR_FLOORDIV:
    if (cy && y->ci == 1) return x;
    break;
  case KIR_MOD:
  case KIR_FLOORMOD:
    if (cy && (y->ci == 1 || y->ci == -1)) return kir_i64(a, 0);
    break;
  default: break;
  }
  return NULL;
}

kir_expr_t *kir_bin(fl_arena_t *a, kir_op_t op, kir_expr_t *x, kir_expr_t *y) {
  if (op < KIR_ADD || op > KIR_SHR) bug("not a binary op", op, x->dtype, y->dtype);
  if (x->dtype != y->dtype) bug("operand dtypes differ", op, x->dtype, y->dtype);
  if ((op == KIR_AND || op == KIR_OR || op == KIR_XOR) && x->dtype != FLAGOS_BOOL) bug("logic op on non-bool", op, x->dtype, y->dtype);
  if (x->dtype == FLAGOS_INT64) {
    kir_expr_t *f = fold_int(a, op, x, y);
    if (f) return f;
  }
  if (x->dtype == FLAGOS_BOOL && x->kind == KIR_CONST && y->kind == KIR_CONST) {
    if (op == KIR_AND) return kir_bool(a, x->ci && y->ci);
    if (op == KIR_OR) return kir_bool(a, x->ci || y->ci);
  }
  if (x->dtype == FLAGOS_BOOL && op == KIR_AND) {
    if (x->kind == KIR_CONST) return x->ci ? y : x;
    if (y->kind == KIR_CONST) return y->ci ? x : y;
  }
  if (x->dtype == FLAGOS_BOOL && op == KIR_OR) {
    if (x->kind == KIR_CONST) return x->ci ? x : y;
    if (y->kind == KIR_CONST) return y->ci ? y : x;
  }
  kir_expr_t *e = node(a, KIR_BINARY, kir_op_is_compare(op) ? FLAGOS_BOOL : x->dtype, 2);
  e->op = op;
  e->a[0] = x;
  e->a[1] = y;
  return e;
}

kir_expr_t *kir_select(fl_arena_t *a, kir_expr_t *c, kir_expr_t *x, kir_expr_t *y) {
  if (c->dtype != FLAGOS_BOOL) bug("select condition is not bool", KIR_AND, c->dtype, FLAGOS_BOOL);
  if (x->dtype != y->dtype) bug("select operands differ", KIR_AND, x->dtype, y->dtype);
  if (c->kind == KIR_CONST) return c->ci ? x : y;
  kir_expr_t *e = node(a, KIR_SELECT, x->dtype, 3);
  e->a[0] = c;
  e->a[1] = x;
  e->a[2] = y;
  return e;
}

kir_expr_t *kir_cast_sat(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *x, bool saturate) {
  if (x->dtype == dt) return x;
  if (is_int_const(x) && (dt == FLAGOS_INT64 || dt == FLAGOS_INT32)) return kir_const_int(a, dt, x->ci);
  kir_expr_t *e = node(a, KIR_CAST, dt, 1);
  e->a[0] = x;
  e->sat = saturate;
  return e;
}

kir_expr_t *kir_cast(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *x) { return kir_cast_sat(a, dt, x, true); }

kir_expr_t *kir_bitcast(fl_arena_t *a, flagos_dtype_t dt, kir_expr_t *x) {
  if (x->dtype == dt) return x;
  if (flagos_dtype_size(dt) != flagos_dtype_size(x->dtype)) bug("bitcast between sizes", KIR_ADD, x->dtype, dt);
  kir_expr_t *e = node(a, KIR_BITCAST, dt, 1);
  e->a[0] = x;
  return e;
}

kir_expr_t *kir_reduce(fl_arena_t *a, kir_op_t op, int nr, const int *vars, kir_expr_t *const *ext, kir_expr_t *body) {
  if (op < KIR_RSUM || op > KIR_RALL) bug("not a reduction", op, body->dtype, body->dtype);
  if (nr == 0) return body;
  kir_expr_t *e = node(a, KIR_REDUCE, body->dtype, 1);
  e->op = op;
  e->a[0] = body;
  e->nr = nr;
  e->rvars = fl_arena_memdup(a, vars, sizeof(int) * (size_t)nr);
  e->rext = fl_arena_memdup(a, ext, sizeof(*ext) * (size_t)nr);
  return e;
}

kir_expr_t *kir_add(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y) { return kir_bin(a, KIR_ADD, x, y); }
kir_expr_t *kir_sub(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y) { return kir_bin(a, KIR_SUB, x, y); }
kir_expr_t *kir_mul(fl_arena_t *a, kir_expr_t *x, kir_expr_t *y) { return kir_bin(a, KIR_MUL, x, y); }

void kir_set_libcall(kir_kernel_t *k, const char *name, int n_bufs, const int *bufs, int n_ints,
                     kir_expr_t *const *ints, int n_floats, const double *floats) {
  kir_libcall_t *lc = fl_arena_alloc(k->arena, sizeof(*lc));
  lc->name = fl_arena_strdup(k->arena, name);
  lc->n_bufs = n_bufs;
  lc->bufs = fl_arena_memdup(k->arena, bufs, sizeof(int) * (size_t)n_bufs);
  lc->n_ints = n_ints;
  lc->ints = fl_arena_memdup(k->arena, ints, sizeof(*ints) * (size_t)n_ints);
  lc->n_floats = n_floats;
  lc->floats = fl_arena_memdup(k->arena, floats, sizeof(double) * (size_t)(n_floats ? n_floats : 1));
  lc->ends_node = false;
  lc->skip = 0;
  k->libcall = lc;
}

bool kir_eval_int(const kir_expr_t *e, const int64_t *syms, int n_syms, int64_t *out) {
  int64_t x, y, z;
  switch (e->kind) {
  case KIR_CONST:
    if (flagos_dtype_is_float(e->dtype)) return false;
    *out = e->ci;
    return true;
  case KIR_SYM:
    if (e->sym < 0 || e->sym >= n_syms) return false;
    *out = syms[e->sym];
    return true;
  case KIR_CAST:
    if (flagos_dtype_is_float(e->dtype)) return false;
    return kir_eval_int(e->a[0], syms, n_syms, out);
  case KIR_SELECT:
    if (!kir_eval_int(e->a[0], syms, n_syms, &x)) return false;
    return kir_eval_int(e->a[x ? 1 : 2], syms, n_syms, out);
  case KIR_UNARY:
    if (!kir_eval_int(e->a[0], syms, n_syms, &x)) return false;
    switch (e->op) {
    case KIR_NEG: *out = -x; return true;
    case KIR_ABS: *out = x < 0 ? -x : x; return true;
    case KIR_NOT: *out = !x; return true;
    default: return false;
    }
  case KIR_BINARY:
    if (!kir_eval_int(e->a[0], syms, n_syms, &x) || !kir_eval_int(e->a[1], syms, n_syms, &y)) return false;
    switch (e->op) {
    case KIR_ADD: z = x + y; break;
    case KIR_SUB: z = x - y; break;
    case KIR_MUL: z = x * y; break;
    case KIR_DIV: if (!y) return false; z = x / y; break;
    case KIR_MOD: if (!y) return false; z = x % y; break;
    case KIR_FLOORDIV: if (!y) return false; z = floordiv64(x, y); break;
    case KIR_FLOORMOD: if (!y) return false; z = floormod64(x, y); break;
    case KIR_MIN: z = x < y ? x : y; break;
    case KIR_MAX: z = x > y ? x : y; break;
    case KIR_EQ: z = x == y; break;
    case KIR_NE: z = x != y; break;
    case KIR_LT: z = x < y; break;
    case KIR_LE: z = x <= y; break;
    case KIR_GT: z = x > y; break;
    case KIR_GE: z = x >= y; break;
    case KIR_AND: z = x && y; break;
    case KIR_OR: z = x || y; break;
    default: return false;
    }
    *out = z;
    return true;
  default:
    return false;
  }
}

/* ---- text ---- */
void kir_print_expr(fl_buf_t *b, const kir_expr_t *e) {
  switch (e->kind) {
  case KIR_CONST:
    if (e->dtype == FLAGOS_INT64) fl_buf_printf(b, "%lld", (long long)e->ci);
    else if (flagos_dtype_is_float(e->dtype)) fl_buf_printf(b, "(const %s %.17g)", flagos_dtype_name(e->dtype), e->cf);
    else fl_buf_printf(b, "(const %s %lld)", flagos_dtype_name(e->dtype), (long long)e->ci);
    return;
  case KIR_VAR: fl_buf_printf(b, "v%d", e->var); return;
  case KIR_SYM: fl_buf_printf(b, "(sym %d)", e->sym); return;
  case KIR_LOAD:
    fl_buf_printf(b, "(load b%d", e->buf);
    break;
  case KIR_UNARY:
  case KIR_BINARY: fl_buf_printf(b, "(%s", kir_op_name(e->op)); break;
  case KIR_SELECT: fl_buf_puts(b, "(select"); break;
  case KIR_CAST: fl_buf_printf(b, "(cast%s %s", e->sat ? "" : "_nosat", flagos_dtype_name(e->dtype)); break;
  case KIR_BITCAST: fl_buf_printf(b, "(bitcast %s", flagos_dtype_name(e->dtype)); break;
  case KIR_REDUCE:
    fl_buf_printf(b, "(%s [", kir_op_name(e->op));
    for (int i = 0; i < e->nr; i++) {
      fl_buf_printf(b, "%sv%d<", i ? " " : "", e->rvars[i]);
      kir_print_expr(b, e->rext[i]);
      fl_buf_putc(b, '>');
    }
    fl_buf_putc(b, ']');
    break;
  }
  for (int i = 0; i < e->n; i++) {
    fl_buf_putc(b, ' ');
    kir_print_expr(b, e->a[i]);
  }
  fl_buf_putc(b, ')');
}

void kir_print_kernel(fl_buf_t *b, const kir_kernel_t *k) {
  fl_buf_printf(b, "kernel %s%s {\n", k->name, k->serial ? " serial" : "");
  for (int i = 0; i < k->n_bufs; i++) {
    const kir_buf_t *bf = &k->bufs[i];
    fl_buf_printf(b, "  b%d %s: %s[", i, bf->name, flagos_dtype_name(bf->dtype));
    for (int d = 0; d < bf->rank; d++) {
      if (d) fl_buf_puts(b, ", ");
      kir_print_expr(b, bf->dims[d]);
    }
    fl_buf_puts(b, "]\n");
  }
  fl_buf_puts(b, "  for");
  for (int i = 0; i < k->rank; i++) {
    fl_buf_printf(b, " v%d<", k->vars[i]);
    kir_print_expr(b, k->extents[i]);
    fl_buf_putc(b, '>');
  }
  fl_buf_puts(b, ":\n");
  for (int s = 0; s < k->n_stores; s++) {
    const kir_store_t *st = &k->stores[s];
    fl_buf_printf(b, "    b%d[", st->buf);
    for (int d = 0; d < k->bufs[st->buf].rank; d++) {
      if (d) fl_buf_puts(b, ", ");
      kir_print_expr(b, st->idx[d]);
    }
    fl_buf_puts(b, "] = ");
    kir_print_expr(b, st->value);
    if (st->cond) {
      fl_buf_puts(b, " if ");
      kir_print_expr(b, st->cond);
    }
    fl_buf_putc(b, '\n');
  }
  if (k->libcall) {
    const kir_libcall_t *lc = k->libcall;
    fl_buf_printf(b, "  libcall %s bufs", lc->name);
    for (int i = 0; i < lc->n_bufs; i++) fl_buf_printf(b, " b%d", lc->bufs[i]);
    fl_buf_puts(b, " ints");
    for (int i = 0; i < lc->n_ints; i++) {
      fl_buf_putc(b, ' ');
      kir_print_expr(b, lc->ints[i]);
    }
    fl_buf_puts(b, " floats");
    for (int i = 0; i < lc->n_floats; i++) fl_buf_printf(b, " %.17g", lc->floats[i]);
    if (lc->ends_node) fl_buf_puts(b, " ends_node");
    if (lc->skip) fl_buf_printf(b, " skip %d", lc->skip);
    fl_buf_putc(b, '\n');
  }
  fl_buf_puts(b, "}\n");
}

/* ---- parsing integer expressions (the manifest stores temp sizes, work sizes and library-call ints) ---- */
typedef struct {
  const char *s;
  size_t i, n;
  fl_arena_t *a;
  int depth;
} pstate_t;

static void skip_ws(pstate_t *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n')) p->i++;
}

static bool parse_int_lit(pstate_t *p, int64_t *v) {
  skip_ws(p);
  size_t st = p->i;
  if (p->i < p->n && p->s[p->i] == '-') p->i++;
  size_t digits = p->i;
  while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
  if (p->i == digits || p->i - st > 20) {
    p->i = st;
    return false;
  }
  char tmp[32];
  memcpy(tmp, p->s + st, p->i - st);
  tmp[p->i - st] = 0;
  *v = strtoll(tmp, NULL, 10);
  return true;
}

static kir_expr_t *parse_e(pstate_t *p) {
  skip_ws(p);
  if (p->i >= p->n || ++p->depth > 200) return NULL;
  int64_t v;
  if (p->s[p->i] != '(') {
    kir_expr_t *r = parse_int_lit(p, &v) ? kir_i64(p->a, v) : NULL;
    p->depth--;
    return r;
  }
  p->i++;
  skip_ws(p);
  size_t w = p->i;
  while (p->i < p->n && p->s[p->i] >= 'a' && p->s[p->i] <= 'z') p->i++;
  size_t wl = p->i - w;
  kir_expr_t *r = NULL;
  if (wl == 3 && strncmp(p->s + w, "sym", 3) == 0) {
    if (parse_int_lit(p, &v) && v >= 0 && v < (1 << 30)) r = kir_sym(p->a, (int)v);
  } else if (wl == 5 && strncmp(p->s + w, "const", 5) == 0) {
    skip_ws(p);
    size_t t = p->i;
    while (p->i < p->n && p->s[p->i] != ' ') p->i++;
    char tn[16] = {0};
    if (p->i - t < sizeof tn) memcpy(tn, p->s + t, p->i - t);
    flagos_dtype_t dt = flagos_dtype_from_name(tn);
    if (dt != FLAGOS_UNDEFINED && !flagos_dtype_is_float(dt) && parse_int_lit(p, &v)) r = kir_const_int(p->a, dt, v);
  } else if (wl == 6 && strncmp(p->s + w, "select", 6) == 0) {
    kir_expr_t *c = parse_e(p), *x = c ? parse_e(p) : NULL, *y = x ? parse_e(p) : NULL;
    if (c && x && y && c->dtype == FLAGOS_BOOL && x->dtype == y->dtype) r = kir_select(p->a, c, x, y);
  } else {
    kir_op_t op = KIR_OP_COUNT;
    for (int o = 0; o < KIR_OP_COUNT; o++)
      if (strlen(k_op_names[o]) == wl && strncmp(k_op_names[o], p->s + w, wl) == 0) op = (kir_op_t)o;
    if (op == KIR_NEG || op == KIR_ABS || op == KIR_NOT) {
      kir_expr_t *x = parse_e(p);
      if (x && (op != KIR_NOT || x->dtype == FLAGOS_BOOL) && (op == KIR_NOT || x->dtype == FLAGOS_INT64)) r = kir_un(p->a, op, x);
    } else if (op >= KIR_ADD && op <= KIR_XOR && op != KIR_POW && op != KIR_ATAN2) {
      kir_expr_t *x = parse_e(p), *y = x ? parse_e(p) : NULL;
      bool logic = op == KIR_AND || op == KIR_OR || op == KIR_XOR;
      if (x && y && x->dtype == y->dtype && (logic ? x->dtype == FLAGOS_BOOL : x->dtype == FLAGOS_INT64)) {
        /* A zero divisor is left for evaluation to refuse. */
        r = kir_bin(p->a, op, x, y);
      }
    }
  }
  skip_ws(p);
  if (!r || p->i >= p->n || p->s[p->i] != ')') r = NULL;
  else p->i++;
  p->depth--;
  return r;
}

flagos_status_t kir_parse_int_expr(fl_arena_t *a, const char *text, kir_expr_t **out) {
  pstate_t p = {text, 0, strlen(text), a, 0};
  kir_expr_t *e = parse_e(&p);
  skip_ws(&p);
  if (!e || p.i != p.n) return FL_ERR(FLAGOS_ERR_CORRUPT, "bad integer expression '%.80s' at offset %zu", text, p.i);
  *out = e;
  return NULL;
}

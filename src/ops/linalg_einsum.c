/* Einsum: the equation is parsed once per call and lowered to a single
 * reduction kernel: one loop var per output letter (and per broadcast ellipsis
 * dim), one reduction var per summed letter, and the product of every operand
 * loaded at its letters' vars. A letter repeated within one operand (a diagonal)
 * simply reuses its var. */
#include <string.h>

#include "ops/linalg_internal.h"

#define AR (c->arena)
#define EIN_MAX_IN 16

typedef struct ein_term {
  int n;              /* labels, ellipsis included as one entry */
  int labels[OPS_MAX_RANK + 1]; /* 0..51 letters, -1 the ellipsis */
  int ell_pos;        /* index of the ellipsis in labels, -1 if none */
  int ell_rank;       /* dims the ellipsis covers in this operand */
} ein_term_t;

typedef struct ein {
  int n_in;
  ein_term_t in[EIN_MAX_IN];
  ein_term_t out;
  int ell_rank;            /* broadcast rank of all ellipses */
  int64_t dim[52];         /* size of each letter, -1 unknown */
  int where_in[52], where_ax[52]; /* an operand axis holding the letter (a non-1 one when known) */
  bool used[52];
} ein_t;

static int label_of(char ch) {
  if (ch >= 'a' && ch <= 'z') return ch - 'a';
  if (ch >= 'A' && ch <= 'Z') return 26 + ch - 'A';
  return -2;
}

static flagos_status_t parse_term(ops_ctx_t *c, const char *s, size_t len, ein_term_t *t) {
  t->n = 0;
  t->ell_pos = -1;
  t->ell_rank = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    if (ch == ' ' || ch == '\t') continue;
    if (ch == '.') {
      if (i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.' || t->ell_pos >= 0)
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "bad ellipsis in equation");
      t->ell_pos = t->n;
      t->labels[t->n++] = -1;
      i += 2;
      continue;
    }
    int l = label_of(ch);
    if (l < 0) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "invalid character '%c' in equation", ch);
    if (t->n > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "equation term too long");
    t->labels[t->n++] = l;
  }
  return NULL;
}

static flagos_status_t parse(ops_ctx_t *c, ein_t *e) {
  const char *eq = fir_attr_string(c->node, "equation", NULL);
  if (!eq) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute 'equation' is required");
  memset(e, 0, sizeof(*e));
  const char *arrow = strstr(eq, "->");
  size_t lhs_len = arrow ? (size_t)(arrow - eq) : strlen(eq);
  const char *p = eq;
  e->n_in = 0;
  while (1) {
    const char *comma = memchr(p, ',', lhs_len - (size_t)(p - eq));
    size_t l = comma ? (size_t)(comma - p) : lhs_len - (size_t)(p - eq);
    if (e->n_in == EIN_MAX_IN) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "more than %d operands", EIN_MAX_IN);
    FL_TRY(parse_term(c, p, l, &e->in[e->n_in++]));
    if (!comma) break;
    p = comma + 1;
  }
  if (e->n_in != c->n_in)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "equation '%s' names %d operands, node has %d inputs", eq, e->n_in,
                   c->n_in);
  /* Operand shapes decide how many dims each ellipsis covers and the letters' sizes. */
  for (int k = 0; k < 52; k++) e->dim[k] = -2, e->where_in[k] = -1;
  int count[52] = {0};
  bool any_ell = false;
  for (int i = 0; i < e->n_in; i++) {
    ein_term_t *t = &e->in[i];
    const ops_tensor_info_t *x = &c->in[i];
    if (!x->present || x->rank < 0) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "input %d has unknown rank", i);
    int nl = t->n - (t->ell_pos >= 0 ? 1 : 0);
    if (t->ell_pos >= 0) {
      any_ell = true;
      t->ell_rank = x->rank - nl;
      if (t->ell_rank < 0)
        return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has rank %d, fewer than its %d labels", i, x->rank, nl);
      if (t->ell_rank > e->ell_rank) e->ell_rank = t->ell_rank;
    } else if (nl != x->rank) {
      return ops_err(c, FLAGOS_ERR_SHAPE, "input %d has rank %d but the equation gives it %d labels", i, x->rank, nl);
    }
    int ax = 0;
    for (int j = 0; j < t->n; j++) {
      int l = t->labels[j];
      if (l < 0) {
        ax += t->ell_rank;
        continue;
      }
      int64_t d = x->dims[ax];
      count[l]++;
      e->used[l] = true;
      /* Prefer a known size other than 1 (size-1 dims broadcast), then an unknown one. */
      int rank_new = d < 0 ? 2 : (d == 1 ? 1 : 3), rank_cur = e->dim[l] == -2 ? 0 : e->dim[l] < 0 ? 2 : e->dim[l] == 1 ? 1 : 3;
      if (rank_new == 3 && rank_cur == 3 && d != e->dim[l])
        return ops_err(c, FLAGOS_ERR_SHAPE, "label '%c' has sizes %lld and %lld", l < 26 ? 'a' + l : 'A' + l - 26,
                       (long long)e->dim[l], (long long)d);
      if (rank_new > rank_cur) {
        e->dim[l] = d;
        e->where_in[l] = i;
        e->where_ax[l] = ax;
      }
      ax++;
    }
  }
  if (arrow) {
    FL_TRY(parse_term(c, arrow + 2, strlen(arrow + 2), &e->out));
    for (int j = 0; j < e->out.n; j++) {
      int l = e->out.labels[j];
      if (l >= 0 && !e->used[l])
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "output label '%c' appears in no input",
                       l < 26 ? 'a' + l : 'A' + l - 26);
      for (int q = 0; q < j; q++)
        if (e->out.labels[q] == l)
          return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "output label repeated in '%s'", eq);
    }
  } else {
    /* Implicit output: the ellipsis, then letters used exactly once, in alphabetical order. */
    e->out.n = 0;
    e->out.ell_pos = -1;
    if (any_ell) {
      e->out.ell_pos = 0;
      e->out.labels[e->out.n++] = -1;
    }
    static const int order[52] = {26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
                                  44, 45, 46, 47, 48, 49, 50, 51, 0,  1,  2,  3,  4,  5,  6,  7,  8,  9,
                                  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25};
    for (int q = 0; q < 52; q++)
      if (count[order[q]] == 1) {
        if (e->out.n > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output rank too large");
        e->out.labels[e->out.n++] = order[q];
      }
  }
  e->out.ell_rank = e->out.ell_pos >= 0 ? e->ell_rank : 0;
  int orank = e->out.n - (e->out.ell_pos >= 0 ? 1 : 0) + e->out.ell_rank;
  if (orank > OPS_MAX_RANK) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "output rank %d too large", orank);
  return NULL;
}

/* Size of broadcast ellipsis dim j (0..ell_rank) over the operands, -1 unknown. */
static int64_t ell_dim(const ops_ctx_t *c, const ein_t *e, int j) {
  int64_t o = 1;
  for (int i = 0; i < e->n_in; i++) {
    const ein_term_t *t = &e->in[i];
    int off = e->ell_rank - t->ell_rank;
    if (t->ell_pos < 0 || j < off) continue;
    int64_t d = c->in[i].dims[t->ell_pos + (j - off)];
    if (d == 1) continue;
    if (d < 0) {
      if (o == 1) o = -1;
    } else {
      o = d;
    }
  }
  return o;
}

flagos_status_t ops_la_einsum_infer(ops_ctx_t *c) {
  if (c->n_in < 1) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects at least one input");
  for (int i = 1; i < c->n_in; i++)
    if (c->in[i].dtype != c->in[0].dtype) return ops_err(c, FLAGOS_ERR_SHAPE, "input dtypes differ");
  if (!flagos_dtype_is_float(c->in[0].dtype) && !flagos_dtype_is_int(c->in[0].dtype))
    return ops_err(c, FLAGOS_ERR_SHAPE, "unsupported dtype %s", flagos_dtype_name(c->in[0].dtype));
  ein_t e;
  FL_TRY(parse(c, &e));
  int64_t d[OPS_MAX_RANK];
  int r = 0;
  for (int j = 0; j < e.out.n; j++) {
    int l = e.out.labels[j];
    if (l < 0)
      for (int q = 0; q < e.ell_rank; q++) d[r++] = ell_dim(c, &e, q);
    else
      d[r++] = e.dim[l] == -2 ? -1 : e.dim[l];
  }
  ops_set_out(c, 0, c->in[0].dtype, r, d);
  return NULL;
}

double ops_la_einsum_flops(const ops_ctx_t *c) {
  ein_t e;
  flagos_status_t st = parse((ops_ctx_t *)c, &e);
  if (st) {
    flagos_status_free(st);
    return 0;
  }
  double n = c->out[0].numel < 0 ? 0 : (double)c->out[0].numel;
  bool in_out[52] = {false};
  for (int j = 0; j < e.out.n; j++)
    if (e.out.labels[j] >= 0) in_out[e.out.labels[j]] = true;
  for (int l = 0; l < 52; l++)
    if (e.used[l] && !in_out[l]) n *= e.dim[l] > 0 ? (double)e.dim[l] : 1.0;
  return n * (double)e.n_in;
}

flagos_status_t ops_la_einsum_lower(ops_ctx_t *c) {
  ein_t e;
  FL_TRY(parse(c, &e));
  kir_expr_t *v[OPS_MAX_RANK];
  kir_kernel_t *kk = ops_out_kernel(c, 0, "einsum", v);
  kir_expr_t *lvar[52] = {NULL};
  kir_expr_t *evar[OPS_MAX_RANK] = {NULL};
  int r = 0;
  for (int j = 0; j < e.out.n; j++) {
    int l = e.out.labels[j];
    if (l < 0)
      for (int q = 0; q < e.ell_rank; q++) evar[q] = v[r++];
    else
      lvar[l] = v[r++];
  }
  /* Everything not in the output is summed: letters, and ellipsis dims when the output drops the ellipsis. */
  int rv[52 + OPS_MAX_RANK];
  kir_expr_t *rext[52 + OPS_MAX_RANK];
  int nr = 0;
  for (int l = 0; l < 52; l++) {
    if (!e.used[l] || lvar[l]) continue;
    rv[nr] = kir_new_var(kk);
    lvar[l] = kir_var(AR, rv[nr]);
    rext[nr++] = ops_in_dim(c, e.where_in[l], e.where_ax[l]);
  }
  if (e.out.ell_pos < 0) {
    for (int q = 0; q < e.ell_rank; q++) {
      /* Extent: the dim of an operand that has it and is not 1 (the broadcast size). */
      kir_expr_t *ext = kir_i64(AR, 1);
      for (int i = 0; i < e.n_in; i++) {
        const ein_term_t *t = &e.in[i];
        int off = e.ell_rank - t->ell_rank;
        if (t->ell_pos < 0 || q < off) continue;
        ext = kir_bin(AR, KIR_MAX, ext, ops_in_dim(c, i, t->ell_pos + (q - off)));
      }
      rv[nr] = kir_new_var(kk);
      evar[q] = kir_var(AR, rv[nr]);
      rext[nr++] = ext;
    }
  }
  kir_expr_t *prod = NULL;
  for (int i = 0; i < e.n_in; i++) {
    const ein_term_t *t = &e.in[i];
    int b = ops_buf_in(c, kk, i);
    kir_expr_t *idx[OPS_MAX_RANK];
    int ax = 0;
    for (int j = 0; j < t->n; j++) {
      int l = t->labels[j];
      if (l < 0) {
        int off = e.ell_rank - t->ell_rank;
        for (int q = 0; q < t->ell_rank; q++, ax++) idx[ax] = ops_la_bcast_index(AR, kk->bufs[b].dims[ax], evar[off + q]);
      } else {
        idx[ax] = ops_la_bcast_index(AR, kk->bufs[b].dims[ax], lvar[l]);
        ax++;
      }
    }
    kir_expr_t *x = kir_load(kk, b, idx);
    prod = prod ? kir_bin(AR, KIR_MUL, prod, x) : x;
  }
  kir_store(kk, 0, v, kir_reduce(AR, KIR_RSUM, nr, rv, rext, prod), NULL);
  return NULL;
}

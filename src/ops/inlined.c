/* InlinedProducer (domain ai.flagos): a producer node whose output only one
 * consumer reads, run inside the consumer's kernels. The inline fusion pass
 * (src/passes/fuse_inline.c) builds these nodes; docs/fusion.md describes them.
 *
 * The `body` graph holds the two original nodes, producer first. The lowering
 * lowers each with its own lowering, then rebuilds the consumer's kernels:
 * every load of the producer's output becomes the producer's stored value at
 * the load's indices (the producer's loop variables replaced by them, its loads
 * moved into the consumer's kernel), converted as the producer's store would
 * convert it. The intermediate tensor is never written, and the producer's
 * launch is gone: Add -> LayerNormalization, the attention mask's Add ->
 * Softmax and Transpose -> Mul are one kernel each.
 *
 * In the kept form (the body's and the node's last output is the producer's,
 * read by other nodes too) the consumer's one kernel, whose loop nest is the
 * producer's output shape, also stores the producer's value there: GPT-2's
 * residual Add and the LayerNormalization reading it are one kernel that
 * writes both.
 *
 * What may be inlined is what this rewrite can keep exact: a producer lowered
 * to one kernel with one store of its output at the loop variables (no
 * condition, no library call, no reduction, no temporary), shapes static so no
 * kernel reads a runtime symbol, and a consumer that reads the producer's
 * output under its own shape. A library call may read it only as a gemm's A or
 * B fed by a transpose, perhaps scaled by a constant scalar: the call then
 * reads the transpose's input with the operand's rows and batches as far apart
 * as the transpose puts them (the gemm's optional lda and ldb,
 * docs/kernel-ir.md) and takes the scale into alpha, as attention's query, key
 * and value products do.
 *
 * The other way round, a consumer that only transposes the producer's output
 * (attention's context, [b,h,s,d] -> [b,s,h,d]) is run as the producer's own
 * kernels storing at the permuted indices; a gemm call among them writes Y's
 * rows and batches as far apart as the transpose puts them (ldy). */
#include <math.h>
#include <string.h>

#include "ops/inlined_int.h"

/* A producer's value is re-evaluated wherever the consumer loads it; past this
 * many expression nodes it is cheaper to keep the tensor. */
#define INLINE_MAX_NODES 48

static int index_of(const fir_value_t *const *ins, int n, const fir_value_t *v) {
  for (int k = 0; k < n; k++)
    if (ins[k] == v) return k;
  return -1;
}

/* Infers the producer pn and the consumer cn on c's inputs, ins[k] being the
 * value of c's input k. */
static flagos_status_t pair_infer(ops_ctx_t *c, const fir_node_t *pn, const fir_node_t *cn,
                                  const fir_value_t *const *ins, pair_t *pr) {
  if (pn->n_outputs != 1 || !pn->outputs[0])
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the producer '%s' must have one output", pn->name);
  const fir_node_t *nodes[2] = {pn, cn};
  ops_ctx_t **ctx[2] = {&pr->p, &pr->q};
  const ops_def_t **defs[2] = {&pr->dp, &pr->dq};
  int **maps[2] = {&pr->pin, &pr->qin};
  for (int i = 0; i < 2; i++) {
    const fir_node_t *bn = nodes[i];
    const ops_def_t *d = ops_find(bn->op_type, bn->domain);
    if (!d || !d->lower || d->host || d->value_inputs)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "%s '%s' cannot be part of an inlined pair", bn->op_type, bn->name);
    ops_tensor_info_t *in = fl_arena_alloc(c->arena, sizeof(*in) * (size_t)(bn->n_inputs + 1));
    ops_tensor_info_t *out = fl_arena_alloc(c->arena, sizeof(*out) * (size_t)(bn->n_outputs + 1));
    int *map = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(bn->n_inputs + 1));
    for (int j = 0; j < bn->n_inputs; j++) {
      const fir_value_t *v = bn->inputs[j];
      map[j] = -1;
      if (!v) {
        ops_info_from_value(&in[j], NULL);
        continue;
      }
      if (i == 1 && v == pn->outputs[0]) {
        in[j] = pr->p->out[0];
        continue;
      }
      map[j] = index_of(ins, c->n_in, v);
      if (map[j] < 0)
        return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "'%s' reads '%s', which is not an input of the node", bn->name,
                       v->name);
      in[j] = c->in[map[j]];
    }
    ops_ctx_t *sc = fl_arena_alloc(c->arena, sizeof(*sc));
    ops_ctx_init(sc, c->arena, bn, in, out, c->runtime);
    flagos_status_t st = ops_ctx_infer(sc, d);
    if (st) return flagos_status_wrap(st, "in the body of %s node '%s'", c->node->op_type, c->node->name);
    if (!sc->is_static)
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "%s '%s' does not have static shapes", bn->op_type, bn->name);
    *ctx[i] = sc;
    *defs[i] = d;
    *maps[i] = map;
  }
  return NULL;
}

/* ---- expression rewriting ---- */

kir_expr_t *ops_inl_memo_get(const memo_t *m, const kir_expr_t *e) {
  if (!m->cap) return NULL;
  for (size_t i = fl_hash_ptr(e) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->from[i] == e) return m->to[i];
    if (!m->from[i]) return NULL;
  }
}

void ops_inl_memo_put(fl_arena_t *a, memo_t *m, const kir_expr_t *e, kir_expr_t *r) {
  if (2 * (m->n + 1) > m->cap) {
    memo_t g = {.cap = m->cap ? m->cap * 2 : 64};
    g.from = fl_arena_alloc(a, sizeof(*g.from) * g.cap);
    g.to = fl_arena_alloc(a, sizeof(*g.to) * g.cap);
    for (size_t i = 0; i < m->cap; i++)
      if (m->from[i]) ops_inl_memo_put(a, &g, m->from[i], m->to[i]);
    *m = g;
  }
  size_t i = fl_hash_ptr(e) & (m->cap - 1);
  while (m->from[i]) i = (i + 1) & (m->cap - 1);
  m->from[i] = e;
  m->to[i] = r;
  m->n++;
}

typedef struct rewrite {
  ops_ctx_t *c;          /* the node's context: the new kernels are its steps */
  const pair_t *pr;
  kir_kernel_t *nk;      /* the kernel being built */
  int *cmap;             /* consumer buffer -> nk buffer; -1: the producer's output */
  const kir_kernel_t *pk;
  const ops_bind_t *pbind;
  int pout;              /* the producer kernel's output buffer */
  int *pmap;             /* producer buffer -> nk buffer; -1 until first loaded */
  memo_t memo;
} rewrite_t;

bool ops_inl_same_dims(const kir_buf_t *x, int rank, kir_expr_t *const *dims) {
  if (x->rank != rank) return false;
  for (int d = 0; d < rank; d++) {
    int64_t a, b;
    if (!kir_eval_int(x->dims[d], NULL, 0, &a) || !kir_eval_int(dims[d], NULL, 0, &b) || a != b) return false;
  }
  return true;
}

/* The new kernel's buffer bound to (kind, index) with these dims: an existing
 * one that is only read, else a new one. */
static int bind_buf(rewrite_t *w, ops_bind_kind_t kind, int index, flagos_dtype_t dt, int rank, kir_expr_t *const *dims,
                    bool written) {
  const ops_step_t *s = &w->c->steps[w->c->n_steps - 1];
  for (int b = 0; !written && b < w->nk->n_bufs; b++)
    if (s->binds[b].kind == kind && s->binds[b].index == index && !w->nk->bufs[b].written &&
        w->nk->bufs[b].dtype == dt && ops_inl_same_dims(&w->nk->bufs[b], rank, dims))
      return b;
  int b = ops_buf_view(w->c, w->nk, kind, index, rank, dims);
  w->nk->bufs[b].dtype = dt;
  return b;
}

kir_expr_t *ops_inl_copy_node(fl_arena_t *a, const kir_expr_t *e) {
  kir_expr_t *r = fl_arena_memdup(a, e, sizeof(*e));
  if (e->n) r->a = fl_arena_alloc(a, sizeof(*r->a) * (size_t)e->n);
  if (e->nr) r->rext = fl_arena_alloc(a, sizeof(*r->rext) * (size_t)e->nr);
  return r;
}

/* The producer's value e with its loop variable pk->vars[d] standing for
 * idx[d] (expressions of the new kernel); its loads move to the new kernel. */
static kir_expr_t *subst(rewrite_t *w, const kir_expr_t *e, kir_expr_t *const *idx, memo_t *m) {
  kir_expr_t *r = ops_inl_memo_get(m, e);
  if (r) return r;
  fl_arena_t *a = w->c->arena;
  if (e->kind == KIR_VAR) {
    for (int d = 0; d < w->pk->rank; d++)
      if (w->pk->vars[d] == e->var) return idx[d];
  }
  r = ops_inl_copy_node(a, e);
  for (int i = 0; i < e->n; i++) r->a[i] = subst(w, e->a[i], idx, m);
  if (e->kind == KIR_LOAD) {
    if (w->pmap[e->buf] < 0) {
      const kir_buf_t *pb = &w->pk->bufs[e->buf];
      const ops_bind_t *bd = &w->pbind[e->buf];
      w->pmap[e->buf] = bind_buf(w, OPS_BIND_INPUT, w->pr->pin[bd->index], pb->dtype, pb->rank, pb->dims, false);
    }
    r->buf = w->pmap[e->buf];
  }
  ops_inl_memo_put(a, m, e, r);
  return r;
}

static kir_expr_t *rewrite(rewrite_t *w, const kir_expr_t *e) {
  if (!e) return NULL;
  kir_expr_t *r = ops_inl_memo_get(&w->memo, e);
  if (r) return r;
  fl_arena_t *a = w->c->arena;
  kir_expr_t *idx[OPS_MAX_RANK];
  if (e->kind == KIR_LOAD && w->cmap[e->buf] < 0) {
    for (int i = 0; i < e->n; i++) idx[i] = rewrite(w, e->a[i]);
    memo_t m = {0};
    const kir_store_t *ps = &w->pk->stores[0];
    r = ops_stored_value(a, subst(w, ps->value, idx, &m), w->pk->bufs[w->pout].dtype);
  } else {
    r = ops_inl_copy_node(a, e);
    for (int i = 0; i < e->n; i++) r->a[i] = rewrite(w, e->a[i]);
    for (int i = 0; i < e->nr; i++) r->rext[i] = rewrite(w, e->rext[i]);
    if (e->kind == KIR_LOAD) r->buf = w->cmap[e->buf];
  }
  ops_inl_memo_put(a, &w->memo, e, r);
  return r;
}

/* ---- checks ---- */

void ops_inl_scan_expr(const kir_expr_t *e, scan_t *s) {
  if (!e) return;
  s->nodes++;
  s->syms += e->kind == KIR_SYM;
  s->reduces += e->kind == KIR_REDUCE;
  s->loads_of += e->kind == KIR_LOAD && e->buf == s->buf;
  for (int i = 0; i < e->n; i++) ops_inl_scan_expr(e->a[i], s);
  for (int i = 0; i < e->nr; i++) ops_inl_scan_expr(e->rext[i], s);
}

void ops_inl_scan_kernel(const kir_kernel_t *k, scan_t *s) {
  for (int b = 0; b < k->n_bufs; b++)
    for (int d = 0; d < k->bufs[b].rank; d++) ops_inl_scan_expr(k->bufs[b].dims[d], s);
  for (int d = 0; d < k->rank; d++) ops_inl_scan_expr(k->extents[d], s);
  for (int i = 0; i < k->n_stores; i++) {
    for (int d = 0; d < k->bufs[k->stores[i].buf].rank; d++) ops_inl_scan_expr(k->stores[i].idx[d], s);
    ops_inl_scan_expr(k->stores[i].value, s);
    ops_inl_scan_expr(k->stores[i].cond, s);
  }
  for (int i = 0; k->libcall && i < k->libcall->n_ints; i++) ops_inl_scan_expr(k->libcall->ints[i], s);
}

/* The producer's kernel, when it is one store of its output at the loop variables. */
static flagos_status_t producer_kernel(ops_ctx_t *c, const ops_ctx_t *p, int *pout) {
  if (p->n_steps != 1 || p->n_temps)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer lowers to %d kernels and %d temporaries, not one kernel",
                   p->n_steps, p->n_temps);
  const kir_kernel_t *k = p->steps[0].kernel;
  const kir_store_t *s = k->n_stores == 1 ? &k->stores[0] : NULL;
  if (!s || k->libcall || k->serial || s->cond || p->steps[0].binds[s->buf].kind != OPS_BIND_OUTPUT ||
      k->bufs[s->buf].rank != k->rank)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer's kernel is not one plain store of its output");
  for (int d = 0; d < k->rank; d++)
    if (s->idx[d]->kind != KIR_VAR || s->idx[d]->var != k->vars[d])
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer's store is not at its loop variables");
  scan_t sc = {.buf = s->buf};
  ops_inl_scan_kernel(k, &sc);
  if (sc.syms || sc.reduces || sc.loads_of || sc.nodes > INLINE_MAX_NODES)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED,
                   "the producer's value reads symbols (%d), reduces (%d), reads its output (%d) or is large (%d nodes)",
                   sc.syms, sc.reduces, sc.loads_of, sc.nodes);
  *pout = s->buf;
  return NULL;
}

static int64_t const_of(const kir_expr_t *e) {
  int64_t v;
  return kir_eval_int(e, NULL, 0, &v) ? v : -1;
}

/* Load e of kernel k at a permutation of k's loop variables: perm[i] receives
 * the buffer dim that variable i indexes, or -1 for a variable of extent 1
 * that indexes none (the load reads such a dim of size 1 at 0). */
static bool load_permutes(const kir_kernel_t *k, const kir_expr_t *e, int *perm) {
  const kir_buf_t *b = &k->bufs[e->buf];
  if (e->kind != KIR_LOAD || e->n != k->rank || b->rank != e->n) return false;
  for (int i = 0; i < k->rank; i++) perm[i] = -1;
  for (int d = 0; d < e->n; d++) {
    if (const_of(e->a[d]) == 0 && const_of(b->dims[d]) == 1) continue;
    int i = 0;
    while (i < k->rank && !(e->a[d]->kind == KIR_VAR && e->a[d]->var == k->vars[i])) i++;
    if (i == k->rank || perm[i] >= 0) return false;
    perm[i] = d;
  }
  for (int i = 0; i < k->rank; i++)
    if (perm[i] < 0 && const_of(k->extents[i]) != 1) return false;
  return true;
}

static const kir_expr_t *uncast(const kir_expr_t *e) {
  while (e->kind == KIR_CAST && flagos_dtype_is_float(e->dtype)) e = e->a[0];
  return e;
}

/* A load of a constant scalar input of the producer (its value in *v). */
static bool constant_scalar(const ops_ctx_t *p, const ops_bind_t *pbind, const kir_expr_t *e, double *v) {
  e = uncast(e);
  if (e->kind != KIR_LOAD || pbind[e->buf].kind != OPS_BIND_INPUT) return false;
  const ops_tensor_info_t *t = &p->in[pbind[e->buf].index];
  if (!t->value || t->numel != 1 || !flagos_dtype_is_float(t->dtype)) return false;
  *v = fl_load_as_double(t->dtype, t->value, 0);
  return isfinite(*v) && *v != 0;
}

/* The producer as a transpose, perhaps scaled: its value a load of one of its
 * buffers at a permutation of its loop variables, or that load times (or
 * divided by) a constant scalar, *scale. perm[i] receives the dim of that
 * buffer that loop variable i indexes (load_permutes); returns the buffer, or -1. */
static int producer_permutes(const ops_ctx_t *p, const ops_bind_t *pbind, const kir_kernel_t *pk, int pout, int *perm,
                             double *scale) {
  const kir_expr_t *e = pk->stores[0].value;
  *scale = 1;
  if (uncast(e)->kind == KIR_BINARY) {
    const kir_expr_t *b = uncast(e);
    double v;
    if (b->op == KIR_MUL && constant_scalar(p, pbind, b->a[0], &v)) {
      e = uncast(b->a[1]);
      *scale = v;
    } else if ((b->op == KIR_MUL || b->op == KIR_DIV) && constant_scalar(p, pbind, b->a[1], &v)) {
      e = uncast(b->a[0]);
      *scale = b->op == KIR_MUL ? v : 1 / v;
    } else {
      return -1;
    }
  }
  if (e->kind != KIR_LOAD || e->dtype != pk->bufs[pout].dtype || !load_permutes(pk, e, perm)) return -1;
  return e->buf;
}

/* Strides, in elements, of each loop variable of kernel k over a buffer of
 * dims `dims` that the variables index by perm (variable i indexes dim perm[i]). */
static bool var_strides(const kir_kernel_t *k, const kir_buf_t *b, const int *perm, int64_t *st, int64_t *len) {
  int64_t xs[OPS_MAX_RANK], acc = 1;
  for (int d = b->rank - 1; d >= 0; d--) {
    xs[d] = acc;
    int64_t n = const_of(b->dims[d]);
    if (n < 0) return false;
    acc *= n;
  }
  for (int i = 0; i < k->rank; i++) {
    st[i] = perm[i] < 0 ? 0 : xs[perm[i]];
    len[i] = const_of(k->extents[i]);
    if (len[i] < 0) return false;
  }
  return true;
}

/* The batch stride of a matrix whose leading loop dims (0 .. r-3) step
 * through memory by st: one stride for all of them (size-1 dims aside), or
 * false. old is the call's batch stride (0: one matrix for every batch). */
static bool batch_stride(int r, const int64_t *st, const int64_t *len, int64_t old, int64_t *out) {
  *out = 0;
  int64_t next = 0;
  for (int i = r - 3; i >= 0 && old; i--) {
    if (len[i] == 1) continue;
    if (!*out) *out = st[i];
    else if (st[i] != next) return false;
    next = st[i] * len[i];
  }
  return true;
}

/* The gemm call's int slots: transA/transB, strideA/strideB/strideY and the
 * optional row strides (docs/kernel-ir.md). */
static const int trans_slot[2] = {4, 5}, stride_slot[3] = {6, 7, 8}, ld_slot[3] = {10, 9, 11};

static int64_t call_int(const kir_libcall_t *lc, int i) { return i < lc->n_ints ? const_of(lc->ints[i]) : 0; }

/* How a gemm call reads its operand op (0: A, 1: B) through the producer:
 * the transpose's input x, its rows ld apart (transposed where the transpose
 * puts the operand's rows innermost), its batches s apart, alpha times scale. */
typedef struct through {
  int x;
  int64_t t, ld, s;
  double scale;
} through_t;

static bool gemm_through(const ops_ctx_t *p, const ops_bind_t *pbind, const kir_kernel_t *pk, int pout,
                         const kir_libcall_t *lc, int op, through_t *r) {
  int perm[OPS_MAX_RANK];
  int rank = pk->rank;
  if (strcmp(lc->name, "gemm") != 0 || lc->n_ints < 9 || lc->n_ints > 12 || lc->n_floats != 2 || rank < 2) return false;
  r->x = producer_permutes(p, pbind, pk, pout, perm, &r->scale);
  if (r->x < 0 || call_int(lc, trans_slot[op]) != 0 || call_int(lc, ld_slot[op]) != 0) return false;
  int64_t st[OPS_MAX_RANK], len[OPS_MAX_RANK];
  if (!var_strides(pk, &pk->bufs[r->x], perm, st, len)) return false;
  int64_t M = call_int(lc, 1), N = call_int(lc, 2), K = call_int(lc, 3), old_s = call_int(lc, stride_slot[op]);
  int64_t rows = op ? K : M, cols = op ? N : K;
  if (len[rank - 2] != rows || len[rank - 1] != cols || old_s < 0) return false;
  if (st[rank - 1] == 1 || cols == 1) {
    r->t = 0;
    r->ld = st[rank - 2];
  } else if (st[rank - 2] == 1 || rows == 1) {
    r->t = 1;
    r->ld = st[rank - 1];
  } else {
    return false;
  }
  if (r->ld < (r->t ? rows : cols)) return false;
  return batch_stride(rank, st, len, old_s, &r->s);
}

/* The operand slot (0: A, 1: B) by which a library call reads buffer b, -1 if
 * it does not, -2 if it reads it otherwise (as Y or bias, or twice). */
static int call_operand(const kir_libcall_t *lc, int b) {
  int slot = -1;
  for (int i = 0; lc && i < lc->n_bufs; i++)
    if (lc->bufs[i] == b) slot = slot == -1 && i < 2 ? i : -2;
  return slot;
}

/* Consumer kernel k's buffers: -1 for the producer's output, checked to be
 * read only and under the producer's shape; a library call may read it only
 * as a gemm's A or B that a transpose feeds (gemm_through). */
static flagos_status_t consumer_buffers(ops_ctx_t *c, const ops_step_t *st, const pair_t *pr, const kir_kernel_t *pk,
                                        int pout, bool *inl) {
  const kir_kernel_t *k = st->kernel;
  const kir_buf_t *pob = &pk->bufs[pout];
  scan_t sc = {.buf = -1};
  ops_inl_scan_kernel(k, &sc);
  if (sc.syms) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the consumer's kernel %s reads runtime symbols", k->name);
  for (int b = 0; b < k->n_bufs; b++) {
    inl[b] = st->binds[b].kind == OPS_BIND_INPUT && pr->qin[st->binds[b].index] < 0;
    if (!inl[b]) continue;
    int op = call_operand(k->libcall, b);
    through_t th;
    bool by_call = op != -1 && !(op >= 0 && gemm_through(pr->p, pr->p->steps[0].binds, pk, pout, k->libcall, op, &th));
    if (k->bufs[b].written || by_call || !ops_inl_same_dims(&k->bufs[b], pob->rank, pob->dims))
      return ops_err(c, FLAGOS_ERR_UNSUPPORTED,
                     "the consumer's kernel %s writes the producer's output, passes it to a library call that cannot "
                     "read it through the producer, or reads it under another shape",
                     k->name);
  }
  return NULL;
}

/* A new kernel of c with k's name and loop nest, its buffers and stores to come. */
kir_kernel_t *ops_inl_kernel_like(ops_ctx_t *c, const kir_kernel_t *k) {
  kir_kernel_t *nk = ops_kernel(c, NULL);
  nk->name = k->name;
  nk->rank = k->rank;
  nk->vars = k->vars;
  nk->extents = k->extents;
  nk->next_var = k->next_var;
  nk->serial = k->serial;
  return nk;
}

/* ---- a transposing consumer: the producer stores at the permuted indices ---- */

/* The consumer as a transpose of the producer's output: one kernel storing
 * its output at its loop variables the producer's output loaded at a
 * permutation of them. sigma[d] receives the consumer dim that indexes the
 * producer's dim d; *out the store's buffer. */
static bool consumer_permutes(const pair_t *pr, int *sigma, const kir_buf_t **out) {
  const ops_ctx_t *q = pr->q;
  if (q->n_steps != 1 || q->n_temps) return false;
  const ops_step_t *st = &q->steps[0];
  const kir_kernel_t *k = st->kernel;
  const kir_store_t *s = k->n_stores == 1 ? &k->stores[0] : NULL;
  if (!s || k->libcall || k->serial || s->cond || st->binds[s->buf].kind != OPS_BIND_OUTPUT ||
      st->binds[s->buf].index != 0 || k->bufs[s->buf].rank != k->rank)
    return false;
  for (int d = 0; d < k->rank; d++)
    if (s->idx[d]->kind != KIR_VAR || s->idx[d]->var != k->vars[d]) return false;
  const kir_expr_t *e = s->value;
  int perm[OPS_MAX_RANK];
  if (e->kind != KIR_LOAD || e->dtype != k->bufs[s->buf].dtype || st->binds[e->buf].kind != OPS_BIND_INPUT ||
      pr->qin[st->binds[e->buf].index] >= 0 || !load_permutes(k, e, perm))
    return false;
  /* dims of size 1 read at 0 go with the variables of extent 1 that index nothing */
  for (int d = 0; d < k->rank; d++) sigma[d] = -1;
  for (int i = 0; i < k->rank; i++)
    if (perm[i] >= 0) sigma[perm[i]] = i;
  for (int i = 0, d = 0; i < k->rank; i++) {
    if (perm[i] >= 0) continue;
    while (sigma[d] >= 0) d++;
    sigma[d] = i;
  }
  *out = &k->bufs[s->buf];
  return true;
}

typedef struct restore {
  ops_ctx_t *c;
  const pair_t *pr;
  kir_kernel_t *nk;
  int *map;         /* producer kernel buffer -> nk buffer */
  int out;          /* the producer kernel's buffer of its output, -1 if none */
  const int *sigma;
  memo_t memo;
} restore_t;

/* Indices of the producer's output, idx, as indices of the consumer's. */
static void permute_idx(const restore_t *w, kir_expr_t *const *idx, kir_expr_t **to) {
  for (int d = 0; d < w->pr->p->out[0].rank; d++) to[w->sigma[d]] = idx[d];
}

static kir_expr_t *restore_expr(restore_t *w, const kir_expr_t *e) {
  if (!e) return NULL;
  kir_expr_t *r = ops_inl_memo_get(&w->memo, e);
  if (r) return r;
  r = ops_inl_copy_node(w->c->arena, e);
  for (int i = 0; i < e->n; i++) r->a[i] = restore_expr(w, e->a[i]);
  for (int i = 0; i < e->nr; i++) r->rext[i] = restore_expr(w, e->rext[i]);
  if (e->kind == KIR_LOAD) {
    if (e->buf == w->out) {
      kir_expr_t *idx[OPS_MAX_RANK];
      memcpy(idx, r->a, sizeof(*idx) * (size_t)e->n);
      permute_idx(w, idx, r->a);
    }
    r->buf = w->map[e->buf];
  }
  ops_inl_memo_put(w->c->arena, &w->memo, e, r);
  return r;
}

/* Y of a gemm call (the producer's output, of rank r and dims pdims) written
 * through the transpose into ob: its rows *ld apart, its batches *sy apart
 * (Y's rows must stay contiguous). */
static bool gemm_y_through(const kir_libcall_t *lc, int r, const int64_t *pdims, const kir_buf_t *ob,
                           const int *sigma, int64_t *ld, int64_t *sy) {
  if (strcmp(lc->name, "gemm") != 0 || lc->n_ints < 9 || lc->n_ints > 12 || lc->n_floats != 2 ||
      call_int(lc, ld_slot[2]) != 0 || r < 2 || ob->rank != r)
    return false;
  int64_t os[OPS_MAX_RANK], st[OPS_MAX_RANK], len[OPS_MAX_RANK], acc = 1;
  for (int d = r - 1; d >= 0; d--) {
    os[d] = acc;
    int64_t n = const_of(ob->dims[d]);
    if (n < 0) return false;
    acc *= n;
  }
  for (int d = 0; d < r; d++) {
    st[d] = os[sigma[d]];
    len[d] = pdims[d];
  }
  int64_t M = call_int(lc, 1), N = call_int(lc, 2), old = call_int(lc, stride_slot[2]);
  if (len[r - 2] != M || len[r - 1] != N || old < 0 || (st[r - 1] != 1 && N != 1)) return false;
  *ld = st[r - 2];
  return *ld >= N && batch_stride(r, st, len, old, sy);
}

/* Lowers the pair as the producer's kernels writing the consumer's output at
 * the permuted indices; an error (freed by the caller) where they cannot. */
static flagos_status_t permuted_stores(ops_ctx_t *c, const pair_t *pr) {
  int sigma[OPS_MAX_RANK];
  const kir_buf_t *ob;
  const ops_ctx_t *p = pr->p;
  if (!consumer_permutes(pr, sigma, &ob))
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the consumer does not only permute the producer's output");
  if (p->out[0].rank != ob->rank || p->out[0].dtype != pr->q->out[0].dtype)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the consumer's output is not a permutation of the producer's");
  kir_expr_t *pdims[OPS_MAX_RANK];
  for (int d = 0; d < p->out[0].rank; d++) pdims[d] = kir_i64(c->arena, p->out[0].dims[d]);
  for (int t = 0; t < p->n_temps; t++) ops_temp(c, p->temps[t].dtype, p->temps[t].rank, p->temps[t].dims);
  for (int s = 0; s < p->n_steps; s++) {
    const ops_step_t *st = &p->steps[s];
    const kir_kernel_t *k = st->kernel;
    scan_t sc = {.buf = -1};
    ops_inl_scan_kernel(k, &sc);
    if (sc.syms) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer's kernel %s reads runtime symbols", k->name);
    kir_kernel_t *nk = ops_inl_kernel_like(c, k);
    restore_t w = {.c = c, .pr = pr, .nk = nk, .out = -1, .sigma = sigma};
    w.map = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(k->n_bufs + 1));
    for (int b = 0; b < k->n_bufs; b++) {
      const ops_bind_t *bd = &st->binds[b];
      const kir_buf_t *kb = &k->bufs[b];
      if (bd->kind == OPS_BIND_OUTPUT) {
        if (bd->index != 0 || w.out >= 0 || !ops_inl_same_dims(kb, p->out[0].rank, pdims))
          return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer's kernel %s writes its output under another shape",
                         k->name);
        w.out = b;
        w.map[b] = ops_buf_view(c, nk, OPS_BIND_OUTPUT, 0, ob->rank, ob->dims);
      } else {
        w.map[b] = ops_buf_view(c, nk, bd->kind, bd->kind == OPS_BIND_INPUT ? pr->pin[bd->index] : bd->index,
                                kb->rank, kb->dims);
      }
      nk->bufs[w.map[b]].dtype = kb->dtype;
    }
    for (int i = 0; i < k->n_stores; i++) {
      const kir_store_t *ks = &k->stores[i];
      kir_expr_t *idx[OPS_MAX_RANK], *to[OPS_MAX_RANK];
      for (int d = 0; d < k->bufs[ks->buf].rank; d++) idx[d] = restore_expr(&w, ks->idx[d]);
      if (ks->buf == w.out) permute_idx(&w, idx, to);
      kir_store(nk, w.map[ks->buf], ks->buf == w.out ? to : idx, restore_expr(&w, ks->value),
                restore_expr(&w, ks->cond));
    }
    const kir_libcall_t *lc = k->libcall;
    if (!lc) continue;
    int *bufs = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(lc->n_bufs + 1));
    kir_expr_t **ints = fl_arena_alloc(c->arena, sizeof(*ints) * 12);
    memcpy(ints, lc->ints, sizeof(*ints) * (size_t)lc->n_ints);
    int n_ints = lc->n_ints;
    for (int i = 0; i < lc->n_bufs; i++) {
      bufs[i] = w.map[lc->bufs[i]];
      if (lc->bufs[i] != w.out) continue;
      int64_t ld, sy;
      if (i != 2 || !gemm_y_through(lc, p->out[0].rank, p->out[0].dims, ob, sigma, &ld, &sy))
        return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer's library call %s cannot write through the transpose",
                       lc->name);
      while (n_ints <= ld_slot[2]) ints[n_ints++] = kir_i64(c->arena, 0);
      ints[stride_slot[2]] = kir_i64(c->arena, sy);
      ints[ld_slot[2]] = kir_i64(c->arena, ld);
    }
    kir_set_libcall(nk, lc->name, lc->n_bufs, bufs, n_ints, ints, lc->n_floats, lc->floats);
    nk->libcall->ends_node = lc->ends_node;
    nk->libcall->skip = lc->skip;
  }
  return NULL;
}

/* The kept form: the consumer's one kernel ck, rebuilt as w->nk, also stores
 * the producer's value at its loop variables into the node's last output,
 * which needs ck's loop nest to be the producer's output shape (LayerNorm,
 * Softmax over the last axis, pointwise consumers) and no library call. */
static flagos_status_t keep_store(ops_ctx_t *c, rewrite_t *w, const kir_kernel_t *ck) {
  const kir_buf_t *pob = &w->pk->bufs[w->pout];
  bool fits = w->pr->q->n_steps == 1 && !ck->libcall && !ck->serial && ops_inl_same_dims(pob, ck->rank, ck->extents);
  if (!fits)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED,
                   "the consumer's kernels do not run once over the producer's output, so they cannot also store it");
  kir_expr_t *idx[OPS_MAX_RANK];
  for (int d = 0; d < ck->rank; d++) idx[d] = kir_var(c->arena, ck->vars[d]);
  memo_t m = {0};
  kir_expr_t *v = ops_stored_value(c->arena, subst(w, w->pk->stores[0].value, idx, &m), pob->dtype);
  int b = ops_buf_view(c, w->nk, OPS_BIND_OUTPUT, c->n_out - 1, pob->rank, pob->dims);
  w->nk->bufs[b].dtype = pob->dtype;
  kir_store(w->nk, b, idx, v, NULL);
  return NULL;
}

/* Lowers pn inlined into cn as c's kernels; ins[k] is the value of c's input k;
 * with keep, the kernels also store pn's output as c's last output. */
static flagos_status_t inline_lower(ops_ctx_t *c, const fir_node_t *pn, const fir_node_t *cn,
                                    const fir_value_t *const *ins, bool keep) {
  pair_t pr;
  FL_TRY(pair_infer(c, pn, cn, ins, &pr));
  pr.p->kernel_prefix = fl_arena_printf(c->arena, "%s_producer", c->kernel_prefix ? c->kernel_prefix : "k");
  pr.q->kernel_prefix = c->kernel_prefix;
  FL_TRY(pr.dp->lower(pr.p));
  int pout = -1;
  flagos_status_t why = producer_kernel(c, pr.p, &pout), st = pr.dq->lower(pr.q);
  if (st) {
    flagos_status_free(why);
    return st;
  }
  if (why && keep) return why;
  if (why) { /* not one plain store: perhaps the consumer only transposes it, or is pointwise over it */
    int steps = c->n_steps, temps = c->n_temps;
    st = permuted_stores(c, &pr);
    if (st) {
      flagos_status_free(st);
      c->n_steps = steps; /* drop what the failed attempt made */
      c->n_temps = temps;
      st = ops_inl_pointwise_stores(c, &pr);
    }
    if (!st) flagos_status_free(why);
    else flagos_status_free(st);
    return st ? why : NULL;
  }
  const kir_kernel_t *pk = pr.p->steps[0].kernel;
  for (int t = 0; t < pr.q->n_temps; t++) ops_temp(c, pr.q->temps[t].dtype, pr.q->temps[t].rank, pr.q->temps[t].dims);
  for (int s = 0; s < pr.q->n_steps; s++) {
    const ops_step_t *st = &pr.q->steps[s];
    const kir_kernel_t *ck = st->kernel;
    bool *inl = fl_arena_alloc(c->arena, sizeof(bool) * (size_t)(ck->n_bufs + 1));
    FL_TRY(consumer_buffers(c, st, &pr, pk, pout, inl));
    kir_kernel_t *nk = ops_inl_kernel_like(c, ck);
    rewrite_t w = {.c = c, .pr = &pr, .nk = nk, .pk = pk,
                   .pbind = pr.p->steps[0].binds, .pout = pout};
    w.cmap = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(ck->n_bufs + 1));
    w.pmap = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(pk->n_bufs + 1));
    for (int b = 0; b < pk->n_bufs; b++) w.pmap[b] = -1;
    for (int b = 0; b < ck->n_bufs; b++) {
      const ops_bind_t *bd = &st->binds[b];
      const kir_buf_t *kb = &ck->bufs[b];
      w.cmap[b] = -1;
      if (inl[b]) continue;
      int index = bd->kind == OPS_BIND_INPUT ? pr.qin[bd->index] : bd->index;
      w.cmap[b] = bind_buf(&w, bd->kind, index, kb->dtype, kb->rank, kb->dims, kb->written);
    }
    for (int i = 0; i < ck->n_stores; i++) {
      const kir_store_t *cs = &ck->stores[i];
      kir_expr_t *idx[OPS_MAX_RANK];
      for (int d = 0; d < ck->bufs[cs->buf].rank; d++) idx[d] = rewrite(&w, cs->idx[d]);
      kir_store(nk, w.cmap[cs->buf], idx, rewrite(&w, cs->value), rewrite(&w, cs->cond));
    }
    if (ck->libcall) {
      const kir_libcall_t *lc = ck->libcall;
      int *bufs = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(lc->n_bufs + 1));
      kir_expr_t **ints = fl_arena_alloc(c->arena, sizeof(*ints) * 12);
      memcpy(ints, lc->ints, sizeof(*ints) * (size_t)lc->n_ints);
      int n_ints = lc->n_ints;
      double *floats = fl_arena_memdup(c->arena, lc->floats, sizeof(double) * (size_t)(lc->n_floats + 1));
      for (int i = 0; i < lc->n_bufs; i++) bufs[i] = w.cmap[lc->bufs[i]];
      for (int op = 0; op < 2 && op < lc->n_bufs; op++) {
        through_t th;
        if (!inl[lc->bufs[op]] || !gemm_through(pr.p, w.pbind, pk, pout, lc, op, &th)) continue;
        const kir_buf_t *xb = &pk->bufs[th.x];
        bufs[op] = w.pmap[th.x] >= 0 ? w.pmap[th.x]
                                     : (w.pmap[th.x] = bind_buf(&w, OPS_BIND_INPUT, pr.pin[w.pbind[th.x].index],
                                                                xb->dtype, xb->rank, xb->dims, false));
        while (n_ints <= ld_slot[op]) ints[n_ints++] = kir_i64(c->arena, 0);
        ints[trans_slot[op]] = kir_i64(c->arena, th.t);
        ints[stride_slot[op]] = kir_i64(c->arena, th.s);
        ints[ld_slot[op]] = kir_i64(c->arena, th.ld);
        floats[0] *= th.scale;
      }
      kir_set_libcall(nk, lc->name, lc->n_bufs, bufs, n_ints, ints, lc->n_floats, floats);
      nk->libcall->ends_node = lc->ends_node;
      nk->libcall->skip = lc->skip;
    }
    if (keep) FL_TRY(keep_store(c, &w, ck));
  }
  return NULL;
}

/* ---- the operator ---- */

/* The node's body, and whether it keeps the producer's output (the body's
 * and the node's last output, after the consumer's). */
static flagos_status_t body_pair(const ops_ctx_t *c, const fir_graph_t **b, bool *keep) {
  *b = ops_fused_body(c->node);
  if (!*b || (*b)->n_nodes != 2 || (*b)->n_inputs != c->n_in || (*b)->n_outputs != c->n_out)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT,
                   "needs a graph attribute '%s' of two nodes (producer, consumer) with the node's inputs and outputs",
                   OPS_FUSED_BODY);
  const fir_node_t *p = (*b)->nodes[0], *q = (*b)->nodes[1];
  *keep = q->n_outputs + 1 == c->n_out;
  if (q->n_outputs != c->n_out && !*keep)
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the body's consumer has %d outputs, the node %d", q->n_outputs,
                   c->n_out);
  for (int k = 0; k < q->n_outputs; k++)
    if (q->outputs[k] != (*b)->outputs[k])
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "body output %d is not the consumer's output %d", k, k);
  if (*keep && (p->n_outputs != 1 || p->outputs[0] != (*b)->outputs[c->n_out - 1]))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the body's last output is not the producer's output");
  return NULL;
}

static flagos_status_t infer_inlined(ops_ctx_t *c) {
  const fir_graph_t *b;
  bool keep;
  FL_TRY(body_pair(c, &b, &keep));
  pair_t pr;
  FL_TRY(pair_infer(c, b->nodes[0], b->nodes[1], (const fir_value_t *const *)b->inputs, &pr));
  for (int k = 0; k < c->n_out; k++) {
    const ops_tensor_info_t *t = keep && k == c->n_out - 1 ? &pr.p->out[0] : &pr.q->out[k];
    if (!t->present || t->kind != FIR_TYPE_TENSOR)
      return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "the consumer's output %d is not a tensor", k);
    ops_set_out(c, k, t->dtype, t->rank, t->dims);
  }
  return NULL;
}

static flagos_status_t lower_inlined(ops_ctx_t *c) {
  const fir_graph_t *b;
  bool keep;
  FL_TRY(body_pair(c, &b, &keep));
  return inline_lower(c, b->nodes[0], b->nodes[1], (const fir_value_t *const *)b->inputs, keep);
}

static double flops_inlined(const ops_ctx_t *c) {
  ops_ctx_t tmp = *c; /* pair_infer only reads the node and its inputs */
  const fir_graph_t *b;
  bool keep;
  pair_t pr;
  flagos_status_t st = body_pair(&tmp, &b, &keep);
  if (!st) st = pair_infer(&tmp, b->nodes[0], b->nodes[1], (const fir_value_t *const *)b->inputs, &pr);
  if (st) {
    flagos_status_free(st);
    return -1;
  }
  double fp = ops_node_flops(pr.dp, pr.p), fq = ops_node_flops(pr.dq, pr.q);
  return fp < 0 || fq < 0 ? -1 : fp + fq;
}

bool ops_inline_can(fl_arena_t *a, const fir_node_t *pn, const fir_node_t *cn, const fir_value_t *const *ins,
                    int n_ins, bool keep) {
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n_ins + 1));
  ops_tensor_info_t *out = fl_arena_alloc(a, sizeof(*out) * (size_t)(cn->n_outputs + 2));
  for (int k = 0; k < n_ins; k++) ops_info_from_value(&in[k], ins[k]);
  ops_ctx_t *c = fl_arena_alloc(a, sizeof(*c));
  ops_ctx_init(c, a, cn, in, out, false);
  c->n_in = n_ins;
  if (keep) ops_info_from_value(&out[c->n_out++], pn->outputs[0]);
  c->kernel_prefix = "trial";
  flagos_status_t st = inline_lower(c, pn, cn, ins, keep);
  if (st) flagos_status_free(st);
  return !st;
}

const ops_def_t ops_family_inlined[] = {
    {.op_type = OPS_INLINE_OP, .domain = OPS_FUSED_DOMAIN, .infer = infer_inlined, .lower = lower_inlined,
     .flops = flops_inlined},
    {.op_type = NULL},
};

/* InlinedProducer, the epilogue form (docs/fusion.md): a consumer that is
 * one pointwise kernel over its producer's output, where the producer is not
 * one plain store (Softmax, LayerNormalization, a reduction), runs in the
 * producer's kernels: where the producer stored its value v at indices i, the
 * new kernel stores the consumer's value at i, each of its loads of the
 * producer's output being v (as the store would have rounded it) and its
 * other loads taken at i. PyTorch's exporter follows attention's Softmax by
 * Where(IsNaN(p), 0, p): with this, one kernel.
 *
 * Exact only when the producer writes each element of its output once and
 * never reads it back: so its kernels hold one store of the output in all,
 * unconditional, none of them loads the output, and no library call writes
 * it or ends the node (a library call computes the whole output, not the
 * stores we rewrite). */
#include <stdlib.h>
#include <string.h>

#include "ops/inlined_int.h"

typedef struct epi {
  ops_ctx_t *c;
  const pair_t *pr;
  const kir_kernel_t *ck; /* the consumer's kernel */
  const ops_bind_t *cbind;
  kir_kernel_t *nk;       /* the kernel being built */
  int *cmap;              /* consumer buffer -> nk buffer, -1 until loaded */
  int *pmap;              /* producer buffer -> nk buffer */
  kir_expr_t *const *at;  /* the producer store's indices (nk's expressions) */
  kir_expr_t *value;      /* the producer's stored value there, rounded as stored */
  memo_t memo;
} epi_t;

/* Whether buffer b of the consumer's kernel is the producer's output. */
static bool is_pout(const epi_t *w, int b) {
  return w->cbind[b].kind == OPS_BIND_INPUT && w->pr->qin[w->cbind[b].index] < 0;
}

/* Whether index e of dim d is kernel k's loop variable d (or 0, where that
 * variable's extent is 1: a load broadcasting a dim of size 1 reads it at 0). */
static bool at_var(const kir_kernel_t *k, const kir_expr_t *e, int d) {
  if (e->kind == KIR_VAR) return e->var == k->vars[d];
  int64_t v, n;
  return e->kind == KIR_CONST && kir_eval_int(e, NULL, 0, &v) && v == 0 && kir_eval_int(k->extents[d], NULL, 0, &n) &&
         n == 1;
}

/* Every load in e is of an input, and each of the producer's output is at the
 * kernel's loop variables. */
static bool loads_at_vars(const kir_kernel_t *k, const ops_bind_t *binds, const pair_t *pr, const kir_expr_t *e) {
  if (!e) return true;
  if (e->kind == KIR_LOAD && binds[e->buf].kind != OPS_BIND_INPUT) return false;
  if (e->kind == KIR_LOAD && pr->qin[binds[e->buf].index] < 0) {
    if (e->n != k->rank) return false;
    for (int d = 0; d < e->n; d++)
      if (!at_var(k, e->a[d], d)) return false;
  }
  for (int i = 0; i < e->n; i++)
    if (!loads_at_vars(k, binds, pr, e->a[i])) return false;
  return true;
}

/* The consumer's value e at the producer store's indices, in nk. */
static kir_expr_t *at_store(epi_t *w, const kir_expr_t *e) {
  if (!e) return NULL;
  kir_expr_t *r = ops_inl_memo_get(&w->memo, e);
  if (r) return r;
  fl_arena_t *a = w->c->arena;
  if (e->kind == KIR_VAR) {
    for (int d = 0; d < w->ck->rank; d++)
      if (w->ck->vars[d] == e->var) return w->at[d];
  }
  if (e->kind == KIR_LOAD && is_pout(w, e->buf)) {
    r = w->value;
  } else {
    r = ops_inl_copy_node(a, e);
    for (int i = 0; i < e->n; i++) r->a[i] = at_store(w, e->a[i]);
    if (e->kind == KIR_LOAD) {
      if (w->cmap[e->buf] < 0) {
        const kir_buf_t *kb = &w->ck->bufs[e->buf];
        w->cmap[e->buf] = ops_buf_view(w->c, w->nk, OPS_BIND_INPUT, w->pr->qin[w->cbind[e->buf].index], kb->rank,
                                       kb->dims);
        w->nk->bufs[w->cmap[e->buf]].dtype = kb->dtype;
      }
      r->buf = w->cmap[e->buf];
    }
  }
  ops_inl_memo_put(a, &w->memo, e, r);
  return r;
}

/* The producer's expression e in nk (its buffers mapped by pmap). */
static kir_expr_t *moved(fl_arena_t *a, const int *pmap, memo_t *m, const kir_expr_t *e) {
  if (!e) return NULL;
  kir_expr_t *r = ops_inl_memo_get(m, e);
  if (r) return r;
  r = ops_inl_copy_node(a, e);
  for (int i = 0; i < e->n; i++) r->a[i] = moved(a, pmap, m, e->a[i]);
  for (int i = 0; i < e->nr; i++) r->rext[i] = moved(a, pmap, m, e->rext[i]);
  if (e->kind == KIR_LOAD) r->buf = pmap[e->buf];
  ops_inl_memo_put(a, m, e, r);
  return r;
}

/* The consumer's one kernel, when it is pointwise over the producer's output:
 * one unconditional store of its only output at its loop variables, over the
 * producer's output shape, no library call, reduction or symbol, the producer's
 * output loaded at the loop variables alone. */
static const kir_kernel_t *pointwise_consumer(const pair_t *pr) {
  const ops_ctx_t *q = pr->q, *p = pr->p;
  if (q->n_steps != 1 || q->n_temps || q->n_out != 1) return NULL;
  const ops_step_t *st = &q->steps[0];
  const kir_kernel_t *k = st->kernel;
  const kir_store_t *s = k->n_stores == 1 ? &k->stores[0] : NULL;
  if (!s || k->libcall || k->serial || s->cond || st->binds[s->buf].kind != OPS_BIND_OUTPUT ||
      st->binds[s->buf].index != 0 || k->bufs[s->buf].rank != k->rank || k->rank != p->out[0].rank ||
      q->out[0].rank != k->rank)
    return NULL;
  for (int d = 0; d < k->rank; d++)
    if (!at_var(k, s->idx[d], d) || q->out[0].dims[d] != p->out[0].dims[d])
      return NULL;
  kir_expr_t *pdims[OPS_MAX_RANK];
  for (int d = 0; d < k->rank; d++) pdims[d] = kir_i64(p->arena, p->out[0].dims[d]);
  if (!ops_inl_same_dims(&k->bufs[s->buf], k->rank, k->extents) || !ops_inl_same_dims(&k->bufs[s->buf], k->rank, pdims))
    return NULL;
  scan_t sc = {.buf = -1};
  ops_inl_scan_kernel(k, &sc);
  if (sc.syms || sc.reduces || !loads_at_vars(k, st->binds, pr, s->value)) return NULL;
  return k;
}

flagos_status_t ops_inl_pointwise_stores(ops_ctx_t *c, const pair_t *pr) {
  const ops_ctx_t *p = pr->p;
  /* FLAGOS_FUSE_EPILOGUE=0: the fusion pass forms no such pair (a node already
   * formed, lowered again at run time, keeps its form) */
  const char *env = getenv("FLAGOS_FUSE_EPILOGUE");
  if (!c->runtime && env && strcmp(env, "0") == 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the epilogue form is off (FLAGOS_FUSE_EPILOGUE=0)");
  const kir_kernel_t *ck = pointwise_consumer(pr);
  if (!ck) return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the consumer is not one pointwise kernel over the producer's output");
  /* the producer's output: stored once in all its kernels, never loaded, no call writes it */
  int stores = 0;
  kir_expr_t *pdims[OPS_MAX_RANK];
  for (int d = 0; d < p->out[0].rank; d++) pdims[d] = kir_i64(c->arena, p->out[0].dims[d]);
  for (int s = 0; s < p->n_steps; s++) {
    const ops_step_t *st = &p->steps[s];
    const kir_kernel_t *k = st->kernel;
    int bound = 0;
    for (int b = 0; b < k->n_bufs; b++) {
      if (st->binds[b].kind != OPS_BIND_OUTPUT) continue;
      /* one buffer of the output a kernel, under the output's own shape */
      if (++bound > 1 || !ops_inl_same_dims(&k->bufs[b], p->out[0].rank, pdims))
        return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer's kernel %s binds its output twice or under "
                       "another shape", k->name);
      scan_t sc = {.buf = b};
      ops_inl_scan_kernel(k, &sc);
      /* a call that ends the node would skip the kernel that now stores the consumer's value */
      bool called = k->libcall && (k->libcall->ends_node || k->libcall->skip);
      for (int i = 0; k->libcall && i < k->libcall->n_bufs; i++) called = called || k->libcall->bufs[i] == b;
      if (sc.loads_of || called || sc.syms)
        return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer's kernel %s reads its output, hands it to a library "
                       "call, carries a call that ends the node or reads runtime symbols", k->name);
    }
    for (int i = 0; i < k->n_stores; i++) {
      if (st->binds[k->stores[i].buf].kind != OPS_BIND_OUTPUT) continue;
      if (k->stores[i].cond || k->bufs[k->stores[i].buf].dtype != p->out[0].dtype) stores = 2;
      stores++;
    }
  }
  if (stores != 1)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the producer does not write its output with one unconditional store");
  for (int t = 0; t < p->n_temps; t++) ops_temp(c, p->temps[t].dtype, p->temps[t].rank, p->temps[t].dims);
  const kir_buf_t *ob = &ck->bufs[ck->stores[0].buf];
  for (int s = 0; s < p->n_steps; s++) {
    const ops_step_t *st = &p->steps[s];
    const kir_kernel_t *k = st->kernel;
    kir_kernel_t *nk = ops_inl_kernel_like(c, k);
    int *pmap = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(k->n_bufs + 1));
    int out = -1;
    for (int b = 0; b < k->n_bufs; b++) {
      const ops_bind_t *bd = &st->binds[b];
      const kir_buf_t *kb = &k->bufs[b];
      if (bd->kind == OPS_BIND_OUTPUT) {
        out = b;
        pmap[b] = ops_buf_view(c, nk, OPS_BIND_OUTPUT, 0, ob->rank, ob->dims);
        nk->bufs[pmap[b]].dtype = ob->dtype;
        continue;
      }
      pmap[b] = ops_buf_view(c, nk, bd->kind, bd->kind == OPS_BIND_INPUT ? pr->pin[bd->index] : bd->index, kb->rank,
                             kb->dims);
      nk->bufs[pmap[b]].dtype = kb->dtype;
    }
    memo_t m = {0};
    for (int i = 0; i < k->n_stores; i++) {
      const kir_store_t *ks = &k->stores[i];
      kir_expr_t *idx[OPS_MAX_RANK];
      for (int d = 0; d < k->bufs[ks->buf].rank; d++) idx[d] = moved(c->arena, pmap, &m, ks->idx[d]);
      kir_expr_t *v = moved(c->arena, pmap, &m, ks->value), *cond = moved(c->arena, pmap, &m, ks->cond);
      if (ks->buf == out) {
        epi_t w = {.c = c, .pr = pr, .ck = ck, .cbind = pr->q->steps[0].binds, .nk = nk, .at = idx,
                   .value = ops_stored_value(c->arena, v, p->out[0].dtype)};
        w.cmap = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(ck->n_bufs + 1));
        for (int b = 0; b < ck->n_bufs; b++) w.cmap[b] = -1;
        v = at_store(&w, ck->stores[0].value);
      }
      kir_store(nk, pmap[ks->buf], idx, v, cond);
    }
    const kir_libcall_t *lc = k->libcall;
    if (!lc) continue;
    int *bufs = fl_arena_alloc(c->arena, sizeof(int) * (size_t)(lc->n_bufs + 1));
    for (int i = 0; i < lc->n_bufs; i++) bufs[i] = pmap[lc->bufs[i]];
    kir_set_libcall(nk, lc->name, lc->n_bufs, bufs, lc->n_ints, lc->ints, lc->n_floats, lc->floats);
    nk->libcall->ends_node = lc->ends_node;
    nk->libcall->skip = lc->skip;
  }
  return NULL;
}

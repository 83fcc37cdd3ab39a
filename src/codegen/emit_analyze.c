/* The emitter's analysis of a kernel's expression nodes (src/codegen/README.md):
 * per node, its references, free variables and loaded buffers, in a table keyed
 * by the node's address, filled once before any text is written. */
#include <stdint.h>

#include "codegen/cg_internal.h"

/* ---- node analysis (pointer-keyed open addressing; entries live in the arena) ---- */
cg_info_t *cg_info(cg_t *g, const kir_expr_t *e) {
  if (!g->info_cap) return NULL;
  size_t m = g->info_cap - 1;
  for (size_t i = fl_hash_ptr(e) & m;; i = (i + 1) & m) {
    if (!g->info[i].e) return NULL;
    if (g->info[i].e == e) return &g->info[i];
  }
}

static cg_info_t *info_insert(cg_t *g, const kir_expr_t *e) {
  if ((g->info_n + 1) * 2 > g->info_cap) {
    size_t nc = g->info_cap ? g->info_cap * 2 : 256;
    cg_info_t *old = g->info;
    size_t oc = g->info_cap;
    g->info = fl_arena_alloc(g->a, sizeof(*g->info) * nc);
    g->info_cap = nc;
    for (size_t i = 0; i < oc; i++) {
      if (!old[i].e) continue;
      size_t j = fl_hash_ptr(old[i].e) & (nc - 1);
      while (g->info[j].e) j = (j + 1) & (nc - 1);
      g->info[j] = old[i];
    }
  }
  size_t m = g->info_cap - 1, i = fl_hash_ptr(e) & m;
  while (g->info[i].e) i = (i + 1) & m;
  g->info[i].e = e;
  g->info_n++;
  return &g->info[i];
}

/* Counts references and computes free variables and loaded buffers, once per node.
 * The table may grow during the children's analysis, so results are copied into
 * fresh bitsets first and stored after. */
void cg_analyze(cg_t *g, const kir_expr_t *e) {
  cg_info_t *in = cg_info(g, e);
  if (in) {
    in->refs++;
    return;
  }
  if (g->err) return;
  const kir_kernel_t *k = g->k;
  uint64_t *vars = cg_bits_new(g, g->nw_var), *loads = cg_bits_new(g, g->nw_buf);
  if (!cg_dtype_supported(e->dtype)) {
    cg_fail(g, FLAGOS_ERR_UNSUPPORTED, "dtype %s is not supported by the %s emitter", flagos_dtype_name(e->dtype),
            g->d->name);
    return;
  }
  in = info_insert(g, e);
  in->refs = 1;
  in->vars = vars;
  in->loads = loads;
  int nchild = e->n;
  switch (e->kind) {
  case KIR_VAR:
    if (e->var < 0 || e->var >= k->next_var) {
      cg_fail(g, FLAGOS_ERR_INTERNAL, "variable v%d was not made by kir_new_var", e->var);
      return;
    }
    cg_bit_set(vars, e->var);
    break;
  case KIR_SYM:
    if (e->sym < 0 || e->sym >= k->n_syms) {
      cg_fail(g, FLAGOS_ERR_INTERNAL, "symbol %d is outside the kernel's %d symbols", e->sym, k->n_syms);
      return;
    }
    break;
  case KIR_LOAD:
    if (e->buf < 0 || e->buf >= k->n_bufs) {
      cg_fail(g, FLAGOS_ERR_INTERNAL, "load from buffer %d of %d", e->buf, k->n_bufs);
      return;
    }
    cg_bit_set(loads, e->buf);
    break;
  default: break;
  }
  for (int i = 0; i < nchild; i++) {
    cg_analyze(g, e->a[i]);
    cg_info_t *c = cg_info(g, e->a[i]);
    if (!c) return;
    cg_bits_or(vars, c->vars, g->nw_var);
    cg_bits_or(loads, c->loads, g->nw_buf);
  }
  if (e->kind == KIR_REDUCE) {
    for (int i = 0; i < e->nr; i++) {
      cg_analyze(g, e->rext[i]);
      cg_info_t *c = cg_info(g, e->rext[i]);
      if (!c) return;
      cg_bits_or(vars, c->vars, g->nw_var);
      cg_bits_or(loads, c->loads, g->nw_buf);
    }
    for (int i = 0; i < e->nr; i++)
      if (e->rvars[i] >= 0 && e->rvars[i] < k->next_var) vars[e->rvars[i] >> 6] &= ~(1ull << (e->rvars[i] & 63));
  }
}

/* FLOP accounting shared by the compiler (manifest "flops") and the runtime's
 * profiler (nodes whose shapes were dynamic at compile time). The per-operator
 * formulas live with the operators; docs/eaf.md lists them. */
#include "ops/ops.h"

/* A flops function answers 0 when a dim it needs is unknown, which cannot be
 * told apart from a node that really does no arithmetic; so unknown is decided
 * here, before asking it: every tensor dim and parameter must be concrete. */
static bool all_known(const ops_ctx_t *c) {
  if (!c->is_static) return false;
  for (int k = 0; k < c->n_out; k++)
    if (c->out[k].present && c->out[k].kind == FIR_TYPE_TENSOR && c->out[k].numel < 0) return false;
  return true;
}

double ops_node_flops(const ops_def_t *d, const ops_ctx_t *c) {
  if (!d || d->host) return 0;
  if (!all_known(c)) return -1;
  if (d->flops) return d->flops(c);
  double n = 0;
  for (int k = 0; k < c->n_out; k++)
    if (c->out[k].present && c->out[k].kind == FIR_TYPE_TENSOR) n += (double)c->out[k].numel;
  return n;
}

static double tensor_bytes(const ops_tensor_info_t *t) {
  if (!t->present || t->kind != FIR_TYPE_TENSOR) return 0;
  if (t->numel < 0) return -1;
  return (double)t->numel * (double)flagos_dtype_size(t->dtype);
}

double ops_node_bytes(const ops_ctx_t *c) {
  double b = 0;
  for (int k = 0; k < c->n_in + c->n_out; k++) {
    double x = tensor_bytes(k < c->n_in ? &c->in[k] : &c->out[k - c->n_in]);
    if (x < 0) return -1;
    b += x;
  }
  return b;
}

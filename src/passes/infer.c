/* Shape and type inference: every operator's own shape rule, run at compile time
 * on what is known (static dims, constant values). */
#include <stdio.h>
#include <string.h>

#include "ops/ops.h"
#include "passes/passes.h"

static void print_dims(char *buf, size_t n, int rank, const int64_t *dims) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, n - o, "[");
  for (int i = 0; i < rank && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, i ? ",%lld" : "%lld", (long long)dims[i]);
  if (o < n) snprintf(buf + o, n - o, "]");
}

static bool is_graph_output(const fir_value_t *v) {
  const fir_graph_t *g = v->graph;
  for (int i = 0; g && i < g->n_outputs; i++)
    if (g->outputs[i] == v) return true;
  return false;
}

/* The type an output gets: the inferred one, completed by what the model
 * declared. A declared static dim that differs from the inferred one is an
 * error for a graph output (the caller was promised that shape) and a warning
 * for an intermediate value, whose declaration an exporter can get wrong
 * (torch 2.5's dynamo exporter declares the CPU flash attention's logsumexp as
 * [b, h, s] where its own Expand computes [b, s, 32]; ONNX Runtime runs such
 * models): the inferred shape, which the kernels compute, is used. */
static flagos_status_t merge_output_type(fir_model_t *m, const fir_node_t *n, fir_value_t *v, const ops_tensor_info_t *t) {
  const fir_type_t *decl = v->type;
  if (t->kind == FIR_TYPE_SEQUENCE || t->kind == FIR_TYPE_OPTIONAL) {
    if (decl->kind == t->kind && decl->elem && decl->elem->kind != FIR_TYPE_UNKNOWN) return NULL;
    fir_type_t *ty = fir_type_unknown(m);
    ty->kind = t->kind;
    fir_type_t *e = fir_type_tensor(m, t->dtype, t->rank, t->rank > 0 ? t->dims : NULL);
    if (t->kind == FIR_TYPE_OPTIONAL && t->elem_kind == FIR_TYPE_SEQUENCE) {
      fir_type_t *sq = fir_type_unknown(m);
      sq->kind = FIR_TYPE_SEQUENCE;
      sq->elem = e;
      e = sq;
    }
    ty->elem = e;
    v->type = ty;
    return NULL;
  }
  if (decl->kind == FIR_TYPE_TENSOR && decl->dtype != FLAGOS_UNDEFINED && decl->dtype != t->dtype)
    return FL_ERR(FLAGOS_ERR_SHAPE, "%s node '%s': output '%s' is inferred as %s but the model declares %s", n->op_type,
                  n->name, v->name, flagos_dtype_name(t->dtype), flagos_dtype_name(decl->dtype));
  fir_type_t *ty = fir_type_tensor(m, t->dtype, t->rank, t->dims);
  if (decl->kind == FIR_TYPE_TENSOR && decl->rank == t->rank && t->rank >= 0) {
    bool warned = false;
    for (int i = 0; i < t->rank; i++) {
      const fir_dim_t *dd = &decl->dims[i];
      if (t->dims[i] < 0) {
        ty->dims[i] = *dd; /* keeps the declared static value or symbol name */
      } else if (dd->value >= 0 && dd->value != t->dims[i] && !warned) {
        char a[256], b[256];
        int64_t dv[OPS_MAX_RANK];
        for (int j = 0; j < decl->rank && j < OPS_MAX_RANK; j++) dv[j] = decl->dims[j].value;
        print_dims(a, sizeof a, t->rank, t->dims);
        print_dims(b, sizeof b, decl->rank, dv);
        if (is_graph_output(v))
          return FL_ERR(FLAGOS_ERR_SHAPE, "%s node '%s': output '%s' is inferred as shape %s but the model declares %s",
                        n->op_type, n->name, v->name, a, b);
        fprintf(stderr, "flagos: warning: %s node '%s': value '%s' is inferred as shape %s but the model declares %s; "
                "the inferred shape is used\n", n->op_type, n->name, v->name, a, b);
        warned = true;
      }
    }
  }
  v->type = ty;
  return NULL;
}

flagos_status_t pass_infer_node(fir_model_t *m, fir_node_t *n) {
  FL_TRY(pass_infer_subgraphs(m, n));
  /* Identity passes sequences and optionals through unchanged (the runtime copies them). */
  if (strcmp(n->op_type, "Identity") == 0 && !n->domain[0] && n->n_inputs == 1 && n->inputs[0] && n->n_outputs == 1 &&
      n->outputs[0] && n->inputs[0]->type->kind != FIR_TYPE_TENSOR) {
    n->outputs[0]->type = fir_type_clone(m, n->inputs[0]->type);
    return NULL;
  }
  const ops_def_t *d = ops_find(n->op_type, n->domain);
  if (!d)
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "unsupported operator %s (domain '%s', opset %d) at node '%s'", n->op_type,
                  n->domain[0] ? n->domain : "ai.onnx", n->opset, n->name);
  fl_arena_t *a = fl_arena_create();
  ops_tensor_info_t *in = fl_arena_alloc(a, sizeof(*in) * (size_t)(n->n_inputs + 1));
  ops_tensor_info_t *out = fl_arena_alloc(a, sizeof(*out) * (size_t)(n->n_outputs + 1));
  for (int k = 0; k < n->n_inputs; k++) ops_info_from_value(&in[k], n->inputs[k]);
  ops_ctx_t *c = fl_arena_alloc(a, sizeof(*c));
  ops_ctx_init(c, a, n, in, out, false);
  flagos_status_t st = ops_ctx_infer(c, d);
  for (int k = 0; !st && k < n->n_outputs; k++) {
    if (!n->outputs[k]) continue;
    if (!out[k].present) {
      st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s node '%s': output %d ('%s') is not produced by this implementation",
                  n->op_type, n->name, k, n->outputs[k]->name);
      break;
    }
    if (out[k].kind == FIR_TYPE_TENSOR && out[k].rank < 0 && !d->host) {
      st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "%s node '%s': the rank of output '%s' cannot be known before run time",
                  n->op_type, n->name, n->outputs[k]->name);
      break;
    }
    st = merge_output_type(m, n, n->outputs[k], &out[k]);
  }
  fl_arena_destroy(a);
  return st;
}

flagos_status_t pass_infer_types(fir_model_t *m) {
  fir_graph_t *g = m->graph;
  for (int i = 0; i < g->n_nodes; i++) FL_TRY(pass_infer_node(m, g->nodes[i]));
  return NULL;
}

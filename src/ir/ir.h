/* FlagIR: the graph IR every layer above the frontends works on.
 *
 * A model owns an arena; every graph, value, node, attribute, type and constant
 * tensor of the model (subgraphs included) is allocated from it and freed with
 * fir_model_destroy(). Passes that rewrite the graph allocate from the same arena.
 * Specification of the text form: docs/flagir.md. */
#ifndef FLAGOS_IR_H
#define FLAGOS_IR_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

typedef struct fir_graph fir_graph_t;
typedef struct fir_node fir_node_t;

/* ---- types ---- */

/* One dimension: static (value >= 0), symbolic (value < 0, sym names it), or
 * unknown (value < 0, sym NULL). */
typedef struct fir_dim {
  int64_t value;
  const char *sym;
} fir_dim_t;

typedef enum fir_type_kind {
  FIR_TYPE_TENSOR = 0,
  FIR_TYPE_SEQUENCE = 1, /* elem: type of each element */
  FIR_TYPE_OPTIONAL = 2, /* elem: type of the value when present */
  FIR_TYPE_MAP = 3,      /* key_dtype -> elem (ai.onnx.ml only) */
  FIR_TYPE_UNKNOWN = 4   /* not yet inferred */
} fir_type_kind_t;

typedef struct fir_type {
  fir_type_kind_t kind;
  flagos_dtype_t dtype;    /* tensor: element type; map: key type */
  int rank;                /* tensor: -1 when the rank is unknown */
  fir_dim_t *dims;         /* tensor: rank entries */
  struct fir_type *elem;   /* sequence, optional, map */
} fir_type_t;

/* ---- constant tensors (initializers, attribute tensors) ---- */
typedef struct fir_tensor {
  const char *name;  /* may be NULL for attribute tensors */
  flagos_dtype_t dtype;
  int rank;
  int64_t *dims;
  int64_t numel;
  /* Host data, numel * flagos_dtype_size(dtype) bytes, sub-byte types unpacked
   * (one element per byte). For FLAGOS_STRING, data is `char **` of numel strings
   * and string_lens their byte lengths (strings may hold NUL bytes). */
  void *data;
  size_t nbytes;
  size_t *string_lens;
  /* Index of the data in a bundle's weights section when the text form refers to
   * it (`@w<N>`) instead of holding it; -1 when data is held here. */
  int64_t ref;
} fir_tensor_t;

/* ---- nodes ---- */
/* Whether n is operator op of domain ("" for ONNX's default one). */
bool fir_node_is(const fir_node_t *n, const char *domain, const char *op);
/* Whether n is a view: Reshape, Flatten, Squeeze, Unsqueeze or Identity of ONNX's
 * domain (its output is its first input's bytes under another shape). */
bool fir_node_is_view(const fir_node_t *n);

/* ---- attributes ---- */
typedef enum fir_attr_kind {
  FIR_ATTR_UNDEFINED = 0,
  FIR_ATTR_FLOAT = 1,
  FIR_ATTR_INT = 2,
  FIR_ATTR_STRING = 3,
  FIR_ATTR_TENSOR = 4,
  FIR_ATTR_GRAPH = 5,
  FIR_ATTR_SPARSE_TENSOR = 11,
  FIR_ATTR_TYPE = 13,
  FIR_ATTR_FLOATS = 6,
  FIR_ATTR_INTS = 7,
  FIR_ATTR_STRINGS = 8,
  FIR_ATTR_TENSORS = 9,
  FIR_ATTR_GRAPHS = 10,
  FIR_ATTR_SPARSE_TENSORS = 12,
  FIR_ATTR_TYPES = 14
} fir_attr_kind_t; /* numbering follows ONNX's AttributeProto.AttributeType */

typedef struct fir_attr {
  const char *name;
  fir_attr_kind_t kind;
  int64_t i;
  float f;
  const char *s; /* string value (bytes), s_len bytes, NUL-terminated for convenience */
  size_t s_len;
  fir_tensor_t *t;
  fir_graph_t *g;
  fir_type_t *tp;
  int n; /* element count of the list kinds */
  int64_t *ints;
  float *floats;
  const char **strings;
  size_t *string_lens;
  fir_tensor_t **tensors;
  fir_graph_t **graphs;
  fir_type_t **types;
} fir_attr_t;

/* ---- values and nodes ---- */
typedef struct fir_value {
  const char *name;       /* unique within the model; "" never used */
  fir_type_t *type;       /* never NULL; kind FIR_TYPE_UNKNOWN until inferred */
  fir_graph_t *graph;     /* the graph that defines it */
  fir_node_t *producer;   /* NULL for graph inputs and initializers */
  int producer_output;
  fir_tensor_t *init;     /* constant data for initializers, else NULL */
  int id;                 /* index in graph->values */
} fir_value_t;

struct fir_node {
  const char *name;    /* ONNX node name; may be "" */
  const char *op_type;
  const char *domain;  /* "" for the default domain */
  int opset;           /* version of `domain` imported by the model */
  int n_inputs;
  fir_value_t **inputs;  /* NULL entries are omitted optional inputs */
  int n_outputs;
  fir_value_t **outputs; /* NULL entries are omitted optional outputs */
  int n_attrs;
  fir_attr_t *attrs;
  fir_graph_t *graph;    /* graph that contains the node */
  int id;
};

struct fir_graph {
  const char *name;
  struct fir_model *model;
  fir_graph_t *parent;  /* enclosing graph for subgraphs (outer values are visible) */
  int n_inputs;
  fir_value_t **inputs;
  int n_outputs;
  fir_value_t **outputs;
  int n_values, cap_values;
  fir_value_t **values; /* every value defined in this graph: inputs, initializers, node outputs */
  int n_nodes, cap_nodes;
  fir_node_t **nodes;   /* topological order once verified */
};

typedef struct fir_opset {
  const char *domain;
  int64_t version;
} fir_opset_t;

typedef struct fir_model {
  fl_arena_t *arena;
  int64_t ir_version;
  const char *producer;
  int n_opsets;
  fir_opset_t *opsets;
  fir_graph_t *graph;
} fir_model_t;

/* ---- construction ---- */
fir_model_t *fir_model_create(void);
void fir_model_destroy(fir_model_t *m);
/* Version of `domain` the model imports, or -1. */
int64_t fir_model_opset(const fir_model_t *m, const char *domain);
void fir_model_set_opset(fir_model_t *m, const char *domain, int64_t version);

fir_graph_t *fir_graph_create(fir_model_t *m, fir_graph_t *parent, const char *name);
/* Creates a value defined in graph g. The name must be unique in the model. */
fir_value_t *fir_value_create(fir_graph_t *g, const char *name, fir_type_t *type);
/* Looks a value up by name in g and then its enclosing graphs; NULL if absent. */
fir_value_t *fir_graph_lookup(const fir_graph_t *g, const char *name);
void fir_graph_add_input(fir_graph_t *g, fir_value_t *v);
void fir_graph_add_output(fir_graph_t *g, fir_value_t *v);
/* Appends a node; inputs/outputs arrays are copied. Outputs' producer is set. */
fir_node_t *fir_node_create(fir_graph_t *g, const char *op_type, const char *domain, const char *name,
                            int n_inputs, fir_value_t *const *inputs, int n_outputs, fir_value_t *const *outputs);
/* Removes nodes marked in `dead` (indexed by node->id) and renumbers ids. */
void fir_graph_remove_nodes(fir_graph_t *g, const bool *dead);
/* Removes the values whose id (below n_dead) is marked in `dead` (no node, graph
 * input or output may refer to them) and renumbers ids. */
void fir_graph_remove_values(fir_graph_t *g, const bool *dead, int n_dead);
/* Calls fn for every value that n's subgraphs (and theirs, to any depth) read:
 * their nodes' inputs and their outputs, in order, repeats included; the
 * values of outer graphs among them are n's captures. */
void fir_node_subgraph_reads(const fir_node_t *n, void (*fn)(fir_value_t *v, void *ctx), void *ctx);
/* Generates a fresh value name with the given prefix, unique in the model. */
const char *fir_fresh_name(fir_model_t *m, const char *prefix);

/* ---- types ---- */
fir_type_t *fir_type_unknown(fir_model_t *m);
fir_type_t *fir_type_tensor(fir_model_t *m, flagos_dtype_t dt, int rank, const int64_t *dims /* -1 = unknown, may be NULL */);
fir_type_t *fir_type_clone(fir_model_t *m, const fir_type_t *t);
bool fir_type_equal(const fir_type_t *a, const fir_type_t *b);
/* True when a tensor type has known rank and every dim is static. */
bool fir_type_is_static(const fir_type_t *t);
int64_t fir_type_numel(const fir_type_t *t); /* -1 if not static */
/* "f32[1,3,N]" style text into b (the FlagIR spelling). */
void fir_type_print(fl_buf_t *b, const fir_type_t *t);

/* ---- attributes ---- */
const fir_attr_t *fir_node_attr(const fir_node_t *n, const char *name);
int64_t fir_attr_int(const fir_node_t *n, const char *name, int64_t dflt);
float fir_attr_float(const fir_node_t *n, const char *name, float dflt);
const char *fir_attr_string(const fir_node_t *n, const char *name, const char *dflt);
/* Returns the list length (or -1 if absent) and points *out at the ints. */
int fir_attr_ints(const fir_node_t *n, const char *name, const int64_t **out);
int fir_attr_floats(const fir_node_t *n, const char *name, const float **out);
fir_attr_t *fir_node_add_attr(fir_node_t *n, const char *name, fir_attr_kind_t kind);

/* ---- tensors ---- */
fir_tensor_t *fir_tensor_create(fir_model_t *m, flagos_dtype_t dt, int rank, const int64_t *dims);

/* ---- verification and text form (ir_text.c, ir_verify.c) ---- */
/* Checks structure: names unique, every input defined before use (outer scopes
 * allowed in subgraphs), node outputs defined once, graph outputs defined,
 * types well-formed. Sorts nodes topologically if needed. */
flagos_status_t fir_verify(fir_model_t *m);
/* Prints the model in FlagIR text. With inline_weights false, initializer data is
 * printed as a reference `@w<N>` (the bundle keeps the bytes elsewhere). */
void fir_print(fl_buf_t *b, const fir_model_t *m, bool inline_weights);
/* Parses FlagIR text. Errors name the line and column. */
flagos_status_t fir_parse(const char *text, size_t len, fir_model_t **out);

#endif

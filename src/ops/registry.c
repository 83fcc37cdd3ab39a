/* The operator registry: a fixed list of family tables. Tables are declared weak so
 * a family that is not built leaves its slot empty instead of breaking the link. */
#include <string.h>

#include "ops/ops.h"

#define FAMILY(n) extern const ops_def_t ops_family_##n[] __attribute__((weak));
#define FAMILIES(X)                                                                                \
  X(elementwise) X(logical) X(cast) X(reduce) X(shape) X(index) X(linalg) X(conv) X(pool)          \
  X(norm) X(activation) X(generator) X(quant) X(sequence) X(control) X(misc) X(random) X(signal)   \
  X(nn) X(image) X(string) X(ml) X(training) X(attention) X(rnn) X(sort) X(scatter) X(resize)      \
  X(extra1) X(extra2) X(extra3) X(extra4) X(fused) X(inlined) X(attention_fused)        \
  X(product_act) X(product_norm)
FAMILIES(FAMILY)
#undef FAMILY

#define ENTRY(n) ops_family_##n,
static const ops_def_t *const *families(int *n) {
  static const ops_def_t *const list[] = {FAMILIES(ENTRY)};
  *n = (int)FL_ARRAY_LEN(list);
  return list;
}
#undef ENTRY

static bool same_domain(const char *a, const char *b) {
  if (!a || strcmp(a, "ai.onnx") == 0) a = "";
  if (!b || strcmp(b, "ai.onnx") == 0) b = "";
  return strcmp(a, b) == 0;
}

const ops_def_t *ops_find(const char *op_type, const char *domain) {
  int n;
  const ops_def_t *const *f = families(&n);
  for (int i = 0; i < n; i++) {
    if (!f[i]) continue;
    for (const ops_def_t *d = f[i]; d->op_type; d++)
      if (strcmp(d->op_type, op_type) == 0 && same_domain(d->domain, domain)) return d;
  }
  return NULL;
}

void ops_each(void (*fn)(const ops_def_t *d, void *user), void *user) {
  int n;
  const ops_def_t *const *f = families(&n);
  for (int i = 0; i < n; i++) {
    if (!f[i]) continue;
    for (const ops_def_t *d = f[i]; d->op_type; d++) fn(d, user);
  }
}

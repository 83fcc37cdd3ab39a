/* The code targets the compiler can emit for. Each target turns the kernels of a
 * model into one blob of code in the format its backend plugin's module_load
 * takes; the bundle keeps it in section "kernels.<name>" (and the source, where
 * there is one, in "source.<name>"). A new chip adds a row here: an emitter
 * (usually a dialect of src/codegen's shared base) and a way to package its code. */
#include <string.h>

#include "codegen/cgen.h"
#include "compiler/compiler.h"

static flagos_status_t build_cpu(kir_kernel_t *const *k, int n, const flagos_compile_options_t *o, fl_buf_t *src,
                                 void **code, size_t *len) {
  FL_TRY(cgen_c_emit(k, n, src));
  const char *cache = o->cache_dir ? o->cache_dir : cgen_default_cache_dir();
  return cgen_c_compile(src->data ? src->data : "", src->len, o->opt_level > 0 ? o->opt_level : 2, cache, code, len);
}

static const compiler_target_t k_targets[] = {
    {"cpu", "elf-so", build_cpu},
};

const compiler_target_t *compiler_find_target(const char *name) {
  for (size_t i = 0; i < FL_ARRAY_LEN(k_targets); i++)
    if (strcmp(k_targets[i].name, name) == 0) return &k_targets[i];
  return NULL;
}

const char *compiler_target_names(void) { return "cpu"; }

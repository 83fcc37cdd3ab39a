/* The code targets the compiler can emit for. Each target turns the kernels of a
 * model into one blob of code in the format its backend plugin's module_load
 * takes; the bundle keeps it in section "kernels.<name>" (and the source, where
 * there is one, in "source.<name>"). A new chip adds a row here: an emitter
 * (usually a dialect of src/codegen's shared base) and a way to package its code. */
#include <stdlib.h>
#include <string.h>

#include "codegen/cgen.h"
#include "compiler/compiler.h"

static flagos_status_t build_cpu(kir_kernel_t *const *k, int n, const flagos_compile_options_t *o, fl_buf_t *src,
                                 void **code, size_t *len) {
  FL_TRY(cgen_c_emit(k, n, src));
  const char *cache = o->cache_dir ? o->cache_dir : cgen_default_cache_dir();
  return cgen_c_compile(src->data ? src->data : "", src->len, o->opt_level > 0 ? o->opt_level : 2, cache, code, len);
}

/* CUDA C compiled by NVRTC into cubins for several architectures plus PTX, in
 * one container (docs/kernel-ir.md, "The CUDA kernel ABI"); needs no GPU. */
static flagos_status_t build_cuda(kir_kernel_t *const *k, int n, const flagos_compile_options_t *o, fl_buf_t *src,
                                  void **code, size_t *len) {
  FL_TRY(cgen_cuda_emit(k, n, src));
  if (n == 0) { /* nothing to compile: an empty container, and no need for NVRTC */
    unsigned char *c = calloc(1, CGEN_CUDA_HEADER_SIZE);
    if (!c) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(c, CGEN_CUDA_MAGIC, 8);
    c[8] = (unsigned char)CGEN_CUDA_VERSION;
    *code = c;
    *len = CGEN_CUDA_HEADER_SIZE;
    return NULL;
  }
  const char *cache = o->cache_dir ? o->cache_dir : cgen_default_cache_dir();
  return cgen_cuda_compile(src->data ? src->data : "", src->len, NULL, cache, code, len);
}

/* OpenCL C kept as source: the opencl backend builds it at load for the device
 * it runs on (with a binary cache), so the code blob is the source itself and
 * no separate "source.opencl" section is written. */
static flagos_status_t build_opencl(kir_kernel_t *const *k, int n, const flagos_compile_options_t *o, fl_buf_t *src,
                                    void **code, size_t *len) {
  FL_UNUSED(o);
  FL_UNUSED(src);
  fl_buf_t text = {0};
  flagos_status_t st = cgen_opencl_emit(k, n, &text);
  if (st) {
    fl_buf_free(&text);
    return st;
  }
  *len = text.len;
  *code = fl_buf_take(&text);
  if (!*code) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  return NULL;
}

static const compiler_target_t k_targets[] = {
    {"cpu", "elf-so", build_cpu},
    {"cuda", "flagos-cuda", build_cuda},
    {"opencl", "opencl-c", build_opencl},
};

const compiler_target_t *compiler_find_target(const char *name) {
  for (size_t i = 0; i < FL_ARRAY_LEN(k_targets); i++)
    if (strcmp(k_targets[i].name, name) == 0) return &k_targets[i];
  return NULL;
}

const char *compiler_target_names(void) { return "cpu, cuda, opencl"; }

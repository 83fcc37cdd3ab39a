/* Family extra3: ImageDecoder (opset 20).
 *
 * encoded_stream (1-D uint8: the bytes of a JPEG, PNG, BMP, WebP, TIFF, JPEG 2000
 * or PNM file) -> image [H, W, C] uint8, C = 3 for pixel_format RGB or BGR, 1 for
 * Grayscale. Decoding is not expressible in kernel IR, so the operator runs in
 * the runtime (src/runtime/host_image.c) with the system's codec libraries; its
 * shape rule here knows only the rank and the channel count: H and W come from
 * the data at run time. */
#include <string.h>

#include "ops/ops.h"

static flagos_status_t image_decoder_infer(ops_ctx_t *c) {
  if (c->n_in != 1 || !ops_has_in(c, 0))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects one input, encoded_stream");
  const ops_tensor_info_t *x = &c->in[0];
  if (x->kind != FIR_TYPE_TENSOR || x->dtype != FLAGOS_UINT8)
    return ops_err(c, FLAGOS_ERR_SHAPE, "encoded_stream must be a uint8 tensor, got %s", flagos_dtype_name(x->dtype));
  if (x->rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "encoded_stream must be 1-D, got rank %d", x->rank);
  const char *fmt = fir_attr_string(c->node, "pixel_format", "RGB");
  int64_t ch;
  if (strcmp(fmt, "RGB") == 0 || strcmp(fmt, "BGR") == 0)
    ch = 3;
  else if (strcmp(fmt, "Grayscale") == 0)
    ch = 1;
  else
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "pixel_format '%s' is not RGB, BGR or Grayscale", fmt);
  int64_t dims[3] = {-1, -1, ch};
  c->n_params = 0;
  ops_set_out(c, 0, FLAGOS_UINT8, 3, dims);
  return NULL;
}

const ops_def_t ops_family_extra3[] = {
    {"ImageDecoder", "", 0, image_decoder_infer, NULL, NULL, true},
    {NULL, NULL, 0, NULL, NULL, NULL, false},
};

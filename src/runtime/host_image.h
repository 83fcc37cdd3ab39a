/* ImageDecoder, run by the runtime itself (host_image.c, host_image_fmt.c). */
#ifndef FLAGOS_HOST_IMAGE_H
#define FLAGOS_HOST_IMAGE_H

#include "runtime/exec.h"

/* Decodes the node's encoded_stream into its [H, W, C] uint8 output. */
flagos_status_t rt_host_image_decode(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn);

/* ---- internal to the image decoder files ---- */

/* A decoded picture: 1 (gray) or 3 (RGB) interleaved 8-bit channels, malloc'ed. */
typedef struct rt_image {
  int64_t h, w;
  int ch;
  uint8_t *px;
} rt_image_t;

/* Decoders of the formats FlagOS parses itself (host_image_fmt.c). */
flagos_status_t rt_image_bmp(const uint8_t *p, size_t n, rt_image_t *img);
flagos_status_t rt_image_pnm(const uint8_t *p, size_t n, rt_image_t *img);
/* Allocates img->px for h x w x ch, refusing empty images and more than 2 GiB. */
flagos_status_t rt_image_alloc(rt_image_t *img, int64_t h, int64_t w, int ch);

#endif

/* The image formats simple enough to parse here: BMP and PNM (P1-P6). Both follow
 * what Pillow (ONNX's reference decoder) produces: palettes expanded to RGB,
 * BMP channels of fewer than 8 bits scaled by v * 255 / max (truncated), PNM
 * values clamped to maxval and scaled by v * 255 / maxval rounded half to even. Every read is bounds-checked: the
 * bytes are the user's. */
#include <stdlib.h>
#include <string.h>

#include "runtime/host_image.h"

#define BAD(...) FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, __VA_ARGS__)
#define MAX_BYTES ((int64_t)1 << 31) /* largest decoded image accepted */

flagos_status_t rt_image_alloc(rt_image_t *img, int64_t h, int64_t w, int ch) {
  if (h <= 0 || w <= 0 || h > MAX_BYTES || w > MAX_BYTES || h * w > MAX_BYTES / ch)
    return BAD("image size %lld x %lld is empty or too large", (long long)h, (long long)w);
  img->h = h;
  img->w = w;
  img->ch = ch;
  img->px = malloc((size_t)(h * w * ch));
  if (!img->px)
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "cannot allocate a %lld x %lld image", (long long)h, (long long)w);
  return NULL;
}

/* ---- BMP ---- */

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }

/* Channel value from a bit field: the field's bits scaled to 0..255. */
static uint8_t field(uint32_t px, uint32_t mask) {
  if (!mask) return 0;
  int shift = 0;
  while (!((mask >> shift) & 1)) shift++;
  uint32_t maxv = mask >> shift, v = (px & mask) >> shift;
  return (uint8_t)((uint64_t)v * 255 / maxv);
}

flagos_status_t rt_image_bmp(const uint8_t *p, size_t n, rt_image_t *img) {
  if (n < 26 || p[0] != 'B' || p[1] != 'M') return BAD("not a BMP file");
  uint32_t off = le32(p + 10), hs = le32(p + 14);
  int64_t w, h;
  uint32_t bpp, comp = 0, ncol = 0, masks[3] = {0, 0, 0};
  int pal_entry = 4;
  if (hs == 12) {
    w = (int16_t)le16(p + 18);
    h = (int16_t)le16(p + 20);
    bpp = le16(p + 24);
    pal_entry = 3;
  } else if (hs >= 40 && n >= 14 + (size_t)hs) {
    w = (int32_t)le32(p + 18);
    h = (int32_t)le32(p + 22);
    bpp = le16(p + 28);
    comp = le32(p + 30);
    ncol = le32(p + 46);
  } else {
    return BAD("BMP header of %u bytes is not supported or truncated", hs);
  }
  bool top_down = h < 0;
  if (top_down) h = -h;
  if (comp == 3 || comp == 6) { /* BITFIELDS: masks follow a 40-byte header, or are part of a longer one */
    size_t at = 14 + 40;
    if (n < at + 12) return BAD("BMP bit masks are truncated");
    for (int i = 0; i < 3; i++) masks[i] = le32(p + at + 4 * i);
  } else if (comp != 0) {
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "compressed BMP (compression %u) is not supported", comp);
  }
  if (bpp == 16 && comp == 0) {
    masks[0] = 0x7c00;
    masks[1] = 0x03e0;
    masks[2] = 0x001f;
  } else if (bpp == 32 && comp == 0) {
    masks[0] = 0xff0000;
    masks[1] = 0xff00;
    masks[2] = 0xff;
  }
  if (bpp != 1 && bpp != 2 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
    return BAD("BMP with %u bits per pixel is not supported", bpp);
  uint8_t pal[256][3];
  memset(pal, 0, sizeof pal);
  if (bpp <= 8) {
    uint32_t count = ncol ? ncol : 1u << bpp;
    if (count > 256) return BAD("BMP palette of %u colours", count);
    size_t at = 14 + hs;
    if (n < at + (size_t)count * (size_t)pal_entry) return BAD("BMP palette is truncated");
    for (uint32_t i = 0; i < count; i++) {
      const uint8_t *e = p + at + (size_t)i * (size_t)pal_entry;
      pal[i][0] = e[2];
      pal[i][1] = e[1];
      pal[i][2] = e[0];
    }
  }
  FL_TRY(rt_image_alloc(img, h, w, 3));
  size_t stride = (size_t)(((uint64_t)w * bpp + 31) / 32 * 4);
  if (off > n || (n - off) / stride < (size_t)h) {
    free(img->px);
    img->px = NULL;
    return BAD("BMP pixel data is truncated (%zu bytes for %lld rows of %zu)", n - (off > n ? n : off), (long long)h,
               stride);
  }
  for (int64_t y = 0; y < h; y++) {
    const uint8_t *row = p + off + (size_t)(top_down ? y : h - 1 - y) * stride;
    uint8_t *o = img->px + (size_t)(y * w * 3);
    for (int64_t x = 0; x < w; x++, o += 3) {
      if (bpp <= 8) {
        uint64_t bit = (uint64_t)x * bpp;
        uint32_t idx = (row[bit / 8] >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
        memcpy(o, pal[idx], 3);
      } else if (bpp == 24) {
        o[0] = row[3 * x + 2];
        o[1] = row[3 * x + 1];
        o[2] = row[3 * x];
      } else {
        uint32_t px = bpp == 16 ? le16(row + 2 * x) : le32(row + 4 * x);
        for (int c = 0; c < 3; c++) o[c] = field(px, masks[c]);
      }
    }
  }
  return NULL;
}

/* ---- PNM ---- */

typedef struct pnm_rd {
  const uint8_t *p;
  size_t n, at;
} pnm_rd_t;

static bool is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Skips whitespace and comments, then reads a decimal number (at most `digits` digits; 0 = any). */
static bool pnm_number(pnm_rd_t *r, int digits, uint32_t *out) {
  for (;;) {
    while (r->at < r->n && is_space(r->p[r->at])) r->at++;
    if (r->at < r->n && r->p[r->at] == '#') {
      while (r->at < r->n && r->p[r->at] != '\n' && r->p[r->at] != '\r') r->at++;
      continue;
    }
    break;
  }
  uint64_t v = 0;
  int k = 0;
  while (r->at < r->n && r->p[r->at] >= '0' && r->p[r->at] <= '9' && (digits == 0 || k < digits)) {
    v = v * 10 + (uint64_t)(r->p[r->at++] - '0');
    if (v > 0xffffffffu) return false;
    k++;
  }
  *out = (uint32_t)v;
  return k > 0;
}

static uint8_t pnm_scale(uint32_t v, uint32_t maxv) {
  if (v > maxv) v = maxv;
  uint64_t num = (uint64_t)v * 255, q = num / maxv, r = num % maxv;
  if (2 * r > maxv || (2 * r == maxv && (q & 1))) q++;
  return (uint8_t)q;
}

flagos_status_t rt_image_pnm(const uint8_t *p, size_t n, rt_image_t *img) {
  if (n < 3 || p[0] != 'P' || p[1] < '1' || p[1] > '6') return BAD("not a PNM file");
  int kind = p[1] - '0';
  bool bitmap = kind == 1 || kind == 4, plain = kind <= 3;
  int ch = kind == 3 || kind == 6 ? 3 : 1;
  pnm_rd_t r = {p, n, 2};
  uint32_t w, h, maxv = 1;
  if (!pnm_number(&r, 0, &w) || !pnm_number(&r, 0, &h) || (!bitmap && !pnm_number(&r, 0, &maxv)))
    return BAD("PNM header is malformed");
  if (maxv == 0 || maxv > 65535) return BAD("PNM maxval %u is out of range", maxv);
  if (!plain) {
    if (r.at >= n || !is_space(p[r.at])) return BAD("PNM header does not end with whitespace");
    r.at++;
  }
  FL_TRY(rt_image_alloc(img, h, w, ch));
  size_t count = (size_t)h * w * (size_t)ch, bytes = maxv > 255 ? 2 : 1;
  flagos_status_t st = NULL;
  if (kind == 4) {
    size_t stride = (w + 7) / 8;
    if ((n - r.at) / stride < h) st = BAD("PNM pixel data is truncated");
    for (size_t y = 0; !st && y < h; y++)
      for (size_t x = 0; x < w; x++) img->px[y * w + x] = (p[r.at + y * stride + x / 8] >> (7 - x % 8)) & 1 ? 0 : 255;
  } else if (!plain) {
    if ((n - r.at) / bytes < count) st = BAD("PNM pixel data is truncated");
    for (size_t i = 0; !st && i < count; i++) {
      const uint8_t *q = p + r.at + i * bytes;
      uint32_t v = bytes == 2 ? (uint32_t)q[0] << 8 | q[1] : q[0];
      img->px[i] = pnm_scale(v, maxv);
    }
  } else {
    for (size_t i = 0; !st && i < count; i++) {
      uint32_t v;
      if (!pnm_number(&r, bitmap ? 1 : 0, &v))
        st = BAD("PNM pixel data is truncated or malformed");
      else if (bitmap)
        img->px[i] = v ? 0 : 255;
      else
        img->px[i] = pnm_scale(v, maxv);
    }
  }
  if (st) {
    free(img->px);
    img->px = NULL;
  }
  return st;
}

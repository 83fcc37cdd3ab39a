/* ImageDecoder in the runtime: the encoded bytes are copied to the host, the
 * format is recognised by its signature, decoded with the system's codec library
 * (libjpeg, libpng, libtiff, libwebp, OpenJPEG; each optional, see
 * cmake/image.cmake) or by host_image_fmt.c (BMP, PNM), and the [H, W, C] result
 * is copied to the device. Decoders produce gray or RGB; the requested
 * pixel_format is made from that the way Pillow (ONNX's reference) does:
 * gray is replicated to RGB, RGB becomes gray as L = (19595 R + 38470 G + 7471 B
 * + 2^15) >> 16, BGR reverses the channels. Alpha channels are dropped. */
#include <stdlib.h>
#include <string.h>

#include "runtime/host_image.h"

#ifdef FLAGOS_HAVE_JPEG
#include <stdio.h> /* jpeglib.h needs FILE */
#include <setjmp.h>
#include <jpeglib.h>
#endif
#ifdef FLAGOS_HAVE_PNG
#include <png.h>
#endif
#ifdef FLAGOS_HAVE_TIFF
#include <tiffio.h>
#endif
#ifdef FLAGOS_HAVE_WEBP
#include <webp/decode.h>
#endif
#ifdef FLAGOS_HAVE_OPENJP2
#include <openjpeg.h>
#endif

#define BAD(...) FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT, __VA_ARGS__)

static inline void image_free(rt_image_t *img) {
  free(img->px);
  img->px = NULL;
}

/* ---- JPEG ---- */
#ifdef FLAGOS_HAVE_JPEG
typedef struct jpeg_err {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} jpeg_err_t;

static void jpeg_fail(j_common_ptr ci) {
  jpeg_err_t *e = (jpeg_err_t *)ci->err;
  ci->err->format_message(ci, e->msg);
  longjmp(e->jb, 1);
}

static void jpeg_quiet(j_common_ptr ci, int level) { (void)ci, (void)level; }

typedef struct jpeg_job {
  struct jpeg_decompress_struct ci;
  jpeg_err_t err;
} jpeg_job_t;

/* Everything setjmp must not lose lives behind pointers. */
static flagos_status_t decode_jpeg(const uint8_t *p, size_t n, rt_image_t *img) {
  jpeg_job_t *j = calloc(1, sizeof(*j));
  if (!j) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  j->ci.err = jpeg_std_error(&j->err.pub);
  j->err.pub.error_exit = jpeg_fail;
  j->err.pub.emit_message = jpeg_quiet;
  if (setjmp(j->err.jb)) {
    flagos_status_t st = BAD("JPEG: %s", j->err.msg);
    jpeg_destroy_decompress(&j->ci);
    image_free(img);
    free(j);
    return st;
  }
  jpeg_create_decompress(&j->ci);
  jpeg_mem_src(&j->ci, p, (unsigned long)n);
  jpeg_read_header(&j->ci, TRUE);
  if (j->ci.jpeg_color_space == JCS_CMYK || j->ci.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&j->ci);
    free(j);
    return FL_ERR(FLAGOS_ERR_UNSUPPORTED, "JPEG: CMYK images are not supported");
  }
  bool gray = j->ci.jpeg_color_space == JCS_GRAYSCALE;
  j->ci.out_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&j->ci);
  flagos_status_t st = rt_image_alloc(img, j->ci.output_height, j->ci.output_width, gray ? 1 : 3);
  while (!st && j->ci.output_scanline < j->ci.output_height) {
    JSAMPROW row = img->px + (size_t)j->ci.output_scanline * (size_t)img->w * (size_t)img->ch;
    jpeg_read_scanlines(&j->ci, &row, 1);
  }
  if (!st) jpeg_finish_decompress(&j->ci);
  jpeg_destroy_decompress(&j->ci);
  free(j);
  return st;
}
#endif

/* ---- PNG ---- */
#ifdef FLAGOS_HAVE_PNG
typedef struct png_src {
  const uint8_t *p;
  size_t n, at;
  char msg[256];
} png_src_t;

static void png_read_mem(png_structp ps, png_bytep out, size_t len) {
  png_src_t *s = png_get_io_ptr(ps);
  if (len > s->n - s->at) png_error(ps, "the data ends early");
  memcpy(out, s->p + s->at, len);
  s->at += len;
}

static void png_fail(png_structp ps, png_const_charp msg) {
  png_src_t *s = png_get_error_ptr(ps);
  snprintf(s->msg, sizeof s->msg, "%s", msg);
  png_longjmp(ps, 1);
}

static void png_quiet(png_structp ps, png_const_charp msg) { (void)ps, (void)msg; }

typedef struct png_job {
  png_structp ps;
  png_infop info;
  png_src_t src;
  png_bytep *rows;
} png_job_t;

/* The low-level API, to reduce to 8 bits as Pillow does (the high byte), not
 * through the simplified API's colour-managed conversion. */
static flagos_status_t decode_png(const uint8_t *p, size_t n, rt_image_t *img) {
  png_job_t *j = calloc(1, sizeof(*j));
  if (!j) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  j->src = (png_src_t){.p = p, .n = n};
  j->ps = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j->src, png_fail, png_quiet);
  if (j->ps) j->info = png_create_info_struct(j->ps);
  if (!j->ps || !j->info) {
    png_destroy_read_struct(&j->ps, NULL, NULL);
    free(j);
    return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  if (setjmp(png_jmpbuf(j->ps))) {
    flagos_status_t st = BAD("PNG: %s", j->src.msg);
    png_destroy_read_struct(&j->ps, &j->info, NULL);
    image_free(img);
    free(j->rows);
    free(j);
    return st;
  }
  png_set_read_fn(j->ps, &j->src, png_read_mem);
  png_read_info(j->ps, j->info);
  int ct = png_get_color_type(j->ps, j->info);
  png_set_strip_16(j->ps);
  png_set_strip_alpha(j->ps);
  png_set_packing(j->ps);
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(j->ps);
  if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_expand_gray_1_2_4_to_8(j->ps);
  png_set_interlace_handling(j->ps);
  png_read_update_info(j->ps, j->info);
  int ch = png_get_channels(j->ps, j->info);
  flagos_status_t st = NULL;
  if (ch != 1 && ch != 3) st = FL_ERR(FLAGOS_ERR_INTERNAL, "PNG: %d channels after conversion", ch);
  if (!st) st = rt_image_alloc(img, png_get_image_height(j->ps, j->info), png_get_image_width(j->ps, j->info), ch);
  if (!st) {
    j->rows = malloc(sizeof(png_bytep) * (size_t)img->h);
    if (!j->rows) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  if (!st) {
    for (int64_t y = 0; y < img->h; y++) j->rows[y] = img->px + (size_t)(y * img->w * ch);
    png_read_image(j->ps, j->rows);
  } else {
    image_free(img);
  }
  png_destroy_read_struct(&j->ps, &j->info, NULL);
  free(j->rows);
  free(j);
  return st;
}
#endif

/* ---- TIFF ---- */
#ifdef FLAGOS_HAVE_TIFF
typedef struct tiff_src {
  const uint8_t *p;
  toff_t n, at;
  char msg[256];
} tiff_src_t;

static tsize_t tiff_read(thandle_t h, tdata_t buf, tsize_t len) {
  tiff_src_t *s = h;
  toff_t left = s->at < s->n ? s->n - s->at : 0;
  toff_t k = (toff_t)len < left ? (toff_t)len : left;
  memcpy(buf, s->p + s->at, (size_t)k);
  s->at += k;
  return (tsize_t)k;
}

static tsize_t tiff_write(thandle_t h, tdata_t buf, tsize_t len) {
  (void)h, (void)buf, (void)len;
  return -1;
}

static toff_t tiff_seek(thandle_t h, toff_t off, int whence) {
  tiff_src_t *s = h;
  toff_t base = whence == SEEK_CUR ? s->at : whence == SEEK_END ? s->n : 0;
  s->at = base + off;
  return s->at;
}

static int tiff_close(thandle_t h) {
  (void)h;
  return 0;
}
static toff_t tiff_size(thandle_t h) { return ((tiff_src_t *)h)->n; }
static int tiff_map(thandle_t h, tdata_t *base, toff_t *size) {
  (void)h, (void)base, (void)size;
  return 0;
}
static void tiff_unmap(thandle_t h, tdata_t base, toff_t size) { (void)h, (void)base, (void)size; }

static int tiff_error(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
  (void)t, (void)module;
  tiff_src_t *s = user;
  if (!s->msg[0]) vsnprintf(s->msg, sizeof s->msg, fmt, ap);
  return 1;
}

static int tiff_warning(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
  (void)t, (void)user, (void)module, (void)fmt, (void)ap;
  return 1;
}

static flagos_status_t decode_tiff(const uint8_t *p, size_t n, rt_image_t *img) {
  tiff_src_t s = {.p = p, .n = n};
  TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
  if (!opts) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  TIFFOpenOptionsSetErrorHandlerExtR(opts, tiff_error, &s);
  TIFFOpenOptionsSetWarningHandlerExtR(opts, tiff_warning, &s);
  TIFF *t = TIFFClientOpenExt("image", "rm", &s, tiff_read, tiff_write, tiff_seek, tiff_close, tiff_size, tiff_map,
                              tiff_unmap, opts);
  TIFFOpenOptionsFree(opts);
  if (!t) return BAD("TIFF: %s", s.msg[0] ? s.msg : "cannot read the header");
  uint32_t w = 0, h = 0;
  uint16_t photo = 0, spp = 1;
  TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w);
  TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h);
  TIFFGetFieldDefaulted(t, TIFFTAG_PHOTOMETRIC, &photo);
  TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
  bool gray = (photo == PHOTOMETRIC_MINISBLACK || photo == PHOTOMETRIC_MINISWHITE) && spp <= 2;
  flagos_status_t st = rt_image_alloc(img, h, w, gray ? 1 : 3);
  uint32_t *raster = NULL;
  if (!st) {
    raster = malloc(sizeof(uint32_t) * (size_t)w * (size_t)h);
    if (!raster) st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  }
  if (!st && !TIFFReadRGBAImageOriented(t, w, h, raster, ORIENTATION_TOPLEFT, 0))
    st = BAD("TIFF: %s", s.msg[0] ? s.msg : "cannot decode the image");
  for (size_t i = 0; !st && i < (size_t)w * h; i++) {
    uint32_t px = raster[i];
    if (gray) {
      img->px[i] = (uint8_t)TIFFGetR(px);
    } else {
      img->px[3 * i] = (uint8_t)TIFFGetR(px);
      img->px[3 * i + 1] = (uint8_t)TIFFGetG(px);
      img->px[3 * i + 2] = (uint8_t)TIFFGetB(px);
    }
  }
  if (st) image_free(img);
  free(raster);
  TIFFClose(t);
  return st;
}
#endif

/* ---- WebP ---- */
#ifdef FLAGOS_HAVE_WEBP
static flagos_status_t decode_webp(const uint8_t *p, size_t n, rt_image_t *img) {
  int w, h;
  if (!WebPGetInfo(p, n, &w, &h)) return BAD("WebP: cannot read the header");
  FL_TRY(rt_image_alloc(img, h, w, 3));
  size_t size = (size_t)(img->h * img->w * 3);
  if (!WebPDecodeRGBInto(p, n, img->px, size, w * 3)) {
    image_free(img);
    return BAD("WebP: cannot decode the image");
  }
  return NULL;
}
#endif

/* ---- JPEG 2000 ---- */
#ifdef FLAGOS_HAVE_OPENJP2
typedef struct j2k_src {
  const uint8_t *p;
  size_t n, at;
  char msg[256];
} j2k_src_t;

static OPJ_SIZE_T j2k_read(void *buf, OPJ_SIZE_T len, void *user) {
  j2k_src_t *s = user;
  if (s->at >= s->n) return (OPJ_SIZE_T)-1;
  size_t k = len < s->n - s->at ? len : s->n - s->at;
  memcpy(buf, s->p + s->at, k);
  s->at += k;
  return k;
}

static OPJ_OFF_T j2k_skip(OPJ_OFF_T len, void *user) {
  j2k_src_t *s = user;
  if (len < 0) return -1;
  size_t k = (size_t)len < s->n - s->at ? (size_t)len : s->n - s->at;
  s->at += k;
  return (OPJ_OFF_T)k;
}

static OPJ_BOOL j2k_seek(OPJ_OFF_T pos, void *user) {
  j2k_src_t *s = user;
  if (pos < 0 || (size_t)pos > s->n) return OPJ_FALSE;
  s->at = (size_t)pos;
  return OPJ_TRUE;
}

static void j2k_error(const char *msg, void *user) {
  j2k_src_t *s = user;
  if (!s->msg[0]) snprintf(s->msg, sizeof s->msg, "%s", msg);
  size_t l = strlen(s->msg);
  if (l && s->msg[l - 1] == '\n') s->msg[l - 1] = 0;
}

static void j2k_quiet(const char *msg, void *user) { (void)msg, (void)user; }

/* Component values to 8 bits as Pillow does: add the signed offset, shift by 8 - precision. */
static uint8_t j2k_sample(const opj_image_comp_t *c, size_t i) {
  int64_t v = (int64_t)c->data[i] + (c->sgnd ? (int64_t)1 << (c->prec - 1) : 0);
  int sh = 8 - (int)c->prec;
  v = sh >= 0 ? v << sh : v >> -sh;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static flagos_status_t decode_j2k(const uint8_t *p, size_t n, rt_image_t *img, bool jp2) {
  j2k_src_t s = {.p = p, .n = n};
  opj_stream_t *stream = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
  opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
  opj_image_t *im = NULL;
  flagos_status_t st = NULL;
  if (!stream || !codec) {
    st = FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
    goto done;
  }
  opj_stream_set_user_data(stream, &s, NULL);
  opj_stream_set_user_data_length(stream, n);
  opj_stream_set_read_function(stream, j2k_read);
  opj_stream_set_skip_function(stream, j2k_skip);
  opj_stream_set_seek_function(stream, j2k_seek);
  opj_set_error_handler(codec, j2k_error, &s);
  opj_set_warning_handler(codec, j2k_quiet, &s);
  opj_set_info_handler(codec, j2k_quiet, &s);
  opj_dparameters_t prm;
  opj_set_default_decoder_parameters(&prm);
  if (!opj_setup_decoder(codec, &prm) || !opj_read_header(stream, codec, &im) || !opj_decode(codec, stream, im) ||
      !opj_end_decompress(codec, stream)) {
    st = BAD("JPEG 2000: %s", s.msg[0] ? s.msg : "cannot decode the image");
    goto done;
  }
  int nc = (int)im->numcomps;
  if (nc < 1 || nc > 4) {
    st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "JPEG 2000 with %d components is not supported", nc);
    goto done;
  }
  if (im->color_space == OPJ_CLRSPC_SYCC || im->color_space == OPJ_CLRSPC_CMYK || im->color_space == OPJ_CLRSPC_EYCC) {
    st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "JPEG 2000 in a YCC or CMYK colour space is not supported");
    goto done;
  }
  const opj_image_comp_t *c0 = &im->comps[0];
  int ch = nc < 3 ? 1 : 3;
  for (int i = 0; i < ch; i++)
    if (im->comps[i].w != c0->w || im->comps[i].h != c0->h || !im->comps[i].data || im->comps[i].prec < 1 ||
        im->comps[i].prec > 31) {
      st = FL_ERR(FLAGOS_ERR_UNSUPPORTED, "JPEG 2000 with subsampled or empty components is not supported");
      goto done;
    }
  st = rt_image_alloc(img, c0->h, c0->w, ch);
  for (size_t i = 0; !st && i < (size_t)c0->w * c0->h; i++)
    for (int k = 0; k < ch; k++) img->px[i * (size_t)ch + (size_t)k] = j2k_sample(&im->comps[k], i);
done:
  if (im) opj_image_destroy(im);
  if (codec) opj_destroy_codec(codec);
  if (stream) opj_stream_destroy(stream);
  return st;
}
#endif

/* ---- dispatch ---- */

static bool starts(const uint8_t *p, size_t n, const void *sig, size_t len) {
  return n >= len && memcmp(p, sig, len) == 0;
}

static inline flagos_status_t missing(const char *fmt) {
  return FL_ERR(FLAGOS_ERR_UNSUPPORTED,
                "this build of FlagOS has no %s decoder (its library was not found at build time)", fmt);
}

static flagos_status_t decode_any(const uint8_t *p, size_t n, rt_image_t *img) {
  if (starts(p, n, "\xff\xd8\xff", 3)) {
#ifdef FLAGOS_HAVE_JPEG
    return decode_jpeg(p, n, img);
#else
    return missing("JPEG");
#endif
  }
  if (starts(p, n, "\x89PNG\r\n\x1a\n", 8)) {
#ifdef FLAGOS_HAVE_PNG
    return decode_png(p, n, img);
#else
    return missing("PNG");
#endif
  }
  if (starts(p, n, "II*\0", 4) || starts(p, n, "MM\0*", 4)) {
#ifdef FLAGOS_HAVE_TIFF
    return decode_tiff(p, n, img);
#else
    return missing("TIFF");
#endif
  }
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) {
#ifdef FLAGOS_HAVE_WEBP
    return decode_webp(p, n, img);
#else
    return missing("WebP");
#endif
  }
  bool jp2 = starts(p, n, "\0\0\0\x0cjP  \r\n\x87\n", 12), j2k = starts(p, n, "\xff\x4f\xff\x51", 4);
  if (jp2 || j2k) {
#ifdef FLAGOS_HAVE_OPENJP2
    return decode_j2k(p, n, img, jp2);
#else
    return missing("JPEG 2000");
#endif
  }
  if (starts(p, n, "BM", 2)) return rt_image_bmp(p, n, img);
  if (n >= 2 && p[0] == 'P' && p[1] >= '1' && p[1] <= '6') return rt_image_pnm(p, n, img);
  return FL_ERR(FLAGOS_ERR_UNSUPPORTED,
                "the encoded stream is not a JPEG, PNG, TIFF, WebP, JPEG 2000, BMP or PNM image (first bytes %02x %02x "
                "%02x %02x)",
                n > 0 ? p[0] : 0, n > 1 ? p[1] : 0, n > 2 ? p[2] : 0, n > 3 ? p[3] : 0);
}

/* The pixel_format the node asks for, made from a gray or RGB picture. */
static flagos_status_t convert(const rt_image_t *img, const char *fmt, uint8_t **out, int *ch) {
  bool gray = strcmp(fmt, "Grayscale") == 0, bgr = strcmp(fmt, "BGR") == 0;
  if (!gray && !bgr && strcmp(fmt, "RGB") != 0) return BAD("pixel_format '%s' is not RGB, BGR or Grayscale", fmt);
  *ch = gray ? 1 : 3;
  size_t np = (size_t)(img->h * img->w);
  uint8_t *o = malloc(np * (size_t)*ch);
  if (!o) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory");
  const uint8_t *s = img->px;
  for (size_t i = 0; i < np; i++) {
    if (img->ch == 1) {
      if (gray)
        o[i] = s[i];
      else
        o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = s[i];
    } else if (gray) {
      const uint8_t *q = s + 3 * i;
      o[i] = (uint8_t)(((uint32_t)q[0] * 19595u + (uint32_t)q[1] * 38470u + (uint32_t)q[2] * 7471u + 0x8000u) >> 16);
    } else {
      for (int c = 0; c < 3; c++) o[3 * i + (size_t)c] = s[3 * i + (size_t)(bgr ? 2 - c : c)];
    }
  }
  *out = o;
  return NULL;
}

flagos_status_t rt_host_image_decode(rt_exec_t *x, rt_frame_t *f, const rt_node_t *rn) {
  const fir_node_t *n = rn->node;
  rt_val_t *in = n->n_inputs > 0 && n->inputs[0] ? rt_lookup(f, n->inputs[0]) : NULL;
  if (!in || !in->present || in->kind != FLAGOS_VALUE_TENSOR)
    return BAD("ImageDecoder node '%s': encoded_stream is missing or not a tensor", n->name);
  if (in->dtype != FLAGOS_UINT8)
    return FL_ERR(FLAGOS_ERR_SHAPE, "ImageDecoder node '%s': encoded_stream must be uint8, got %s", n->name,
                  flagos_dtype_name(in->dtype));
  size_t len = (size_t)rt_numel(in->rank, in->dims);
  uint8_t *bytes = malloc(len ? len : 1);
  if (!bytes) return FL_ERR(FLAGOS_ERR_OUT_OF_MEMORY, "out of memory reading %zu encoded bytes", len);
  rt_image_t img = {0};
  uint8_t *px = NULL;
  int ch = 0;
  flagos_status_t st = rt_read(x, in, bytes, len);
  if (!st) st = decode_any(bytes, len, &img);
  if (!st) st = convert(&img, fir_attr_string(n, "pixel_format", "RGB"), &px, &ch);
  if (!st && n->n_outputs > 0 && n->outputs[0]) {
    int64_t dims[3] = {img.h, img.w, ch};
    rt_val_t out;
    memset(&out, 0, sizeof out);
    st = rt_val_from_host(x, &out, FLAGOS_UINT8, 3, dims, px);
    if (!st) {
      rt_val_t *o = &f->vals[n->outputs[0]->id];
      rt_val_release(x, o);
      *o = out;
    } else {
      rt_val_release(x, &out);
    }
  }
  free(px);
  free(img.px);
  free(bytes);
  if (st) return flagos_status_wrap(st, "ImageDecoder node '%s'", n->name);
  return NULL;
}

/* External tensor data (TensorProto.data_location = EXTERNAL).
 *
 * The file named by the "location" key is resolved against the model's folder and
 * must stay inside it: a model is often untrusted input, and an absolute path,
 * a ".." component or a symlink pointing outside would let it read any file. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend/onnx/onnx_internal.h"

static bool parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s) return false;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + (uint64_t)(*s - '0');
  }
  *out = v;
  return true;
}

static bool has_dotdot(const char *p) {
  for (const char *s = p; *s;) {
    size_t n = strcspn(s, "/\\");
    if (n == 2 && s[0] == '.' && s[1] == '.') return true;
    s += n;
    if (*s) s++;
  }
  return false;
}

flagos_status_t onnx_external_open(onnx_ctx_t *c, const Onnx__TensorProto *tp, size_t size, FILE **out) {
  *out = NULL;
  const char *name = onnx_show(tp->name);
  const char *loc = NULL, *off_s = NULL, *len_s = NULL;
  for (size_t i = 0; i < tp->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = tp->external_data[i];
    if (!e->key) continue;
    if (strcmp(e->key, "location") == 0)
      loc = e->value;
    else if (strcmp(e->key, "offset") == 0)
      off_s = e->value;
    else if (strcmp(e->key, "length") == 0)
      len_s = e->value;
  }
  if (!loc || !*loc)
    return FL_ERR(FLAGOS_ERR_CORRUPT, "tensor '%s' is marked EXTERNAL but has no 'location' key", name);
  uint64_t off = 0, len = 0;
  if (off_s && !parse_u64(off_s, &off))
    return FL_ERR(FLAGOS_ERR_CORRUPT, "tensor '%s': external data offset '%s' is not a number", name, off_s);
  if (len_s && !parse_u64(len_s, &len))
    return FL_ERR(FLAGOS_ERR_CORRUPT, "tensor '%s': external data length '%s' is not a number", name, len_s);
  if (!c->base_dir)
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT,
                  "tensor '%s' keeps its data in external file '%s', but the model was read from memory without "
                  "a folder to find it in",
                  name, loc);
  if (loc[0] == '/' || loc[0] == '\\')
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT,
                  "tensor '%s': external data path '%s' is absolute; it must be relative to the model's folder", name,
                  loc);
  if (has_dotdot(loc))
    return FL_ERR(FLAGOS_ERR_INVALID_ARGUMENT,
                  "tensor '%s': external data path '%s' contains '..'; it must stay inside the model's folder", name,
                  loc);

  fl_buf_t path = {0};
  fl_buf_printf(&path, "%s/%s", c->base_dir, loc);
  char real_dir[PATH_MAX], real_file[PATH_MAX];
  if (!realpath(c->base_dir, real_dir) || !realpath(path.data, real_file)) {
    flagos_status_t st =
        FL_ERR(errno == ENOENT ? FLAGOS_ERR_NOT_FOUND : FLAGOS_ERR_IO,
               "cannot open external data file '%s' of tensor '%s': %s", path.data, name, strerror(errno));
    fl_buf_free(&path);
    return st;
  }
  size_t dl = strlen(real_dir);
  if (strncmp(real_file, real_dir, dl) != 0 || (real_file[dl] != '/' && dl > 1)) {
    flagos_status_t st = FL_ERR(
        FLAGOS_ERR_INVALID_ARGUMENT,
        "tensor '%s': external data file '%s' leads outside the model's folder (through a link)", name, path.data);
    fl_buf_free(&path);
    return st;
  }
  FILE *f = fopen(real_file, "rb");
  struct stat sb;
  if (!f || fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    flagos_status_t st = FL_ERR(FLAGOS_ERR_IO, "cannot open external data file '%s' of tensor '%s': %s", path.data,
                                name, f ? "not a regular file" : strerror(errno));
    if (f) fclose(f);
    fl_buf_free(&path);
    return st;
  }
  uint64_t fsize = (uint64_t)sb.st_size;
  flagos_status_t st = NULL;
  if (off > fsize) {
    st = FL_ERR(FLAGOS_ERR_CORRUPT, "tensor '%s': external data offset %llu is past the end of '%s' (%llu bytes)", name,
                (unsigned long long)off, path.data, (unsigned long long)fsize);
  } else {
    if (!len_s) len = fsize - off;
    if (len > fsize - off)
      st = FL_ERR(FLAGOS_ERR_CORRUPT,
                  "tensor '%s': external data needs bytes %llu..%llu of '%s', which has only %llu (truncated file?)",
                  name, (unsigned long long)off, (unsigned long long)(off + len), path.data, (unsigned long long)fsize);
    else if (len != size)
      st = FL_ERR(FLAGOS_ERR_CORRUPT, "tensor '%s': external data holds %llu bytes but its dims need %zu", name,
                  (unsigned long long)len, size);
    else if (fseeko(f, (off_t)off, SEEK_SET) != 0)
      st = FL_ERR(FLAGOS_ERR_IO, "cannot seek in '%s': %s", path.data, strerror(errno));
  }
  fl_buf_free(&path);
  if (st) {
    fclose(f);
    return st;
  }
  *out = f;
  return NULL;
}

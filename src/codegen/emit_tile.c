/* The tiled form of the GPU dialects: a kernel that stores along its innermost
 * level while it loads along another (a 2-D transpose: y[i,j] = x[j,i]) reads
 * with one of the two accesses a stride apart, so every warp touches 32 cache
 * lines for 128 useful bytes. Here a group takes 32x32 tiles of the two
 * levels: a first pass evaluates the values with the loads' level fastest
 * across threads and puts them in a group-shared tile (its rows padded to 33
 * entries: the second pass reads a column without bank conflicts), a barrier,
 * then a second pass stores them with the innermost level fastest. */
#include "codegen/cg_internal.h"

#define TILE 32

static bool bit_get(const uint64_t *b, int i) { return (b[i >> 6] >> (i & 63)) & 1u; }

static bool is_var(const kir_expr_t *e, int v) { return e->kind == KIR_VAR && e->var == v; }

/* Loads in e: `across` becomes the level of the first whose last index is the
 * variable of an outer level while the innermost variable is in another index;
 * `along` is set by any whose last index is the innermost variable (it would be
 * read a stride apart in the first pass). */
static void tile_walk(cg_t *g, const kir_expr_t *e, int *across, bool *along) {
  cg_info_t *in = cg_info(g, e);
  if (!in || in->mark[0] == g->mark_gen[0]) return;
  in->mark[0] = g->mark_gen[0];
  const kir_kernel_t *k = g->k;
  int u = k->vars[k->rank - 1];
  if (e->kind == KIR_LOAD && e->n > 0) {
    const kir_expr_t *last = e->a[e->n - 1];
    if (is_var(last, u)) *along = true;
    for (int l = 0; l + 1 < k->rank && *across < 0; l++)
      if (is_var(last, k->vars[l]) && bit_get(in->vars, u)) *across = l;
  }
  for (int i = 0; i < e->n; i++) tile_walk(g, e->a[i], across, along);
}

/* Extents below a tile leave threads idle: those stay one thread per point. */
static bool tile_extent(const kir_expr_t *e) {
  int64_t v;
  return !kir_eval_int(e, NULL, 0, &v) || v >= TILE;
}

void cg_plan_tile(cg_t *g) {
  const kir_kernel_t *k = g->k;
  g->tile_lw = -1;
  if (!g->d->tile || k->serial || g->coop_level != CG_NO_COOP || k->rank < 2 || k->n_stores != 1) return;
  const kir_store_t *st = &k->stores[0];
  if (st->cond || k->bufs[st->buf].rank != k->rank) return;
  for (int d = 0; d < k->rank; d++)
    if (!is_var(st->idx[d], k->vars[d])) return;
  cg_info_t *in = cg_info(g, st->value);
  if (!in || cg_loads_written(g, in)) return;
  int across = -1;
  bool along = false;
  g->mark_gen[0]++;
  tile_walk(g, st->value, &across, &along);
  if (along || across < 0 || !tile_extent(k->extents[across]) || !tile_extent(k->extents[k->rank - 1])) return;
  g->tile_lw = across;
}

static void put_pass(cg_t *g, bool second, const char *body, size_t len, fl_buf_t *out) {
  const cg_tile_names_t *n = g->d->tile;
  int r = g->k->rank - 1, w = g->tile_lw;
  /* first pass: the loads' level fastest; second: the store's */
  const char *fw = second ? "(fo_e >> 5)" : "(fo_e & 31)", *fu = second ? "(fo_e & 31)" : "(fo_e >> 5)";
  cg_line(out, 2, "#pragma unroll");
  cg_line(out, 2, "for (int fo_e = %s; fo_e < %d; fo_e += %s) {", n->lid, TILE * TILE, n->lsz);
  cg_line(out, 3, "const int64_t v%d = fo_iw * %d + %s;", g->k->vars[w], TILE, fw);
  cg_line(out, 3, "const int64_t v%d = fo_iu * %d + %s;", g->k->vars[r], TILE, fu);
  if (second) {
    cg_line(out, 3, "if (v%d < E%d && v%d < E%d) b%d[%s] = fo_tl[fo_e & 31][fo_e >> 5];", g->k->vars[w], w,
            g->k->vars[r], r, g->tile_buf, g->tile_at);
  } else {
    cg_line(out, 3, "if (v%d < E%d && v%d < E%d) {", g->k->vars[w], w, g->k->vars[r], r);
    if (len) fl_buf_append(out, body, len);
    cg_line(out, 3, "}");
  }
  cg_line(out, 2, "}");
  cg_line(out, 2, "%s", n->barrier);
}

void cg_tile_loops(cg_t *g, cg_block_t *point, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  const cg_tile_names_t *n = g->d->tile;
  int r = k->rank - 1, w = g->tile_lw;
  cg_line(&g->decls, 1, "%s %s fo_tl[%d][%d];", n->shared, g->d->stype(k->bufs[g->tile_buf].dtype), TILE, TILE + 1);
  cg_line(out, 1, "const int64_t fo_tu = (E%d + %d) / %d, fo_tw = (E%d + %d) / %d;", r, TILE - 1, TILE, w, TILE - 1,
          TILE);
  const char *tot = "fo_tw * fo_tu";
  for (int l = 0; l < r; l++)
    if (l != w) tot = cg_fmt(g, "E%d * %s", l, tot);
  cg_line(out, 1, "const int64_t fo_nt = %s;", tot);
  cg_line(out, 1, "for (int64_t fo_b = %s; fo_b < fo_nt; fo_b += %s) {", n->gid, n->ngr);
  cg_line(out, 2, "int64_t fo_q = fo_b;");
  cg_line(out, 2, "const int64_t fo_iu = fo_q %% fo_tu;");
  cg_line(out, 2, "fo_q /= fo_tu;");
  cg_line(out, 2, "const int64_t fo_iw = fo_q %% fo_tw;");
  cg_line(out, 2, "fo_q /= fo_tw;");
  for (int l = r - 1; l >= 0; l--) {
    if (l == w) continue;
    cg_line(out, 2, "const int64_t v%d = fo_q %% E%d;", k->vars[l], l);
    cg_line(out, 2, "fo_q /= E%d;", l);
  }
  put_pass(g, false, point->buf.data, point->buf.len, out);
  put_pass(g, true, NULL, 0, out);
  cg_line(out, 1, "}");
}

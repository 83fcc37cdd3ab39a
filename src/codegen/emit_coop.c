/* The cooperative form of the GPU dialects (see cg_internal.h): which rows a
 * group of threads shares (the plan, made before emission), the shared
 * reductions and the main loops around them. */
#include <stdlib.h>
#include <string.h>

#include "codegen/cg_internal.h"


/* ---- the cooperative form (GPU dialects) ----
 * A group of threads shares one row: the main levels 0..coop_level. The row's
 * reductions (those the hoisting places in the row's block) run with the
 * group's threads striding over their (flattened) range, then the partial
 * results are combined over the group by the dialect; the deeper main levels
 * are spread over the group's threads. The plan picks the row level before
 * emission from the reductions evaluated unconditionally at each point: it is
 * the shallowest level such a reduction is hoisted to, counting only
 * reductions worth sharing (long, and reading memory along their innermost
 * variable, or in a small iteration space, or at function level). */

/* Flattened indices into variables, last fastest; 32-bit arithmetic where the
 * total fits (the same branch for the whole group). */
static void put_decompose(cg_t *g, const char *idx, const char *total, int n, const int *vars, const char *const *ext,
                          int depth, fl_buf_t *out) {
  if (n == 1) {
    cg_line(out, depth, "const int64_t v%d = %s;", vars[0], idx);
    return;
  }
  const char *decl = cg_fmt(g, "v%d", vars[0]);
  for (int i = 1; i < n; i++) decl = cg_fmt(g, "%s, v%d", decl, vars[i]);
  cg_line(out, depth, "int64_t %s;", decl);
  for (int wide = 0; wide < 2; wide++) {
    const char *T = wide ? "int64_t" : "uint32_t";
    cg_line(out, depth, wide ? "} else {" : "if (%s <= (int64_t)2147483647) {", total);
    cg_line(out, depth + 1, "%s fo_q = (%s)%s;", T, T, idx);
    for (int i = n - 1; i > 0; i--) {
      cg_line(out, depth + 1, "v%d = (int64_t)(fo_q %% (%s)%s);", vars[i], T, ext[i]);
      cg_line(out, depth + 1, "fo_q /= (%s)%s;", T, ext[i]);
    }
    cg_line(out, depth + 1, "v%d = (int64_t)fo_q;", vars[0]);
  }
  cg_line(out, depth, "}");
}

static int host_level(cg_t *g, const cg_info_t *in) {
  for (int l = g->k->rank - 1; l >= 0; l--)
    if (g->k->vars[l] >= 0 && g->k->vars[l] < g->k->next_var && cg_bit_get(in->vars, g->k->vars[l])) return l;
  return -1;
}

/* Whether some load in e reads along `var` (its last index uses it). */
static bool reads_along(cg_t *g, const kir_expr_t *e, int var) {
  cg_info_t *in = cg_info(g, e);
  if (!in || in->mark[1] == g->mark_gen[1] || !cg_bit_get(in->vars, var)) return false;
  in->mark[1] = g->mark_gen[1];
  if (e->kind == KIR_LOAD && e->n > 0) {
    cg_info_t *li = cg_info(g, e->a[e->n - 1]);
    if (li && cg_bit_get(li->vars, var)) return true;
  }
  for (int i = 0; i < e->n; i++)
    if (reads_along(g, e->a[i], var)) return true;
  return false;
}

/* Extents that use another variable of the same reduction cannot be flattened. */
bool cg_flat_extents(cg_t *g, const kir_expr_t *e) {
  for (int i = 0; i < e->nr; i++) {
    cg_info_t *ri = cg_info(g, e->rext[i]);
    if (!ri) return false;
    for (int j = 0; j < e->nr; j++)
      if (e->rvars[j] >= 0 && e->rvars[j] < g->k->next_var && cg_bit_get(ri->vars, e->rvars[j])) return false;
  }
  return true;
}

/* Reductions shorter than this stay in one thread. $FLAGOS_CODEGEN_COOP_MIN
 * replaces it (tests set 1 to put the small conformance shapes through the
 * cooperative form). */
static int64_t coop_min_trips(void) {
  const char *e = getenv("FLAGOS_CODEGEN_COOP_MIN");
  long long v = e ? atoll(e) : 0;
  return v > 0 ? (int64_t)v : 32;
}

static bool worth_sharing(cg_t *g, const kir_expr_t *e, cg_info_t *in, bool small_space) {
  if (cg_loads_written(g, in) || !cg_flat_extents(g, e)) return false;
  int64_t trips = 1;
  bool known = true;
  for (int i = 0; i < e->nr && known; i++) {
    int64_t v;
    if (kir_eval_int(e->rext[i], NULL, 0, &v)) trips *= v > 0 ? v : 0;
    else known = false;
  }
  if (known && trips < coop_min_trips()) return false;
  if (host_level(g, in) < 0 || small_space) return true;
  g->mark_gen[1]++;
  return e->nr > 0 && reads_along(g, e->a[0], e->rvars[e->nr - 1]);
}

/* Visits what a point evaluates unconditionally (not select branches, not
 * reduction bodies); `best` becomes the shallowest level of a reduction worth
 * sharing. */
static void plan_walk(cg_t *g, const kir_expr_t *e, bool small_space, int *best) {
  cg_info_t *in = cg_info(g, e);
  if (!in || in->mark[0] == g->mark_gen[0]) return;
  in->mark[0] = g->mark_gen[0];
  if (e->kind == KIR_REDUCE) {
    if (worth_sharing(g, e, in, small_space)) {
      int l = host_level(g, in);
      if (l < *best) *best = l;
    }
    return;
  }
  int n = e->kind == KIR_SELECT ? 1 : e->n;
  for (int i = 0; i < n; i++) plan_walk(g, e->a[i], small_space, best);
}

/* ---- the row cache ----
 * The loops of a row (its shared reductions with one variable, and the inner
 * level when it is a single one) walk the same elements in the same order:
 * element fo_gt + k * fo_gw is the k-th of the thread in each. A load that two
 * of them read (the same buffer and indices up to the loop variable, a buffer
 * the kernel does not write) is read once, at the top of the row, into
 * fo_rcI[k] for k < rc_k; each loop then runs rc_k unrolled slots reading the
 * array and a tail over the elements past them reading memory. The body's text
 * serves both: `(fo_hit ? fo_rcI[fo_k] : load)`, with fo_hit a constant in each. */

/* a and b equal up to variable va in a standing for vb in b (index expressions) */
static bool same_mod(const kir_expr_t *a, const kir_expr_t *b, int va, int vb) {
  if (a->kind != b->kind || a->dtype != b->dtype || a->n != b->n) return false;
  switch (a->kind) {
  case KIR_CONST:
    if (a->ci != b->ci || memcmp(&a->cf, &b->cf, sizeof a->cf) != 0) return false;
    break;
  case KIR_VAR: return (a->var == va) == (b->var == vb) && (a->var == va || a->var == b->var);
  case KIR_SYM: return a->sym == b->sym;
  case KIR_LOAD:
    if (a->buf != b->buf) return false;
    break;
  case KIR_UNARY:
  case KIR_BINARY:
    if (a->op != b->op) return false;
    break;
  case KIR_CAST:
    if (a->sat != b->sat) return false;
    break;
  case KIR_BITCAST: break;
  default: return false;
  }
  for (int i = 0; i < a->n; i++)
    if (!same_mod(a->a[i], b->a[i], va, vb)) return false;
  return true;
}

typedef struct rc_plan {
  const kir_expr_t **load;
  int *lvar, *loops, *last;
  int n, cap;
  uint64_t *rowvars;
  int loop_id;
} rc_plan_t;

/* Records the loads along `var` in e (not inside nested reductions: their
 * variables are not the row's) into the plan's candidates. */
static void rc_collect(cg_t *g, const kir_expr_t *e, int var, rc_plan_t *p) {
  cg_info_t *in = cg_info(g, e);
  if (!in || !cg_bit_get(in->vars, var) || e->kind == KIR_REDUCE) return;
  if (e->kind == KIR_LOAD && !g->k->bufs[e->buf].written) {
    bool ok = true;
    for (int v = 0; v < g->k->next_var && ok; v++) ok = !cg_bit_get(in->vars, v) || v == var || cg_bit_get(p->rowvars, v);
    if (ok) {
      int i = 0;
      while (i < p->n && !same_mod(p->load[i], e, p->lvar[i], var)) i++;
      if (i == p->n && p->n < p->cap) {
        p->load[i] = e;
        p->lvar[i] = var;
        p->loops[i] = 0;
        p->last[i] = -1;
        p->n++;
      }
      if (i < p->n && p->last[i] != p->loop_id) {
        p->last[i] = p->loop_id;
        p->loops[i]++;
      }
      return;
    }
  }
  for (int i = 0; i < e->n; i++) rc_collect(g, e->a[i], var, p);
}

static bool rc_extent(const kir_expr_t *ext, int64_t *n) { return kir_eval_int(ext, NULL, 0, n) && *n > 0; }

/* The row's reductions with one variable reached from e (select branches
 * included: the cache only decides where values come from). */
static void rc_walk(cg_t *g, const kir_expr_t *e, rc_plan_t *p) {
  cg_info_t *in = cg_info(g, e);
  if (!in || in->mark[0] == g->mark_gen[0]) return;
  in->mark[0] = g->mark_gen[0];
  if (e->kind == KIR_REDUCE) {
    int64_t n;
    if (e->nr == 1 && host_level(g, in) == g->coop_level && rc_extent(e->rext[0], &n) &&
        (p->loop_id < 0 || n == g->rc_n)) {
      g->rc_n = n;
      p->loop_id++;
      rc_collect(g, e->a[0], e->rvars[0], p);
    }
    return;
  }
  for (int i = 0; i < e->n; i++) rc_walk(g, e->a[i], p);
}

/* Slots a thread keeps of consecutive elements (the dialect's coop_vec, else
 * 1): slot k holds element (fo_gt + (k / W) * fo_gw) * W + k % W, so the fill
 * and the row's stores are W consecutive elements, which the compiler moves as
 * one vector where it knows the buffers aligned (cg_coop_put). Every cached
 * load must read along its loop variable in its last index only, and the row
 * and that index's dimension be multiples of W, so each vector starts aligned. */
static int rc_width(cg_t *g, const kir_expr_t **load, const int *lvar, int m) {
  int w = g->d->coop_vec;
  if (w <= 1 || g->rc_n % w) return 1;
  for (int i = 0; i < m; i++) {
    const kir_expr_t *e = load[i];
    const kir_buf_t *kb = &g->k->bufs[e->buf];
    int64_t last;
    if (e->n < 1 || e->a[e->n - 1]->kind != KIR_VAR || e->a[e->n - 1]->var != lvar[i]) return 1;
    if (!kir_eval_int(kb->dims[kb->rank - 1], NULL, 0, &last) || last % w) return 1;
    for (int d = 0; d + 1 < e->n; d++) {
      cg_info_t *in = cg_info(g, e->a[d]);
      if (!in || cg_bit_get(in->vars, lvar[i])) return 1;
    }
  }
  return w;
}

int cg_row_shared_bytes(const cg_coop_shared_t *s) {
  const char *env = getenv("FLAGOS_CODEGEN_ROW_SHARED");
  int v = env && *env ? atoi(env) : s ? s->bytes : 0;
  return v > 0 ? v : 0;
}

/* Bytes of a value of C type T (the cache's element types): from the C type
 * the arrays are declared with, not the dtype (a bool is held in an int). */
static int ctype_bytes(const char *T) {
  if (strstr(T, "64") || !strcmp(T, "double")) return 8;
  if (strstr(T, "16")) return 2;
  if (strstr(T, "8")) return 1;
  return 4;
}

/* The second tier (the dialect's coop_shared): the slots a row needs past the
 * registers, as many as the budget holds, in whole vectors. Meant to let two
 * blocks share a multiprocessor where the whole row in registers allows one
 * (one block's reductions overlapping the other's memory traffic); on an H100
 * it measured slower than the registers alone (docs/kernel-ir.md), so CUDA's
 * budget is 0 unless $FLAGOS_CODEGEN_ROW_SHARED gives one. */
static void plan_shared(cg_t *g) {
  const cg_coop_shared_t *sh = g->d->coop_shared;
  int budget = cg_row_shared_bytes(sh), w = g->rc_w > 1 ? g->rc_w : 1;
  g->rc_sk = g->rc_smem = 0;
  if (!sh || budget <= 0) return;
  int64_t need = (g->rc_n + sh->group - 1) / sh->group;
  need = (need + w - 1) / w * w - g->rc_k;
  int per = 0;
  for (int i = 0; i < g->n_rc; i++) per += ctype_bytes(cg_ctype(g, g->rc_load[i]->dtype));
  int64_t fit = budget / ((int64_t)sh->group * per) / w * w;
  int sk = (int)(need < fit ? need : fit);
  if (sk <= 0) return;
  g->rc_sk = sk;
  g->rc_soff = fl_arena_alloc(g->a, sizeof(int) * (size_t)g->n_rc);
  int off = 0;
  for (int i = 0; i < g->n_rc; i++) {
    g->rc_soff[i] = off;
    off += (sk * sh->group * ctype_bytes(cg_ctype(g, g->rc_load[i]->dtype)) + 15) / 16 * 16;
  }
  g->rc_smem = (off + 255) / 256 * 256;
}

static void plan_cache(cg_t *g) {
  const kir_kernel_t *k = g->k;
  rc_plan_t p = {0};
  p.cap = 16;
  p.load = fl_arena_alloc(g->a, sizeof(*p.load) * (size_t)p.cap);
  p.lvar = fl_arena_alloc(g->a, sizeof(int) * (size_t)p.cap);
  p.loops = fl_arena_alloc(g->a, sizeof(int) * (size_t)p.cap);
  p.last = fl_arena_alloc(g->a, sizeof(int) * (size_t)p.cap);
  p.rowvars = fl_arena_alloc(g->a, sizeof(uint64_t) * (size_t)(g->nw_var + 1));
  for (int l = 0; l <= g->coop_level; l++)
    if (k->vars[l] >= 0 && k->vars[l] < k->next_var) p.rowvars[k->vars[l] >> 6] |= 1ull << (k->vars[l] & 63);
  p.loop_id = -1;
  g->mark_gen[0]++;
  for (int s = 0; s < k->n_stores; s++) {
    const kir_store_t *st = &k->stores[s];
    if (st->cond) rc_walk(g, st->cond, &p);
    rc_walk(g, st->value, &p);
  }
  int inner = k->rank - 1;
  int64_t n;
  if (p.loop_id >= 0 && inner == g->coop_level + 1 && k->vars[inner] >= 0 && rc_extent(k->extents[inner], &n) &&
      n == g->rc_n) {
    p.loop_id++;
    for (int s = 0; s < k->n_stores; s++) {
      const kir_store_t *st = &k->stores[s];
      if (st->cond) rc_collect(g, st->cond, k->vars[inner], &p);
      rc_collect(g, st->value, k->vars[inner], &p);
    }
    g->rc_inner_var = k->vars[inner];
  }
  int m = 0;
  for (int i = 0; i < p.n; i++)
    if (p.loops[i] >= 2) {
      p.load[m] = p.load[i];
      p.lvar[m++] = p.lvar[i];
    }
  /* $FLAGOS_CODEGEN_ROW_SLOTS replaces the dialect's register budget per
   * thread (0: no row cache), for measurements */
  const char *env = getenv("FLAGOS_CODEGEN_ROW_SLOTS");
  g->rc_k = !m ? 0 : env && *env ? atoi(env) / m : g->d->coop_slots(g->rc_n, m);
  g->rc_w = rc_width(g, p.load, p.lvar, m);
  /* whole vectors of slots: rounded up where the budget allows, else down */
  if (g->rc_w > 1 && g->rc_k % g->rc_w) {
    int cap = env && *env ? atoi(env) / m : g->d->coop_slots(1 << 30, m);
    int up = (g->rc_k + g->rc_w - 1) / g->rc_w * g->rc_w, down = g->rc_k / g->rc_w * g->rc_w;
    if (up <= cap) g->rc_k = up;
    else if (down > 0) g->rc_k = down;
    else g->rc_w = 1;
  }
  if (g->rc_k <= 0) {
    g->rc_inner_var = -1;
    return;
  }
  g->n_rc = m;
  g->rc_load = p.load;
  g->rc_lvar = p.lvar;
  plan_shared(g);
}

/* The unrolled loop over a thread's slots: vectors of rc_w consecutive
 * elements (one guard per vector: the row is a multiple of rc_w), `v` bound to
 * each element and fo_k to its slot; `hit` defines fo_hit = 1 for bodies that
 * choose between the cache and memory. `shared`: the slots of the second tier
 * instead, fo_s indexing them (fo_shit = 1 for such bodies). */
static void rc_slots(cg_t *g, int v, const char *ext, bool hit, bool shared, const char *body, size_t len, int depth,
                     fl_buf_t *out) {
  int w = g->rc_w > 1 ? g->rc_w : 1, first = shared ? g->rc_k / w : 0;
  const char *kv = first ? cg_fmt(g, "(int64_t)(fo_kv + %d)", first) : "(int64_t)fo_kv";
  cg_line(out, depth, "#pragma unroll");
  cg_line(out, depth, "for (int fo_kv = 0; fo_kv < %d; fo_kv++) {", (shared ? g->rc_sk : g->rc_k) / w);
  if (w > 1) cg_line(out, depth + 1, "const int64_t fo_e0 = ((int64_t)fo_gt + %s * fo_gw) * %d;", kv, w);
  else cg_line(out, depth + 1, "const int64_t fo_e0 = (int64_t)fo_gt + %s * fo_gw;", kv);
  /* A slot that every thread of the group has inside the row needs no test:
   * the first clause is a constant once the loop is unrolled (fo_gw folds to a
   * constant in the CUDA dialect, the row's length being known here), so only
   * a slot that can run past the row's end keeps one. A test on every slot
   * (fo_gt is not known to the compiler) held the softmax over 32k-float rows
   * at 83% of copy bandwidth on an H100; the kernel with the tests deleted by
   * hand ran at 97%, and with this form through the plugin at 93%
   * (bench/gpu/results-h100-2026-11-22-s6.md). */
  cg_line(out, depth + 1, "if ((%s + 1) * fo_gw * %d <= %s || fo_e0 < %s) {", kv, w, ext, ext);
  cg_line(out, depth + 2, "#pragma unroll");
  cg_line(out, depth + 2, "for (int fo_ku = 0; fo_ku < %d; fo_ku++) {", w);
  if (shared) {
    const cg_coop_shared_t *sh = g->d->coop_shared;
    cg_line(out, depth + 3, "const int fo_s = (fo_kv * %d + %s) * %d + fo_ku;", sh->group, sh->tid, w);
    if (hit) cg_line(out, depth + 3, "const int fo_hit = 0, fo_k = 0, fo_shit = 1;");
  } else {
    cg_line(out, depth + 3, "const int fo_k = fo_kv * %d + fo_ku;", w);
    if (hit) cg_line(out, depth + 3, "const int fo_hit = 1%s;", g->rc_sk ? ", fo_shit = 0, fo_s = 0" : "");
  }
  cg_line(out, depth + 3, "const int64_t v%d = fo_e0 + fo_ku;", v);
  if (len) fl_buf_append(out, body, len);
  cg_line(out, depth + 2, "}");
  cg_line(out, depth + 1, "}");
  cg_line(out, depth, "}");
}

/* Declares and fills the arrays at the top of the row (before any loop of the
 * row runs: the row's block holds them, and the inner level comes after it). */
static void rc_fill(cg_t *g) {
  cg_block_t *t = g->coop_blk;
  int saved = g->rc_var;
  g->rc_var = -1;
  g->rc_ready = true;
  for (int i = 0; i < g->n_rc; i++) {
    const kir_expr_t *e = g->rc_load[i];
    cg_line(&t->buf, t->depth, "%s fo_rc%d[%d];", cg_ctype(g, e->dtype), i, g->rc_k);
    cg_block_t *slot = cg_blk_new(g, t, CG_LAZY);
    slot->depth = t->depth + 2;
    const char *x = cg_ex(g, e, slot);
    fl_buf_t body = {0};
    if (slot->buf.len) fl_buf_append(&body, slot->buf.data, slot->buf.len);
    fl_buf_free(&slot->buf);
    const char *n = cg_fmt(g, "%lld", (long long)g->rc_n);
    size_t head = body.len;
    cg_line(&body, t->depth + 2, "fo_rc%d[fo_k] = %s;", i, x);
    rc_slots(g, g->rc_lvar[i], n, false, false, body.data, body.len, t->depth, &t->buf);
    if (g->rc_sk) {
      /* the second tier, where the launch gave its memory */
      const char *T = cg_ctype(g, e->dtype);
      if (!g->rc_smem_decl) g->d->coop_shared->decl(g, &g->decls);
      g->rc_smem_decl = true;
      cg_line(&t->buf, t->depth, "%s *const fo_rs%d = (%s *)(fo_rsm + %d);", T, i, T, g->rc_soff[i]);
      body.len = head;
      cg_line(&body, t->depth + 2, "fo_rs%d[fo_s] = %s;", i, x);
      cg_line(&t->buf, t->depth, "if (fo_rsm_ok) {");
      rc_slots(g, g->rc_lvar[i], n, false, true, body.data, body.len, t->depth + 1, &t->buf);
      cg_line(&t->buf, t->depth, "}");
    }
    fl_buf_free(&body);
  }
  g->rc_var = saved;
}

const char *cg_rc_load(cg_t *g, const kir_expr_t *e, const char *normal) {
  for (int i = 0; i < g->n_rc; i++) {
    if (!same_mod(g->rc_load[i], e, g->rc_lvar[i], g->rc_var)) continue;
    if (!g->rc_ready) rc_fill(g);
    g->rc_hits++;
    if (g->rc_var == g->rc_inner_var) g->rc_inner_hit = true;
    if (g->rc_sk) return cg_fmt(g, "(fo_hit ? fo_rc%d[fo_k] : fo_shit ? fo_rs%d[fo_s] : %s)", i, i, normal);
    return cg_fmt(g, "(fo_hit ? fo_rc%d[fo_k] : %s)", i, normal);
  }
  return NULL;
}

/* A row loop over `v` in [0, ext) whose body (text) read the cache: the slots,
 * then the tail. */
static void rc_loops(cg_t *g, int v, const char *ext, const char *body, size_t len, int depth, fl_buf_t *out) {
  rc_slots(g, v, ext, true, false, body, len, depth, out);
  int w = g->rc_w > 1 ? g->rc_w : 1;
  const char *first = cg_fmt(g, "%d", g->rc_k / w);
  if (g->rc_sk) {
    cg_line(out, depth, "if (fo_rsm_ok) {");
    rc_slots(g, v, ext, true, true, body, len, depth + 1, out);
    cg_line(out, depth, "}");
    first = cg_fmt(g, "(fo_rsm_ok ? %d : %d)", (g->rc_k + g->rc_sk) / w, g->rc_k / w);
  }
  /* the tail (a row longer than the slots) reads memory: unrolled, a thread
   * has several loads in flight instead of one memory latency per element;
   * in vectors of rc_w consecutive elements like the slots */
  cg_line(out, depth, "#pragma unroll 4");
  cg_line(out, depth, "for (int64_t fo_t = ((int64_t)fo_gt + (int64_t)%s * fo_gw) * %d; fo_t < %s;", first, w, ext);
  cg_line(out, depth + 2, "fo_t += (int64_t)fo_gw * %d) {", w);
  cg_line(out, depth + 1, "#pragma unroll");
  cg_line(out, depth + 1, "for (int fo_ku = 0; fo_ku < %d; fo_ku++) {", w);
  cg_line(out, depth + 2, "const int fo_hit = 0, fo_k = 0%s;", g->rc_sk ? ", fo_shit = 0, fo_s = 0" : "");
  cg_line(out, depth + 2, "const int64_t v%d = fo_t + fo_ku;", v);
  cg_line(out, depth + 2, "{");
  if (len) fl_buf_append(out, body, len);
  cg_line(out, depth + 2, "}");
  cg_line(out, depth + 1, "}");
  cg_line(out, depth, "}");
}

void cg_plan_coop(cg_t *g) {
  const kir_kernel_t *k = g->k;
  g->coop_level = CG_NO_COOP;
  if (!g->d->coop_setup || k->serial) return;
  int64_t pts = 1;
  bool small_space = true;
  for (int i = 0; i < k->rank && small_space; i++) {
    int64_t v;
    if (kir_eval_int(k->extents[i], NULL, 0, &v)) pts *= v > 0 ? v : 0;
    else small_space = false;
    if (pts >= 1024) small_space = false;
  }
  int best = k->rank;
  g->mark_gen[0]++;
  for (int s = 0; s < k->n_stores; s++) {
    const kir_store_t *st = &k->stores[s];
    if (st->cond) {
      plan_walk(g, st->cond, small_space, &best);
      continue;
    }
    plan_walk(g, st->value, small_space, &best);
    for (int i = 0; i < k->bufs[st->buf].rank; i++) plan_walk(g, st->idx[i], small_space, &best);
  }
  if (best < k->rank) g->coop_level = best;
  g->rc_var = g->rc_inner_var = -1;
  g->n_rc = g->rc_sk = g->rc_smem = 0;
  if (g->coop_level != CG_NO_COOP && g->d->coop_slots) plan_cache(g);
}

/* The row's reduction e, shared by the group; t is the row's block. */
const char *cg_reduce_coop(cg_t *g, const kir_expr_t *e, cg_block_t *t) {
  const char *T = cg_ctype(g, e->dtype), *acc = cg_tmp_name(g, "r");
  cg_line(&t->buf, t->depth, "%s %s = %s;", T, acc, cg_reduce_init(g, e->op, e->dtype));
  const char **ext = fl_arena_alloc(g->a, sizeof(*ext) * (size_t)e->nr);
  bool sym_only = true;
  kir_expr_t *trips = kir_i64(g->a, 1);
  for (int i = 0; i < e->nr; i++) {
    ext[i] = cg_ex_index(g, e->rext[i], t);
    cg_info_t *ri = cg_info(g, e->rext[i]);
    for (int w = 0; ri && w < g->nw_var; w++) sym_only = sym_only && ri->vars[w] == 0;
    for (int w = 0; ri && w < g->nw_buf; w++) sym_only = sym_only && ri->loads[w] == 0;
    trips = kir_mul(g->a, trips, e->rext[i]);
  }
  if (!sym_only) g->coop_rowsz_unknown = true;
  else g->coop_rowsz_e = g->coop_rowsz_e ? kir_bin(g->a, KIR_MAX, g->coop_rowsz_e, trips) : trips;
  cg_block_t **loops = fl_arena_alloc(g->a, sizeof(*loops) * (size_t)e->nr);
  cg_block_t *cur = t;
  for (int i = 0; i < e->nr; i++) {
    loops[i] = cg_blk_new(g, cur, CG_RLOOP);
    loops[i]->var = e->rvars[i];
    loops[i]->ext = e->rext[i];
    cur = loops[i];
  }
  int saved = g->rc_var, hits = g->rc_hits;
  int64_t rn;
  g->rc_var = g->n_rc && e->nr == 1 && rc_extent(e->rext[0], &rn) && rn == g->rc_n ? e->rvars[0] : -1;
  const char *x = cg_ex(g, e->a[0], cur);
  cg_line(&cur->buf, cur->depth, "%s = %s;", acc, cg_reduce_step(g, e->op, e->dtype, acc, x));
  bool cached = g->rc_var >= 0 && g->rc_hits > hits;
  g->rc_var = saved;
  for (int i = e->nr - 1; i > 0; i--) cg_blk_close(loops[i], NULL);
  int id = g->next_tmp++;
  if (cached) {
    rc_loops(g, e->rvars[0], ext[0], loops[0]->buf.data, loops[0]->buf.len, t->depth, &t->buf);
  } else if (e->nr == 1) {
    int v = e->rvars[0];
    cg_line(&t->buf, t->depth, "for (int64_t v%d = fo_gt; v%d < %s; v%d += fo_gw) {", v, v, ext[0], v);
  } else {
    const char *n = NULL, *pos = NULL;
    for (int i = 0; i < e->nr; i++) {
      n = n ? cg_fmt(g, "%s * %s", n, ext[i]) : ext[i];
      pos = pos ? cg_fmt(g, "%s && %s > 0", pos, ext[i]) : cg_fmt(g, "%s > 0", ext[i]);
    }
    cg_line(&t->buf, t->depth, "const int64_t fo_n%d = (%s) ? %s : 0;", id, pos, n);
    cg_line(&t->buf, t->depth, "for (int64_t fo_f%d = fo_gt; fo_f%d < fo_n%d; fo_f%d += fo_gw) {", id, id, id, id);
    put_decompose(g, cg_fmt(g, "fo_f%d", id), cg_fmt(g, "fo_n%d", id), e->nr, e->rvars, ext, t->depth + 1, &t->buf);
  }
  loops[0]->has_loop = true;
  fl_buf_t *lb = &loops[0]->buf;
  if (!cached) {
    if (lb->len) fl_buf_append(&t->buf, lb->data, lb->len);
    cg_line(&t->buf, t->depth, "}");
  }
  t->has_loop = true;
  fl_buf_free(lb);
  g->d->coop_combine(g, e->op, e->dtype, acc, t->depth, &t->buf);
  g->n_coop++;
  cg_memo_add(g, t, e, acc);
  return acc;
}

/* The main levels in the cooperative form: the row levels 0..P flattened into
 * the group's row loop, the deeper ones into one loop over the group's threads. */
void cg_coop_main_loop(cg_t *g, cg_block_t *blk, fl_buf_t *out) {
  int lv = blk->level, depth = blk->parent->depth, P = g->coop_level, rank = g->k->rank;
  bool rows = lv == 0 && P >= 0;
  int lo = rows ? 0 : lv == P + 1 ? P + 1 : -1, hi = rows ? P : rank - 1;
  if (lo < 0) {
    cg_line(out, depth, "{");
  } else {
    int n = hi - lo + 1;
    int *vars = fl_arena_alloc(g->a, sizeof(int) * (size_t)n);
    const char **ext = fl_arena_alloc(g->a, sizeof(char *) * (size_t)n);
    const char *tot = NULL;
    for (int i = 0; i < n; i++) {
      vars[i] = g->levels[lo + i]->var;
      ext[i] = cg_fmt(g, "E%d", lo + i);
      tot = tot ? cg_fmt(g, "%s * %s", tot, ext[i]) : ext[i];
    }
    if (rows) {
      cg_line(out, depth, "const int64_t fo_rows = %s;", tot);
      cg_line(out, depth, "for (int64_t fo_row = fo_row0; fo_row < fo_rows; fo_row += fo_rstep) {");
      put_decompose(g, "fo_row", "fo_rows", n, vars, ext, depth + 1, out);
    } else if (n == 1 && g->rc_inner_hit && vars[0] == g->rc_inner_var) {
      cg_line(out, depth, "const int64_t fo_inner = %s;", tot);
      rc_loops(g, vars[0], "fo_inner", blk->buf.data, blk->buf.len, depth, out);
      return;
    } else {
      cg_line(out, depth, "const int64_t fo_inner = %s;", tot);
      cg_line(out, depth, "for (int64_t fo_j = fo_gt; fo_j < fo_inner; fo_j += fo_gw) {");
      put_decompose(g, "fo_j", "fo_inner", n, vars, ext, depth + 1, out);
    }
  }
  if (blk->buf.len) fl_buf_append(out, blk->buf.data, blk->buf.len);
  cg_line(out, depth, "}");
}


/* Bytes of a vector of rc_w elements of buffer i, 0 where its elements do not
 * vectorise (8-byte types). */
static int vec_bytes(cg_t *g, int i, int w) {
  const char *e = cg_vec_elem(g->d->stype(g->k->bufs[i].dtype));
  if (!e) return 0;
  int sz = strstr(e, "char") ? 1 : strstr(e, "short") ? 2 : 4;
  return sz * w;
}

void cg_coop_put(cg_t *g, const fl_buf_t *root, fl_buf_t *out) {
  const kir_kernel_t *k = g->k;
  const char *al = g->d->assume_aligned;
  /* vectors of w elements: the row cache's slots */
  int w = g->coop_level != CG_NO_COOP && g->n_rc ? g->rc_w : 1;
  if (w <= 1 || !al) {
    if (root->len) fl_buf_append(out, root->data, root->len);
    return;
  }
  /* The same loops twice: where every buffer is aligned to a vector, with its
   * pointers declared so (the compiler then moves a thread's w consecutive
   * elements as one access), else as is. */
  const char *cond = NULL;
  fl_buf_t decl = {0}, shadow = {0};
  for (int i = 0; i < k->n_bufs; i++) {
    int bytes = vec_bytes(g, i, w);
    if ((!g->buf_loaded[i] && !g->buf_stored[i]) || bytes <= 1) continue;
    const char *T = cg_fmt(g, "%s%s", g->buf_stored[i] ? "" : "const ", g->d->stype(k->bufs[i].dtype));
    const char *c = cg_fmt(g, "((uint64_t)(const void *)b%d & %d) == 0", i, bytes - 1);
    cond = cond ? cg_fmt(g, "%s && %s", cond, c) : c;
    cg_line(&decl, 2, "%s *const fo_al%d = (%s *)%s(b%d, %d);", T, i, T, al, i, bytes);
    cg_line(&shadow, 3, "%s *const __restrict__ b%d = fo_al%d;", T, i, i);
  }
  if (!cond) {
    if (root->len) fl_buf_append(out, root->data, root->len);
    return;
  }
  cg_line(out, 1, "if (%s) {", cond);
  fl_buf_append(out, decl.data, decl.len);
  cg_line(out, 2, "{");
  fl_buf_append(out, shadow.data, shadow.len);
  if (root->len) fl_buf_append(out, root->data, root->len);
  cg_line(out, 2, "}");
  cg_line(out, 1, "} else {");
  if (root->len) fl_buf_append(out, root->data, root->len);
  cg_line(out, 1, "}");
  fl_buf_free(&decl);
  fl_buf_free(&shadow);
}

void cg_coop_warp_combine(cg_t *g, kir_op_t op, flagos_dtype_t dt, const char *acc, const char *shfl, const char *sh,
                          const char *wide, const cg_warp_names_t *n, int depth, fl_buf_t *out) {
  cg_line(out, depth, "for (int fo_o = 16; fo_o > 0; fo_o >>= 1) {");
  cg_line(out, depth + 1, "const %s fo_y = %s;", cg_ctype(g, dt), shfl);
  cg_line(out, depth + 1, "%s = %s;", acc, cg_reduce_step(g, op, dt, acc, "fo_y"));
  cg_line(out, depth, "}");
  cg_line(out, depth, "if (%s) {", wide);
  cg_line(out, depth + 1, "if ((%s & 31) == 0) %s[%s >> 5] = %s;", n->lane, sh, n->lane, acc);
  cg_line(out, depth + 1, "%s", n->sync);
  cg_line(out, depth + 1, "%s = %s[0];", acc, sh);
  cg_line(out, depth + 1, "for (int fo_w = 1; fo_w < (int)(%s >> 5); fo_w++) %s = %s;", n->size, acc,
          cg_reduce_step(g, op, dt, acc, cg_fmt(g, "%s[fo_w]", sh)));
  cg_line(out, depth + 1, "%s", n->sync);
  cg_line(out, depth, "}");
}

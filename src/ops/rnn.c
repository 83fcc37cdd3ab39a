/* Recurrent layers: RNN, GRU and LSTM (opsets 7 to 22: directions, layout,
 * sequence_lens, initial states, peepholes, activation lists with alpha/beta,
 * clip, GRU's linear_before_reset, LSTM's input_forget).
 *
 * The time recurrence is unrolled: the sequence length must be known when the
 * node is lowered (a dynamic length is reported as unsupported), and each time
 * step is one kernel over (direction, batch, hidden unit) that computes its
 * gates as dot-product reductions and stores the new state. States live in a
 * temp holding every step, hs[s][d][b][j] (slot 0 the initial state, slot s+1
 * the state after step s), so no kernel reads what it writes; Y, Y_h and Y_c are
 * gathered from it at the end. GRU without linear_before_reset needs the reset
 * gate of every unit before the candidate state, so its step is two kernels.
 * Step s of a reverse direction processes time len-1-s; a batch entry whose
 * sequence_lens is exhausted carries its state unchanged and outputs zeros. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ops/misc_util.h"

#define AR (c->arena)

enum { K_RNN, K_GRU, K_LSTM };
enum { IN_X, IN_W, IN_R, IN_B, IN_SEQ, IN_H0, IN_C0, IN_P };

typedef enum act_kind {
  A_RELU, A_TANH, A_SIGMOID, A_AFFINE, A_LEAKYRELU, A_THRESHRELU, A_SCALEDTANH, A_HARDSIGMOID, A_ELU, A_SOFTSIGN,
  A_SOFTPLUS
} act_kind_t;

typedef struct act {
  act_kind_t kind;
  double alpha, beta;
} act_t;

typedef struct rnn_cfg {
  int kind;
  int gates;      /* gate blocks in W/R: 1, 3, 4 */
  int nf;         /* activation functions per direction: 1, 2, 3 */
  int dirs;
  bool reverse_only;
  int64_t hidden;
  bool layout;    /* 1: batch first */
  bool lbr;       /* GRU linear_before_reset */
  bool input_forget;
  bool has_clip;
  double clip;
  act_t act[2][3];
} rnn_cfg_t;

static const struct {
  const char *name;
  act_kind_t kind;
  int n_params; /* 0 none, 1 alpha, 2 alpha and beta */
  double alpha, beta;
} k_acts[] = {
    {"Relu", A_RELU, 0, 0, 0},           {"Tanh", A_TANH, 0, 0, 0},
    {"Sigmoid", A_SIGMOID, 0, 0, 0},     {"Affine", A_AFFINE, 2, 1.0, 0.0},
    {"LeakyRelu", A_LEAKYRELU, 1, 0.01, 0}, {"ThresholdedRelu", A_THRESHRELU, 1, 1.0, 0},
    {"ScaledTanh", A_SCALEDTANH, 2, 1.0, 1.0}, {"HardSigmoid", A_HARDSIGMOID, 2, 0.2, 0.5},
    {"Elu", A_ELU, 1, 1.0, 0},           {"Softsign", A_SOFTSIGN, 0, 0, 0},
    {"Softplus", A_SOFTPLUS, 0, 0, 0},
};

static flagos_status_t rnn_config(const ops_ctx_t *c, rnn_cfg_t *g) {
  memset(g, 0, sizeof(*g));
  const fir_node_t *n = c->node;
  const char *op = n->op_type;
  g->kind = strcmp(op, "RNN") == 0 ? K_RNN : strcmp(op, "GRU") == 0 ? K_GRU : K_LSTM;
  g->gates = g->kind == K_RNN ? 1 : g->kind == K_GRU ? 3 : 4;
  g->nf = g->kind == K_RNN ? 1 : g->kind == K_GRU ? 2 : 3;
  const char *dir = fir_attr_string(n, "direction", "forward");
  if (strcmp(dir, "forward") == 0) g->dirs = 1;
  else if (strcmp(dir, "reverse") == 0) g->dirs = 1, g->reverse_only = true;
  else if (strcmp(dir, "bidirectional") == 0) g->dirs = 2;
  else return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "attribute direction has unsupported value \"%s\"", dir);
  g->hidden = fir_attr_int(n, "hidden_size", -1);
  g->layout = fir_attr_int(n, "layout", 0) != 0;
  g->lbr = fir_attr_int(n, "linear_before_reset", 0) != 0;
  g->input_forget = fir_attr_int(n, "input_forget", 0) != 0;
  const fir_attr_t *cl = fir_node_attr(n, "clip");
  if (cl) {
    g->has_clip = true;
    g->clip = cl->f;
  }
  static const char *const defaults[3][3] = {{"Tanh"}, {"Sigmoid", "Tanh"}, {"Sigmoid", "Tanh", "Tanh"}};
  const fir_attr_t *acts = fir_node_attr(n, "activations");
  int n_names = acts ? acts->n : 0;
  if (acts && n_names != g->nf * g->dirs && !(n_names == g->nf && g->dirs == 2))
    return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "activations lists %d functions, expected %d", n_names, g->nf * g->dirs);
  const float *al, *be;
  int n_al = fir_attr_floats(n, "activation_alpha", &al), n_be = fir_attr_floats(n, "activation_beta", &be);
  int ia = 0, ib = 0;
  for (int d = 0; d < g->dirs; d++)
    for (int f = 0; f < g->nf; f++) {
      const char *name = acts ? acts->strings[(d * g->nf + f) % n_names] : defaults[g->kind][f];
      size_t k = 0;
      while (k < FL_ARRAY_LEN(k_acts) && strcasecmp(k_acts[k].name, name) != 0) k++;
      if (k == FL_ARRAY_LEN(k_acts))
        return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "activation function \"%s\" is not supported", name);
      act_t *a = &g->act[d][f];
      a->kind = k_acts[k].kind;
      a->alpha = k_acts[k].alpha;
      a->beta = k_acts[k].beta;
      /* The alpha/beta lists are consumed, in order, by the functions that take them. */
      if (k_acts[k].n_params >= 1 && ia < n_al) a->alpha = al[ia++];
      if (k_acts[k].n_params >= 2 && ib < n_be) a->beta = be[ib++];
    }
  return NULL;
}

static bool has_out(const ops_ctx_t *c, int k) { return ops_has_out(c, k); }

static flagos_status_t rnn_infer(ops_ctx_t *c) {
  rnn_cfg_t g;
  FL_TRY(rnn_config(c, &g));
  if (c->n_in < 3) return ops_err(c, FLAGOS_ERR_INVALID_ARGUMENT, "expects at least X, W and R");
  FL_TRY(ops_ew_check_in(c, IN_X, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, IN_W, OPS_DT_FLOATS));
  FL_TRY(ops_ew_check_in(c, IN_R, OPS_DT_FLOATS));
  const ops_tensor_info_t *X = &c->in[IN_X], *W = &c->in[IN_W], *R = &c->in[IN_R];
  flagos_dtype_t dt = X->dtype;
  if (X->rank != 3 || W->rank != 3 || R->rank != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "X, W and R must have rank 3");
  if (W->dtype != dt || R->dtype != dt) return ops_err(c, FLAGOS_ERR_SHAPE, "X, W and R must have the same dtype");
  int64_t H = g.hidden >= 0 ? g.hidden : R->dims[2];
  int64_t S = X->dims[g.layout ? 1 : 0], B = X->dims[g.layout ? 0 : 1];
  if (W->dims[0] >= 0 && W->dims[0] != g.dirs)
    return ops_err(c, FLAGOS_ERR_SHAPE, "W has %lld directions, expected %d", (long long)W->dims[0], g.dirs);
  if (H >= 0 && W->dims[1] >= 0 && W->dims[1] != g.gates * H)
    return ops_err(c, FLAGOS_ERR_SHAPE, "W's dim 1 is %lld, expected %d * hidden_size = %lld", (long long)W->dims[1],
                   g.gates, (long long)(g.gates * H));
  if (H >= 0 && R->dims[2] >= 0 && R->dims[2] != H)
    return ops_err(c, FLAGOS_ERR_SHAPE, "R's last dim is %lld, expected hidden_size %lld", (long long)R->dims[2], (long long)H);
  if (X->dims[2] >= 0 && W->dims[2] >= 0 && X->dims[2] != W->dims[2])
    return ops_err(c, FLAGOS_ERR_SHAPE, "X has input size %lld but W has %lld", (long long)X->dims[2], (long long)W->dims[2]);
  if (ops_has_in(c, IN_B)) {
    FL_TRY(ops_ew_check_in(c, IN_B, OPS_DT(dt)));
    if (c->in[IN_B].rank != 2) return ops_err(c, FLAGOS_ERR_SHAPE, "B must have rank 2");
  }
  if (ops_has_in(c, IN_SEQ)) {
    FL_TRY(ops_ew_check_in(c, IN_SEQ, OPS_DT(FLAGOS_INT32) | OPS_DT(FLAGOS_INT64)));
    if (c->in[IN_SEQ].rank != 1) return ops_err(c, FLAGOS_ERR_SHAPE, "sequence_lens must be 1-D");
  }
  for (int k = IN_H0; k <= IN_C0; k++)
    if (ops_has_in(c, k)) {
      if (k == IN_C0 && g.kind != K_LSTM) break;
      FL_TRY(ops_ew_check_in(c, k, OPS_DT(dt)));
      if (c->in[k].rank != 3) return ops_err(c, FLAGOS_ERR_SHAPE, "initial states must have rank 3");
    }
  if (g.kind == K_LSTM && ops_has_in(c, IN_P)) {
    FL_TRY(ops_ew_check_in(c, IN_P, OPS_DT(dt)));
    if (c->in[IN_P].rank != 2) return ops_err(c, FLAGOS_ERR_SHAPE, "P must have rank 2");
  }
  int64_t y[4], yh[3];
  if (g.layout) {
    y[0] = B, y[1] = S, y[2] = g.dirs, y[3] = H;
    yh[0] = B, yh[1] = g.dirs, yh[2] = H;
  } else {
    y[0] = S, y[1] = g.dirs, y[2] = B, y[3] = H;
    yh[0] = g.dirs, yh[1] = B, yh[2] = H;
  }
  if (has_out(c, 0)) ops_set_out(c, 0, dt, 4, y);
  if (has_out(c, 1)) ops_set_out(c, 1, dt, 3, yh);
  if (g.kind == K_LSTM && has_out(c, 2)) ops_set_out(c, 2, dt, 3, yh);
  return NULL;
}

static double rnn_flops(const ops_ctx_t *c) {
  rnn_cfg_t g;
  if (rnn_config(c, &g)) return 0;
  const ops_tensor_info_t *X = &c->in[IN_X];
  int64_t H = c->in[IN_R].dims[2];
  double n = 1;
  for (int i = 0; i < 3; i++) n *= X->dims[i] < 0 ? 0 : (double)X->dims[i];
  return n / (X->dims[2] > 0 ? (double)X->dims[2] : 1) * g.dirs * g.gates * (double)H * 2.0 *
         (double)(X->dims[2] + H);
}

/* ---- lowering ---- */

static kir_expr_t *act_apply(ops_ctx_t *c, const act_t *a, kir_expr_t *x) {
  flagos_dtype_t F = x->dtype;
  kir_expr_t *zero = ops_fc(c, F, 0.0), *one = ops_fc(c, F, 1.0);
  kir_expr_t *al = ops_fc(c, F, a->alpha), *be = ops_fc(c, F, a->beta);
  switch (a->kind) {
  case A_RELU: return kir_bin(AR, KIR_MAX, x, zero);
  case A_TANH: return kir_un(AR, KIR_TANH, x);
  case A_SIGMOID: return ops_fdiv(c, one, ops_fadd(c, one, kir_un(AR, KIR_EXP, kir_un(AR, KIR_NEG, x))));
  case A_AFFINE: return ops_fadd(c, ops_fmul(c, al, x), be);
  case A_LEAKYRELU: return kir_select(AR, kir_bin(AR, KIR_GE, x, zero), x, ops_fmul(c, al, x));
  case A_THRESHRELU: return kir_select(AR, kir_bin(AR, KIR_GT, x, al), x, zero);
  case A_SCALEDTANH: return ops_fmul(c, al, kir_un(AR, KIR_TANH, ops_fmul(c, be, x)));
  case A_HARDSIGMOID:
    return kir_bin(AR, KIR_MIN, kir_bin(AR, KIR_MAX, ops_fadd(c, ops_fmul(c, al, x), be), zero), one);
  case A_ELU:
    return kir_select(AR, kir_bin(AR, KIR_GE, x, zero), x, ops_fmul(c, al, ops_fsub(c, kir_un(AR, KIR_EXP, x), one)));
  case A_SOFTSIGN: return ops_fdiv(c, x, ops_fadd(c, one, kir_un(AR, KIR_ABS, x)));
  default: return kir_un(AR, KIR_LOG, ops_fadd(c, one, kir_un(AR, KIR_EXP, x)));
  }
}

/* Everything one step kernel needs to address its inputs and state. */
typedef struct step {
  const rnn_cfg_t *g;
  kir_kernel_t *k;
  flagos_dtype_t F;
  int bx, bw, br, bb, bseq, bp, bh, bc; /* buffers (-1 absent) */
  kir_expr_t *d, *b, *j;                /* loop vars */
  kir_expr_t *H, *I, *S;
  kir_expr_t *len;                      /* sequence length of batch entry b */
  kir_expr_t *rev;                      /* bool: direction d runs backwards */
} step_t;

static kir_expr_t *ld(step_t *st, int buf, kir_expr_t *i0, kir_expr_t *i1, kir_expr_t *i2, kir_expr_t *i3) {
  kir_expr_t *idx[4] = {i0, i1, i2, i3};
  return kir_cast(st->k->arena, st->F, kir_load(st->k, buf, idx));
}

/* Activation f (0, 1, 2) of direction d. */
static kir_expr_t *act(ops_ctx_t *c, step_t *st, int f, kir_expr_t *x) {
  const rnn_cfg_t *g = st->g;
  kir_expr_t *y0 = act_apply(c, &g->act[0][f], x);
  if (g->dirs == 1) return y0;
  const act_t *a = &g->act[0][f], *b = &g->act[1][f];
  if (a->kind == b->kind && a->alpha == b->alpha && a->beta == b->beta) return y0;
  return kir_select(AR, kir_bin(AR, KIR_EQ, st->d, kir_i64(AR, 0)), y0, act_apply(c, &g->act[1][f], x));
}

static kir_expr_t *clip(ops_ctx_t *c, step_t *st, kir_expr_t *x) {
  if (!st->g->has_clip) return x;
  return kir_bin(AR, KIR_MIN, kir_bin(AR, KIR_MAX, x, ops_fc(c, st->F, -st->g->clip)), ops_fc(c, st->F, st->g->clip));
}

static void step_setup(ops_ctx_t *c, step_t *st, kir_kernel_t *k, kir_expr_t *const *v) {
  const rnn_cfg_t *g = st->g;
  st->k = k;
  st->d = v[0], st->b = v[1], st->j = v[2];
  st->H = ops_in_dim(c, IN_R, 2);
  st->I = ops_in_dim(c, IN_X, 2);
  st->S = ops_in_dim(c, IN_X, g->layout ? 1 : 0);
  st->bseq = ops_has_in(c, IN_SEQ) ? ops_buf_in(c, k, IN_SEQ) : -1;
  if (st->bseq >= 0) {
    kir_expr_t *idx[1] = {st->b};
    st->len = kir_bin(AR, KIR_MIN, kir_cast(AR, FLAGOS_INT64, kir_load(k, st->bseq, idx)), st->S);
  } else {
    st->len = st->S;
  }
  st->rev = g->reverse_only ? kir_bool(AR, true) : g->dirs == 2 ? kir_bin(AR, KIR_EQ, st->d, kir_i64(AR, 1)) : kir_bool(AR, false);
}

/* Time index processed at step s (int64 const) by direction d for batch entry b. */
static kir_expr_t *time_of(ops_ctx_t *c, step_t *st, kir_expr_t *s) {
  kir_expr_t *t = kir_select(AR, st->rev, kir_sub(AR, kir_sub(AR, st->len, kir_i64(AR, 1)), s), s);
  return ops_clampi(c, t, kir_i64(AR, 0), kir_sub(AR, st->S, kir_i64(AR, 1)));
}

/* Pre-activation of gate `gate` for unit j: X_t W^T + H_prev R^T + Wb + Rb, where
 * H_prev is read from state buffer hbuf at slot `slot` (or, if scale_buf >= 0,
 * H_prev[k] * scale_buf[d][b][k], for GRU's r (.) H). with_rb: add Rb. */
static kir_expr_t *gate_pre(ops_ctx_t *c, step_t *st, int gate, kir_expr_t *t, kir_expr_t *slot, int hbuf, bool with_r,
                            bool with_rb) {
  const rnn_cfg_t *g = st->g;
  kir_kernel_t *k = st->k;
  kir_expr_t *row = kir_add(AR, kir_mul(AR, kir_i64(AR, gate), st->H), st->j);
  int iv = kir_new_var(k);
  kir_expr_t *i = kir_var(AR, iv);
  kir_expr_t *x = g->layout ? ld(st, st->bx, st->b, t, i, NULL) : ld(st, st->bx, t, st->b, i, NULL);
  kir_expr_t *sum = kir_reduce(AR, KIR_RSUM, 1, &iv, &st->I, ops_fmul(c, x, ld(st, st->bw, st->d, row, i, NULL)));
  if (with_r) {
    int hv = kir_new_var(k);
    kir_expr_t *h = kir_var(AR, hv);
    kir_expr_t *hp = slot ? ld(st, hbuf, slot, st->d, st->b, h) : ld(st, hbuf, st->d, st->b, h, NULL);
    sum = ops_fadd(c, sum, kir_reduce(AR, KIR_RSUM, 1, &hv, &st->H, ops_fmul(c, hp, ld(st, st->br, st->d, row, h, NULL))));
  }
  if (st->bb >= 0) {
    sum = ops_fadd(c, sum, ld(st, st->bb, st->d, row, NULL, NULL));
    if (with_rb)
      sum = ops_fadd(c, sum, ld(st, st->bb, st->d, kir_add(AR, kir_mul(AR, kir_i64(AR, g->gates), st->H), row), NULL, NULL));
  }
  return sum;
}

/* R's contribution alone: H_prev R_gate^T (+ Rb_gate), for GRU linear_before_reset. */
static kir_expr_t *gate_rec(ops_ctx_t *c, step_t *st, int gate, kir_expr_t *slot) {
  kir_expr_t *row = kir_add(AR, kir_mul(AR, kir_i64(AR, gate), st->H), st->j);
  int hv = kir_new_var(st->k);
  kir_expr_t *h = kir_var(AR, hv);
  kir_expr_t *sum = kir_reduce(AR, KIR_RSUM, 1, &hv, &st->H,
                               ops_fmul(c, ld(st, st->bh, slot, st->d, st->b, h), ld(st, st->br, st->d, row, h, NULL)));
  if (st->bb >= 0)
    sum = ops_fadd(c, sum, ld(st, st->bb, st->d, kir_add(AR, kir_mul(AR, kir_i64(AR, st->g->gates), st->H), row), NULL, NULL));
  return sum;
}

/* A kernel over (batch, hidden unit) for direction d: v[0] is the constant d,
 * so the direction's activations and time order fold into the kernel. */
static kir_kernel_t *state_kernel(ops_ctx_t *c, const char *name, int d, kir_expr_t *B, kir_expr_t *H, kir_expr_t **v) {
  kir_kernel_t *k = ops_kernel(c, name);
  kir_expr_t *ext[2] = {B, H};
  kir_set_space(k, 2, ext, v + 1);
  v[0] = kir_i64(AR, d);
  return k;
}

static flagos_status_t rnn_lower(ops_ctx_t *c) {
  rnn_cfg_t g;
  FL_TRY(rnn_config(c, &g));
  const ops_tensor_info_t *X = &c->in[IN_X];
  int64_t S = X->dims[g.layout ? 1 : 0];
  if (S < 0)
    return ops_err(c, FLAGOS_ERR_UNSUPPORTED, "the sequence length must be known when compiling (it is dynamic here)");
  flagos_dtype_t dt = X->dtype;
  flagos_dtype_t F = dt == FLAGOS_FLOAT64 ? FLAGOS_FLOAT64 : FLAGOS_FLOAT32;
  kir_expr_t *D = kir_i64(AR, g.dirs), *B = ops_in_dim(c, IN_X, g.layout ? 0 : 1), *H = ops_in_dim(c, IN_R, 2);
  kir_expr_t *sd[4] = {kir_i64(AR, S + 1), D, B, H};
  int th = ops_temp(c, dt, 4, sd);
  int tc = g.kind == K_LSTM ? ops_temp(c, dt, 4, sd) : -1;
  int tr = g.kind == K_GRU && !g.lbr ? ops_temp(c, dt, 3, sd + 1) : -1;
  kir_expr_t *v[4];

  /* slot 0: the initial states */
  {
    kir_kernel_t *k = ops_kernel(c, "init");
    kir_set_space(k, 3, sd + 1, v);
    int bh = ops_buf_temp(c, k, th);
    kir_expr_t *z = kir_const(AR, dt, 0.0);
    kir_expr_t *si[4] = {kir_i64(AR, 0), v[0], v[1], v[2]};
    for (int s = 0; s < (tc >= 0 ? 2 : 1); s++) {
      int in = s == 0 ? IN_H0 : IN_C0;
      int bt = s == 0 ? bh : ops_buf_temp(c, k, tc);
      kir_expr_t *val = z;
      if (ops_has_in(c, in)) {
        int bi = ops_buf_in(c, k, in);
        kir_expr_t *ii[3] = {g.layout ? v[1] : v[0], g.layout ? v[0] : v[1], v[2]};
        val = kir_load(k, bi, ii);
      }
      kir_store(k, bt, si, val, NULL);
    }
  }

  for (int64_t step = 0; step < S * g.dirs; step++) {
    int64_t s = step / g.dirs;
    int dir = (int)(step % g.dirs);
    kir_expr_t *slot = kir_i64(AR, s), *next = kir_i64(AR, s + 1);
    step_t st = {.g = &g, .F = F, .bc = -1, .bp = -1, .bb = -1};
    char name[64];
    if (tr >= 0) {
      /* GRU: r (.) H_prev for every unit, before the candidate state. */
      snprintf(name, sizeof name, "reset%lld_%d", (long long)s, dir);
      kir_kernel_t *k = state_kernel(c, name, dir, B, H, v);
      int bout = ops_buf_temp(c, k, tr);
      st.bh = ops_buf_temp(c, k, th);
      st.bx = ops_buf_in(c, k, IN_X), st.bw = ops_buf_in(c, k, IN_W), st.br = ops_buf_in(c, k, IN_R);
      st.bb = ops_has_in(c, IN_B) ? ops_buf_in(c, k, IN_B) : -1;
      step_setup(c, &st, k, v);
      kir_expr_t *t = time_of(c, &st, slot);
      kir_expr_t *r = act(c, &st, 0, clip(c, &st, gate_pre(c, &st, 1, t, slot, st.bh, true, true)));
      kir_expr_t *hp = ld(&st, st.bh, slot, v[0], v[1], v[2]);
      kir_store(k, bout, v, kir_cast(AR, dt, ops_fmul(c, r, hp)), NULL);
    }
    snprintf(name, sizeof name, "step%lld_%d", (long long)s, dir);
    kir_kernel_t *k = state_kernel(c, name, dir, B, H, v);
    st.bh = ops_buf_temp(c, k, th);
    st.bc = tc >= 0 ? ops_buf_temp(c, k, tc) : -1;
    int brh = tr >= 0 ? ops_buf_temp(c, k, tr) : -1;
    st.bx = ops_buf_in(c, k, IN_X), st.bw = ops_buf_in(c, k, IN_W), st.br = ops_buf_in(c, k, IN_R);
    st.bb = ops_has_in(c, IN_B) ? ops_buf_in(c, k, IN_B) : -1;
    st.bp = g.kind == K_LSTM && ops_has_in(c, IN_P) ? ops_buf_in(c, k, IN_P) : -1;
    step_setup(c, &st, k, v);
    kir_expr_t *t = time_of(c, &st, slot);
    kir_expr_t *valid = kir_bin(AR, KIR_LT, slot, st.len);
    kir_expr_t *hp = ld(&st, st.bh, slot, v[0], v[1], v[2]);
    kir_expr_t *si[4] = {next, v[0], v[1], v[2]};
    kir_expr_t *hn;
    if (g.kind == K_RNN) {
      hn = act(c, &st, 0, clip(c, &st, gate_pre(c, &st, 0, t, slot, st.bh, true, true)));
    } else if (g.kind == K_GRU) {
      kir_expr_t *z = act(c, &st, 0, clip(c, &st, gate_pre(c, &st, 0, t, slot, st.bh, true, true)));
      kir_expr_t *hc;
      if (g.lbr) {
        kir_expr_t *r = act(c, &st, 0, clip(c, &st, gate_pre(c, &st, 1, t, slot, st.bh, true, true)));
        kir_expr_t *pre = ops_fadd(c, gate_pre(c, &st, 2, t, slot, st.bh, false, false), ops_fmul(c, r, gate_rec(c, &st, 2, slot)));
        hc = act(c, &st, 1, clip(c, &st, pre));
      } else {
        hc = act(c, &st, 1, clip(c, &st, gate_pre(c, &st, 2, t, NULL, brh, true, true)));
      }
      hn = ops_fadd(c, ops_fmul(c, ops_fsub(c, ops_fc(c, F, 1.0), z), hc), ops_fmul(c, z, hp));
    } else {
      kir_expr_t *cp = ld(&st, st.bc, slot, v[0], v[1], v[2]);
      kir_expr_t *pi = gate_pre(c, &st, 0, t, slot, st.bh, true, true);
      kir_expr_t *po = gate_pre(c, &st, 1, t, slot, st.bh, true, true);
      kir_expr_t *pf = gate_pre(c, &st, 2, t, slot, st.bh, true, true);
      kir_expr_t *pc = gate_pre(c, &st, 3, t, slot, st.bh, true, true);
      if (st.bp >= 0) {
        pi = ops_fadd(c, pi, ops_fmul(c, ld(&st, st.bp, v[0], v[2], NULL, NULL), cp));
        pf = ops_fadd(c, pf, ops_fmul(c, ld(&st, st.bp, v[0], kir_add(AR, kir_mul(AR, kir_i64(AR, 2), H), v[2]), NULL, NULL), cp));
      }
      kir_expr_t *ig = act(c, &st, 0, clip(c, &st, pi));
      kir_expr_t *fg = g.input_forget ? ops_fsub(c, ops_fc(c, F, 1.0), ig) : act(c, &st, 0, clip(c, &st, pf));
      kir_expr_t *cg = act(c, &st, 1, clip(c, &st, pc));
      kir_expr_t *cn = ops_fadd(c, ops_fmul(c, fg, cp), ops_fmul(c, ig, cg));
      /* The state is rounded to its storage type before it feeds the output gate, like the reference's arrays. */
      cn = kir_cast(AR, F, kir_cast(AR, dt, cn));
      if (st.bp >= 0) po = ops_fadd(c, po, ops_fmul(c, ld(&st, st.bp, v[0], kir_add(AR, H, v[2]), NULL, NULL), cn));
      kir_expr_t *og = act(c, &st, 0, clip(c, &st, po));
      hn = ops_fmul(c, og, act(c, &st, 2, cn));
      kir_store(k, st.bc, si, kir_cast(AR, dt, kir_select(AR, valid, cn, cp)), NULL);
    }
    kir_store(k, st.bh, si, kir_cast(AR, dt, kir_select(AR, valid, hn, hp)), NULL);
  }

  /* outputs */
  step_t st = {.g = &g, .F = dt, .bc = -1, .bp = -1, .bb = -1};
  if (ops_has_out(c, 0)) {
    kir_kernel_t *k = ops_out_kernel(c, 0, "y", v);
    int bh = ops_buf_temp(c, k, th);
    kir_expr_t *t = g.layout ? v[1] : v[0], *d = g.layout ? v[2] : v[1], *b = g.layout ? v[0] : v[2];
    kir_expr_t *sv[3] = {d, b, v[3]};
    step_setup(c, &st, k, sv);
    kir_expr_t *s = kir_select(AR, st.rev, kir_sub(AR, kir_sub(AR, st.len, kir_i64(AR, 1)), t), t);
    kir_expr_t *slot = kir_add(AR, ops_clampi(c, s, kir_i64(AR, 0), kir_sub(AR, st.S, kir_i64(AR, 1))), kir_i64(AR, 1));
    kir_expr_t *hi[4] = {slot, d, b, v[3]};
    kir_store(k, 0, v, kir_select(AR, kir_bin(AR, KIR_LT, t, st.len), kir_load(k, bh, hi), kir_const(AR, dt, 0.0)), NULL);
  }
  for (int o = 1; o <= (g.kind == K_LSTM ? 2 : 1); o++) {
    if (!ops_has_out(c, o)) continue;
    kir_kernel_t *k = ops_out_kernel(c, o, o == 1 ? "yh" : "yc", v);
    int bh = ops_buf_temp(c, k, o == 1 ? th : tc);
    kir_expr_t *hi[4] = {kir_i64(AR, S), g.layout ? v[1] : v[0], g.layout ? v[0] : v[1], v[2]};
    kir_store(k, 0, v, kir_load(k, bh, hi), NULL);
  }
  return NULL;
}

const ops_def_t ops_family_rnn[] = {
    {"RNN", "", 0, rnn_infer, rnn_lower, rnn_flops},
    {"GRU", "", 0, rnn_infer, rnn_lower, rnn_flops},
    {"LSTM", "", 0, rnn_infer, rnn_lower, rnn_flops},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

"""The architectures of the model suite, as small PyTorch modules with random
weights. Widths, depths, sequence lengths and image sizes are kept tiny so that
each model compiles and runs in a few seconds on two cores: the point is to run
every operator pattern each architecture exports to, not to be a real network.

Every builder returns a Case: the module, its example inputs (NumPy arrays,
generated from a fixed seed) and the names of its inputs and outputs.
"""
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Case:
    module: nn.Module
    inputs: dict           # name -> np.ndarray, in the module's argument order
    outputs: list          # output names
    dynamic_axes: dict = field(default_factory=dict)
    # name -> "DxDx.." passed to `flagos compile --shape` (dynamic models only)
    shapes: dict = field(default_factory=dict)
    # operators the exported graph must hold (subgraphs included), so that a
    # change of exporter cannot silently stop testing what the model is here for
    ops: tuple = ()
    # inputs of other sizes, run on a second bundle compiled without --shape
    unbound_inputs: list = field(default_factory=list)


def _randomize_norms(module, gen):
    """Random affine parameters and running statistics, so that no normalization
    exports as an identity (fresh BatchNorm/LayerNorm/GroupNorm are one)."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def _finish(module, seed):
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        _randomize_norms(module, gen)
    return module.eval()


# --------------------------------------------------------------------- ResNet
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class TinyResNet(nn.Module):
    """ResNet-18's structure (stem, max-pool, stages of basic blocks, global
    average pool, classifier) at 8/16/32 channels and one block per stage."""

    def __init__(self, widths=(8, 16, 32), classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet(seed, batch=1):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, 32, 32), dtype=np.float32)
    return Case(_finish(TinyResNet(), seed), {"x": x}, ["logits"],
                ops=("Conv", "MaxPool", "GlobalAveragePool", "Gemm", "Add", "Relu"))


def resnet_dynamic_batch(seed):
    """The same ResNet exported with a symbolic batch dimension, compiled by
    `flagos compile --shape` for batch 3, and compiled with the batch left
    symbolic and run at batches 1 and 2."""
    case = resnet(seed, batch=3)
    case.dynamic_axes = {"x": {0: "N"}, "logits": {0: "N"}}
    case.shapes = {"x": "3x3x32x32"}
    rng = np.random.default_rng(seed + 1)
    case.unbound_inputs = [{"x": rng.standard_normal((b, 3, 32, 32), dtype=np.float32)} for b in (1, 2)]
    return case


# ---------------------------------------------------------------- MobileNetV3
def mobilenet_v3(seed):
    import torchvision
    torch.manual_seed(seed)
    # width_mult 0.25 gives 8..24 channels in the inverted residual blocks.
    m = torchvision.models.mobilenet_v3_small(weights=None, width_mult=0.25, num_classes=10)
    # torchvision draws the classifier from N(0, 0.01), which makes the logits ~1e-3:
    # too small for atol 1e-4 to say anything.
    with torch.no_grad():
        for lin in (m.classifier[0], m.classifier[3]):
            lin.weight.normal_(std=3.0 * lin.in_features ** -0.5)
            lin.bias.normal_(std=0.1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 3, 64, 64), dtype=np.float32)
    return Case(_finish(m, seed), {"x": x}, ["logits"],
                ops=("Conv", "HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Gemm"))


# ------------------------------------------------------------------------ ViT
def vit(seed):
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(seed)
    m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                          hidden_dim=32, mlp_dim=64, num_classes=10)
    # torchvision initialises the class token, position embedding and head to zero.
    with torch.no_grad():
        m.class_token.normal_(std=0.5)
        m.encoder.pos_embedding.normal_(std=0.5)
        m.heads.head.weight.normal_(std=0.2)
        m.heads.head.bias.normal_(std=0.1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 3, 32, 32), dtype=np.float32)
    return Case(_finish(m, seed), {"x": x}, ["logits"],
                ops=("Conv", "LayerNormalization", "MatMul", "Softmax", "Erf", "Concat"))


# ------------------------------------------------------------ attention parts
class SelfAttention(nn.Module):
    def __init__(self, dim, heads, causal, max_len=64, separate=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        # separate: three projections of x, as BERT writes them (FlagOS merges
        # them into one product, src/passes/merge_products.c); else one, as GPT-2
        self.qkv = nn.ModuleList(nn.Linear(dim, dim) for _ in range(3)) if separate else nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        if causal:
            self.register_buffer("tril", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool)))

    def forward(self, x, additive_mask=None):
        b, t, d = x.shape
        h = self.heads
        if isinstance(self.qkv, nn.ModuleList):
            q, k, v = (p(x) for p in self.qkv)
        else:
            q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.reshape(b, t, h, d // h).transpose(1, 2) for z in (q, k, v))
        att = q @ k.transpose(-2, -1) / math.sqrt(d // h)
        if self.causal:
            att = att.masked_fill(~self.tril[:t, :t], float("-inf"))
        if additive_mask is not None:
            att = att + additive_mask
        y = att.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


# ----------------------------------------------------------------------- BERT
class BertLayer(nn.Module):
    def __init__(self, dim, heads, ff):
        super().__init__()
        self.att = SelfAttention(dim, heads, causal=False, separate=True)
        self.ln1 = nn.LayerNorm(dim, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(dim, ff), nn.Linear(ff, dim)
        self.ln2 = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x, mask):
        x = self.ln1(x + self.att(x, mask))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))   # exact (erf) GELU, as BERT


class TinyBert(nn.Module):
    """BERT's encoder: word + position + token-type embeddings, post-LN
    transformer layers with an attention mask from the padding mask, pooler."""

    def __init__(self, vocab=100, dim=32, heads=4, ff=64, layers=2, max_len=32):
        super().__init__()
        self.word = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.token_type = nn.Embedding(2, dim)
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(dim, heads, ff) for _ in range(layers))
        self.pool = nn.Linear(dim, dim)

    def forward(self, input_ids, token_type_ids, attention_mask):
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = self.ln(self.word(input_ids) + self.pos(pos) + self.token_type(token_type_ids))
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, mask)
        return x, torch.tanh(self.pool(x[:, 0]))


def bert(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    b, t = 2, 16
    ids = rng.integers(0, 100, (b, t), dtype=np.int64)
    types = np.zeros((b, t), np.int64)
    types[:, t // 2:] = 1
    mask = np.ones((b, t), np.int64)
    mask[1, 11:] = 0                       # the second sequence is padded
    return Case(_finish(TinyBert(), seed),
                {"input_ids": ids, "token_type_ids": types, "attention_mask": mask},
                ["last_hidden_state", "pooled"],
                ops=("Gather", "LayerNormalization", "MatMul", "Softmax", "Erf", "Tanh"))


# ---------------------------------------------------------------------- GPT-2
class GptBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.att = SelfAttention(dim, heads, causal=True)
        self.fc, self.proj = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.att(self.ln1(x))
        return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class TinyGpt2(nn.Module):
    """GPT-2's decoder: pre-LN blocks, causal self-attention, tanh-GELU MLP,
    final LayerNorm and a language-model head tied to the token embedding."""

    def __init__(self, vocab=128, dim=32, heads=4, layers=2, max_len=32):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(GptBlock(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        x = self.wte(input_ids) + self.wpe(torch.arange(t, device=input_ids.device))
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x) @ self.wte.weight.t()


def gpt2(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 128, (2, 12), dtype=np.int64)
    return Case(_finish(TinyGpt2(), seed), {"input_ids": ids}, ["logits"],
                ops=("Gather", "Where", "Softmax", "Tanh", "LayerNormalization", "MatMul"))


# ----------------------------------------------------------------------- LSTM
class LstmTagger(nn.Module):
    """A sequence tagger: embedding, a two-layer bidirectional LSTM with initial
    states given as inputs, a per-step classifier; returns the final states too."""

    def __init__(self, vocab=50, emb=16, hidden=24, tags=7):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(2 * hidden, tags)

    def forward(self, tokens, h0, c0):
        y, (h, c) = self.lstm(self.emb(tokens), (h0, c0))
        return self.out(y).log_softmax(-1), h, c


def lstm(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    b, t, hid = 2, 10, 24
    return Case(_finish(LstmTagger(), seed),
                {"tokens": rng.integers(0, 50, (b, t), dtype=np.int64),
                 "h0": 0.5 * rng.standard_normal((4, b, hid), dtype=np.float32),
                 "c0": 0.5 * rng.standard_normal((4, b, hid), dtype=np.float32)},
                ["tag_logprobs", "h_n", "c_n"], ops=("LSTM", "LogSoftmax"))


# ----------------------------------------------------------------------- UNet
def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(4, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2, self.c2 = nn.GroupNorm(4, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(F.silu(emb))[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    def __init__(self, ch, heads=2):
        super().__init__()
        self.norm, self.heads = nn.GroupNorm(4, ch), heads
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b * self.heads, 3 * c // self.heads, hh * ww).chunk(3, dim=1)
        w = torch.einsum("bci,bcj->bij", q, k) * (c // self.heads) ** -0.5
        y = torch.einsum("bij,bcj->bci", w.softmax(-1), v).reshape(b, c, hh, ww)
        return x + self.proj(y)


class TinyUNet(nn.Module):
    """A diffusion UNet's shape: sinusoidal timestep embedding, GroupNorm/SiLU
    residual blocks conditioned on it, a strided-conv downsample, self-attention
    at the bottleneck, nearest upsample and skip concatenation."""

    def __init__(self, cin=4, ch=16, temb=32):
        super().__init__()
        self.temb_dim = ch
        self.temb = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(cin, ch, 3, padding=1)
        self.down_res = ResBlock(ch, ch, temb)
        self.down = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
        self.mid_res = ResBlock(ch, 2 * ch, temb)
        self.mid_att = AttnBlock(2 * ch)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up_res = ResBlock(3 * ch, ch, temb)
        self.out = nn.Sequential(nn.GroupNorm(4, ch), nn.SiLU(), nn.Conv2d(ch, cin, 3, padding=1))

    def forward(self, x, t):
        emb = self.temb(timestep_embedding(t, self.temb_dim))
        h0 = self.down_res(self.inp(x), emb)
        h = self.mid_att(self.mid_res(self.down(h0), emb))
        h = self.up_res(torch.cat([self.up(h), h0], dim=1), emb)
        return self.out(h)


def unet(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    return Case(_finish(TinyUNet(), seed),
                {"x": rng.standard_normal((1, 4, 16, 16), dtype=np.float32),
                 "t": np.array([37.0], np.float32)},
                ["eps"],
                ops=("InstanceNormalization", "Conv", "Resize", "Einsum", "Softmax", "Sin", "Cos", "Sigmoid"))


# ----------------------------------------------------------------------- RWKV
class RwkvBlock(nn.Module):
    """An RWKV-4 block: time-mix (token shift, receptance/key/value, the WKV
    recurrence in its numerically stable form with running max) and channel-mix
    (token shift, squared ReLU, sigmoid gate). The recurrence is unrolled over the
    sequence at export; the final WKV state is an output, as in RNN-mode use."""

    def __init__(self, dim, ff):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.time_decay = nn.Parameter(torch.randn(dim) * 0.5)
        self.time_first = nn.Parameter(torch.randn(dim) * 0.5)
        self.tm_k, self.tm_v, self.tm_r = (nn.Parameter(torch.rand(dim)) for _ in range(3))
        self.key, self.value = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.recept, self.output = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.cm_k, self.cm_r = nn.Parameter(torch.rand(dim)), nn.Parameter(torch.rand(dim))
        self.ckey, self.cvalue = nn.Linear(dim, ff, bias=False), nn.Linear(ff, dim, bias=False)
        self.crecept = nn.Linear(dim, dim, bias=False)

    @staticmethod
    def shift(x):                       # x[t-1], zero at t = 0
        return F.pad(x, (0, 0, 1, -1))

    def time_mix(self, x):
        xx = self.shift(x)
        k = self.key(x * self.tm_k + xx * (1 - self.tm_k))
        v = self.value(x * self.tm_v + xx * (1 - self.tm_v))
        r = torch.sigmoid(self.recept(x * self.tm_r + xx * (1 - self.tm_r)))
        w, u = -torch.exp(self.time_decay), self.time_first
        b, t, d = x.shape
        aa = torch.zeros(b, d)
        bb = torch.zeros(b, d)
        pp = torch.full((b, d), -1e38)
        outs = []
        for i in range(t):
            kk, vv = k[:, i], v[:, i]
            ww = u + kk
            p = torch.maximum(pp, ww)
            e1, e2 = torch.exp(pp - p), torch.exp(ww - p)
            outs.append((e1 * aa + e2 * vv) / (e1 * bb + e2))
            ww = pp + w
            p = torch.maximum(ww, kk)
            e1, e2 = torch.exp(ww - p), torch.exp(kk - p)
            aa, bb, pp = e1 * aa + e2 * vv, e1 * bb + e2, p
        return self.output(r * torch.stack(outs, 1)), torch.stack([aa, bb, pp], 0)

    def channel_mix(self, x):
        xx = self.shift(x)
        k = torch.square(torch.relu(self.ckey(x * self.cm_k + xx * (1 - self.cm_k))))
        r = torch.sigmoid(self.crecept(x * self.cm_r + xx * (1 - self.cm_r)))
        return r * self.cvalue(k)


class TinyRwkv(nn.Module):
    def __init__(self, vocab=64, dim=32, ff=64, layers=2):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.ln0 = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(RwkvBlock(dim, ff) for _ in range(layers))
        self.ln_out, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.ln0(self.emb(tokens))
        states = []
        for blk in self.blocks:
            y, s = blk.time_mix(blk.ln1(x))
            x = x + y
            x = x + blk.channel_mix(blk.ln2(x))
            states.append(s)
        return self.head(self.ln_out(x)), torch.stack(states, 0)


def rwkv(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    return Case(_finish(TinyRwkv(), seed),
                {"tokens": rng.integers(0, 64, (2, 8), dtype=np.int64)},
                ["logits", "state"], ops=("Exp", "Max", "Pad", "Sigmoid", "LayerNormalization"))


# ------------------------------------------------------------------ detection
class TinyDetector(nn.Module):
    """A single-stage detector's head and post-processing: a small conv backbone,
    per-anchor class scores and box deltas, decoding against a fixed anchor grid,
    score thresholding, per-class NMS (torchvision.ops.batched_nms, which exports
    to ONNX NonMaxSuppression) and gathering of the kept boxes, scores and labels.
    The number of detections is data-dependent."""

    def __init__(self, classes=3, ch=16, size=32, stride=4, anchor=8.0):
        super().__init__()
        self.classes = classes
        self.body = nn.Sequential(nn.Conv2d(3, ch, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(ch, ch, 3, 2, 1), nn.ReLU())
        self.cls = nn.Conv2d(ch, classes, 3, padding=1)
        self.box = nn.Conv2d(ch, 4, 3, padding=1)
        g = size // stride
        ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        cx, cy = (xs.flatten() + 0.5) * stride, (ys.flatten() + 0.5) * stride
        self.register_buffer("anchors", torch.stack([cx, cy, torch.full_like(cx, anchor),
                                                     torch.full_like(cx, anchor)], 1).float())

    def forward(self, image):
        import torchvision
        f = self.body(image)
        scores = self.cls(f).sigmoid().flatten(2)[0].t()        # [A, C]
        d = self.box(f).flatten(2)[0].t()                        # [A, 4]
        a = self.anchors
        cxcy = a[:, :2] + d[:, :2] * a[:, 2:]
        wh = a[:, 2:] * torch.exp(d[:, 2:].clamp(max=4.0))
        boxes = torch.cat([cxcy - wh / 2, cxcy + wh / 2], 1)
        best, labels = scores.max(1)
        keep = torch.nonzero(best > 0.5).flatten()
        boxes, best, labels = boxes[keep], best[keep], labels[keep]
        keep = torchvision.ops.batched_nms(boxes, best, labels, 0.3)
        return boxes[keep], best[keep], labels[keep]


def detection(seed):
    import torchvision  # noqa: F401  (importing it while tracing records a call into it)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = _finish(TinyDetector(), seed)
    with torch.no_grad():                  # spread the class scores over (0.3, 0.85)
        m.cls.weight.mul_(10.0)
        m.cls.bias.mul_(10.0)
    return Case(m, {"image": rng.standard_normal((1, 3, 32, 32), dtype=np.float32)},
                ["boxes", "scores", "labels"],
                ops=("NonMaxSuppression", "NonZero", "If", "ArgMax", "Exp", "Conv"))


MODELS = {
    "resnet": resnet,
    "resnet_dynamic_batch": resnet_dynamic_batch,
    "mobilenet_v3": mobilenet_v3,
    "vit": vit,
    "bert": bert,
    "gpt2": gpt2,
    "lstm": lstm,
    "unet": unet,
    "rwkv": rwkv,
    "detection": detection,
}

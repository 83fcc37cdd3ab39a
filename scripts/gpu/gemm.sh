#!/usr/bin/env bash
# The GEMM alone (bench/gpu/README.md, "GEMM shapes"): the opencl plugin's gemm
# call (FlagOS's OpenCL GEMM, backends/opencl/ocl_gemm.c, on NVIDIA's OpenCL)
# against the cuda plugin's (cuBLASLt) on the models' products, on one GPU in
# one run, by bench/gpu/gemm_bench.c; written to $OUT/gemm.jsonl (one line a
# product and configuration) and $OUT/gemm.md (bench/gpu/gemm_report.py).
#
# Environment:
#   GEMM_SETS    which shape sets (default bert1,bert32,gpt2_1,resnet1,resnet64,square;
#                layer1: a GPT-2 block's four products at batch 1; floor: a
#                group's worth of work, a call's fixed cost; slope: K, N, M and
#                transB varied around 128x3072x768; norm1: GPT-2's and BERT's
#                products with the residual and LayerNormalization, gemm_norm;
#                resnet1p: ResNet-50's batch-1 products as ocl_conv.c pads the
#                14x14 and 7x7 stages' patch rows to 8 halves)
#   GEMM_DTYPES  f32,f16 (default)
#   GEMM_TILES   opencl tile variants to force one by one besides the rule's
#                choice (FLAGOS_OPENCL_GEMM_TILE; "all": every one; default none)
#   GEMM_EXTRA   more `NAME=VALUE ...` environments for extra opencl columns,
#                separated by ';' (e.g. "FLAGOS_OPENCL_SPLITK=1")
#   GEMM_ITERS   timed calls a product (default 100)
#   GEMM_COLD    copies of each product's B and bias taken in turn (default 1;
#                24 puts a 128x2304x768 product's weights past an H100's 50 MB
#                of L2, as a model's weights are: flagos_gemm_bench --cold)
#   FLAGOS_GPU_BUILD  the build folder (default build-gpu-bench)
set -uo pipefail
. "$(dirname "$0")/start.sh"
. "$repo/scripts/gpu/prefix.sh"
build=${FLAGOS_GPU_BUILD:-$repo/build-gpu-bench}
gpu_build "$build" "$out/gemm-build.log" flagos_backend_cuda flagos_backend_opencl flagos_gemm_bench || exit 1
say "built in $(elapsed)s"
gpu_opencl_icd || exit 1
export FLAGOS_PLUGIN_PATH=$build/backends FLAGOS_CACHE_DIR=${FLAGOS_CACHE_DIR:-/tmp/flagos-gemm-cache}

# The models' products at sequence 128 (bench/gpu/models.py), as FlagOS's
# lowerings call gemm: BERT's and GPT-2's linear layers with their bias,
# attention's batched products (Q K^T with B transposed), GPT-2's logits
# against the tied embedding (B transposed, N 50257), ResNet-50's
# convolutions as im2col products (the weights shared by the images). Times
# are the device's: each call queued behind flagos_gemm_bench's gate.
declare -A sets=(
  [bert1]="128x768x768:+ 128x3072x768:+ 128x768x3072:+ 12x128x128x64:b 12x128x64x128"
  [bert32]="4096x768x768:+ 4096x3072x768:+ 4096x768x3072:+ 384x128x128x64:b 384x128x64x128"
  [gpt2_1]="128x2304x768:+ 128x50257x768:b"
  [layer1]="128x2304x768:+ 128x768x768:+ 128x3072x768:+ 128x768x3072:+"
  [floor]="128x64x64:+ 64x64x16"
  [norm1]="128x768x768:n+ 128x768x3072:n+"
  [resnet1p]="64x3136x576 128x784x1152 256x200x2304 512x56x4608 2048x56x512 1024x200x256"
  [slope]="128x3072x64:+ 128x3072x256:+ 128x3072x1536:+ 128x1536x768:+ 128x6144x768:+ 32x3072x768:+ 64x3072x768:+ 128x3072x768:b+ 128x768x768:b+"
  [resnet1]="64x12544x147:s 64x3136x576:s 256x3136x64:s 128x784x1152:s 256x196x2304:s 512x49x4608:s 2048x49x512:s"
  [resnet64]="64x64x12544x147:s 64x64x3136x576:s 64x256x3136x64:s 64x128x784x1152:s 64x256x196x2304:s 64x512x49x4608:s"
  [square]="2048x2048x2048 4096x4096x4096"
)
shapes=()
for s in $(echo "${GEMM_SETS:-bert1,bert32,gpt2_1,resnet1,resnet64,square}" | tr ',' ' '); do
  [ -n "${sets[$s]:-}" ] || { say "no shape set '$s' (sets: ${!sets[*]})"; exit 2; }
  shapes+=(${sets[$s]})
done
tiles=${GEMM_TILES:-}
# every entry of ocl_gemm.c's k_variants
[ "$tiles" = all ] && tiles=$(seq 0 18 | tr '\n' ' ')
jl=$out/gemm.jsonl
: >"$jl"
b=("$build/flagos_gemm_bench" --iters "${GEMM_ITERS:-100}" --cold "${GEMM_COLD:-1}")
for dt in $(echo "${GEMM_DTYPES:-f32,f16}" | tr ',' ' '); do
  "${b[@]}" --backend cuda --dtype "$dt" --label cuBLASLt "${shapes[@]}" >>"$jl" 2>>"$out/gemm-errors.txt"
  "${b[@]}" --backend opencl --dtype "$dt" --label rule "${shapes[@]}" >>"$jl" 2>>"$out/gemm-errors.txt"
  for t in $tiles; do
    FLAGOS_OPENCL_GEMM_TILE=$t "${b[@]}" --backend opencl --dtype "$dt" --label "tile $t" "${shapes[@]}" >>"$jl" \
      2>>"$out/gemm-errors.txt"
  done
  IFS=';' read -ra extra <<<"${GEMM_EXTRA:-}"
  for e in "${extra[@]}"; do
    [ -n "$e" ] && env $e "${b[@]}" --backend opencl --dtype "$dt" --label "$e" "${shapes[@]}" >>"$jl" \
      2>>"$out/gemm-errors.txt"
  done
  say "$dt done"
done
python3 "$repo/bench/gpu/gemm_report.py" "$jl" >"$out/gemm.md"
cat "$out/gemm.md"
[ -s "$out/gemm-errors.txt" ] && { say "errors (gemm-errors.txt):"; head -20 "$out/gemm-errors.txt"; }
say "done in $(elapsed)s"

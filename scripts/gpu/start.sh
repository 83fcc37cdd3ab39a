# Sourced first by every script in scripts/gpu/: the repository root as the
# working directory (`repo`), the reports folder (`out`, $OUT or ./out), the
# script's clock (`elapsed`: seconds since it started) and `say MESSAGE`, which
# prints a timed line and appends it to $out/summary.txt (started empty).
t_start=$(date +%s)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo" || exit 1
out=${OUT:-$repo/out}
mkdir -p "$out"
elapsed() { echo $(($(date +%s) - t_start)); }
say() { echo "[$(elapsed)s] $*" | tee -a "$out/summary.txt"; }
: >"$out/summary.txt"

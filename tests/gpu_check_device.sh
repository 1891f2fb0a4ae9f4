#!/usr/bin/env bash
# On the lent GPU machine, in the repository root, with what tests/gpu_check_pack.py packed:
#   bash tests/gpu_check_device.sh setup          install what this call carried
#   bash tests/gpu_check_device.sh check [ARGS]   setup, then the GPU check (ARGS go to it);
#                                                 its log and table land in $OUT
# The machine's python3 (CUDA torch) runs everything; packages go into its site-packages,
# bubblewrap and MiniLM's parts into $STASH, kept while the machine stays warm.
set -u
STASH=/opt/gpucheck
OUT=${OUT:-/tmp/gpucheck-out}
mkdir -p "$STASH" "$OUT"

setup() {
  if ! command -v bwrap >/dev/null; then
    dpkg -x .gpucheck/bubblewrap_*.deb "$STASH/bubblewrap" || return 1
  fi
  export PATH="$PATH:$STASH/bubblewrap/usr/bin"
  python3 -m pip install --quiet --no-index --no-deps --no-compile \
    --disable-pip-version-check .gpucheck/*.whl || return 1
  python3 tests/gpu_check_pack.py install "$STASH" || return 1
  cache_libcuda
  # What the check depends on, for the record.
  nvidia-smi -L
  bwrap --version
  python3 -c "import sys, torch; print(sys.executable, 'torch', torch.__version__,
'CUDA', torch.version.cuda, torch.cuda.is_available())"
  ldconfig -p | grep libcuda
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  ls -l /dev/nvidia*
}

# The sandboxed worker gets no LD_LIBRARY_PATH: where only that finds the driver's libcuda,
# its folder goes into the loader cache for this check, and the check reports it as a fault
# of the grader on such hosts (see CACHED_LIBCUDA in tests/gpu_check.py).
cache_libcuda() {
  ldconfig -p | grep -q 'libcuda\.so\.1' && return 0
  for dir in ${LD_LIBRARY_PATH//:/ } /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
    if [ -e "$dir/libcuda.so.1" ]; then
      echo "libcuda.so.1 is not in the loader cache: adding $dir to it for this check"
      echo "$dir" > /etc/ld.so.conf.d/zz-gpucheck-libcuda.conf && ldconfig
      return 0
    fi
  done
  echo "libcuda.so.1 is neither in the loader cache nor on LD_LIBRARY_PATH"
}

case "${1:-}" in
  setup) setup ;;
  check)
    shift
    { setup || exit 1
      PYTHONUNBUFFERED=1 python3 tests/gpu_check.py --device cuda \
        --out "$OUT/gpu_check_table.txt" "$@"
    } 2>&1 | tee "$OUT/gpu_check.log"
    exit "${PIPESTATUS[0]}" ;;
  *) echo "usage: bash tests/gpu_check_device.sh setup|check [ARGS]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Lays out a CPU-only libtorch 2.9.0 for burn's `tch` backend (papilla-host feature `tch`) and
# prints the LIBTORCH to export. Offline build machines cannot use torch-sys's own download, and
# the only x86-64 Linux torch==2.9.0 wheel on PyPI is the CUDA 12.8 build (900 MB), so this takes
# that wheel and keeps only its CPU half:
#
#   lib/      libtorch_cpu.so, libc10.so, libgomp.so.1, libshm.so, libtorch.so -> libtorch_cpu.so,
#             and libcudart.so.12 + libcupti.so.12 (libtorch_cpu.so names them as NEEDED; they
#             load without a GPU or driver)
#   include/  the wheel's headers
#
# torch-sys links CUDA only when lib/libtorch_cuda.so exists, so leaving it out gives a build
# that runs with no GPU, driver, cuBLAS or cuDNN.
#
#   eval "$(scripts/fetch-libtorch.sh)"      # sets LIBTORCH
#   cargo build --release -p papilla-host --features tch
#
# The cache lives outside the repository: $PAPILLA_CACHE (default ~/.cache/papilla). A second
# run finds the finished folder and only prints. Needs python3 with pip and unzip.
set -euo pipefail
VERSION=2.9.0
CACHE="${PAPILLA_CACHE:-$HOME/.cache/papilla}"
DEST="$CACHE/libtorch-$VERSION-cpu"
WHEELS="$CACHE/wheels"

say() { echo "fetch-libtorch.sh: $*" >&2; }

if [ ! -f "$DEST/.complete" ]; then
  command -v unzip >/dev/null || { say "needs unzip (apt-get install unzip)"; exit 2; }
  mkdir -p "$WHEELS"
  say "downloading torch==$VERSION and its CUDA runtime stubs into $WHEELS (about 910 MB, once)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$WHEELS" \
    "torch==$VERSION" nvidia-cuda-runtime-cu12==12.8.90 nvidia-cuda-cupti-cu12==12.8.90 >&2
  torch_whl=$(ls "$WHEELS"/torch-"$VERSION"-*manylinux*x86_64.whl | head -n 1)
  rt_whl=$(ls "$WHEELS"/nvidia_cuda_runtime_cu12-12.8.90-*.whl | head -n 1)
  cupti_whl=$(ls "$WHEELS"/nvidia_cuda_cupti_cu12-12.8.90-*.whl | head -n 1)
  tmp="$DEST.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp/unpack" "$tmp/lib"
  unzip -q "$torch_whl" 'torch/include/*' 'torch/lib/libc10.so' 'torch/lib/libtorch_cpu.so' \
    'torch/lib/libgomp.so.1' 'torch/lib/libshm.so' -d "$tmp/unpack"
  unzip -q "$rt_whl" 'nvidia/cuda_runtime/lib/libcudart.so.12' -d "$tmp/unpack"
  unzip -q "$cupti_whl" 'nvidia/cuda_cupti/lib/libcupti.so.12' -d "$tmp/unpack"
  mv "$tmp/unpack/torch/include" "$tmp/include"
  mv "$tmp/unpack/torch/lib/"* "$tmp/lib/"
  mv "$tmp/unpack/nvidia/cuda_runtime/lib/libcudart.so.12" "$tmp/unpack/nvidia/cuda_cupti/lib/libcupti.so.12" "$tmp/lib/"
  # The wheel's libtorch.so pulls in libtorch_cuda.so; the CPU library serves the same symbols.
  ln -s libtorch_cpu.so "$tmp/lib/libtorch.so"
  rm -rf "$tmp/unpack"
  echo "$VERSION" > "$tmp/build-version"
  touch "$tmp/.complete"
  rm -rf "$DEST"
  mv "$tmp" "$DEST"
  say "libtorch $VERSION (CPU) laid out in $DEST"
fi
# torch-sys checks build-version against the libtorch it was written for (2.9.0).
echo "export LIBTORCH=$DEST"

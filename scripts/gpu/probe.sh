#!/usr/bin/env bash
# What a lent GPU machine offers for training, in one minute: GPU and driver, Vulkan ICDs
# (burn-wgpu's road), libcuda, nvrtc and a CUDA toolkit (what burn's cuda backend or libtorch's
# CUDA half would need), a Python with torch (the fallback), disk and memory. Prints one
# `key: value` per line and, last, `route:` with the road the kit takes (scripts/gpu/lib.sh,
# decide_route). Never fails: a missing tool is a `no`.
#
#   scripts/gpu/probe.sh | tee probe.txt
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "$here/lib.sh"

kv() { printf '%s: %s\n' "$1" "${2:-no}"; }
has_lib() { { ldconfig -p 2>/dev/null || true; } | grep -q "$1"; }

{
  kv host "$(uname -srm)"
  kv cpu_cores "$(nproc 2>/dev/null)"
  kv memory_mib "$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo 2>/dev/null)"
  kv disk_free_mib "$(df -Pm "${OUT:-.}" 2>/dev/null | awk 'NR==2 {print $4}')"
  if command -v nvidia-smi >/dev/null 2>&1; then
    kv nvidia_smi yes
    kv gpu "$(timeout 20 nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
    kv driver_version "$(timeout 20 nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
  else
    kv nvidia_smi no
  fi
  icds=""
  for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    [ -d "$d" ] && icds="$icds $(ls "$d" 2>/dev/null | tr '\n' ' ')"
  done
  kv vulkan_icds "$(echo $icds)"
  has_lib libGLX_nvidia.so.0 && kv nvidia_vulkan_library yes || kv nvidia_vulkan_library no
  has_lib 'libvulkan.so.1' && kv system_libvulkan yes || kv system_libvulkan no
  has_lib 'libcuda.so' && kv libcuda yes || kv libcuda no
  nvrtc="$( { ldconfig -p 2>/dev/null; ls /usr/local/cuda*/lib64 2>/dev/null; } | grep -o 'libnvrtc\.so[.0-9]*' | head -n 1)"
  kv nvrtc "${nvrtc:-no}"
  kv cuda_toolkit "$(ls -d /usr/local/cuda* 2>/dev/null | tr '\n' ' ' | sed 's/ $//')"
  command -v nvcc >/dev/null 2>&1 && kv nvcc "$(nvcc --version | tail -n 1)" || kv nvcc no
  if command -v python3 >/dev/null 2>&1; then
    kv python3 "$(python3 --version 2>&1)"
    kv torch "$(timeout 60 python3 -c 'import torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "no-cuda")' 2>/dev/null || echo no)"
  else
    kv python3 no
    kv torch no
  fi
} > "${TMPDIR:-/tmp}/papilla-probe.$$"
cat "${TMPDIR:-/tmp}/papilla-probe.$$"
kv route "$(decide_route "${TMPDIR:-/tmp}/papilla-probe.$$")"
rm -f "${TMPDIR:-/tmp}/papilla-probe.$$"

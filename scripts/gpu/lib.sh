# Shared by the GPU kit's scripts (sourced, not run).

# The value of `key` in a probe file (`key: value` lines), or empty.
probe_value() { sed -n "s/^$2: //p" "$1" | head -n 1; }

# The road a probe file allows, one word and a reason:
#   vulkan   an NVIDIA GPU with NVIDIA's Vulkan driver (ICD + libGLX_nvidia): burn-wgpu, the one
#            GPU backend that can be built here and carried (the binary and libvulkan.so.1)
#   torch    no NVIDIA Vulkan driver, but a Python with CUDA torch: the fallback of issue 14
#            (train in PyTorch, import the weights with burn's PyTorch reader, verify), a decision
#            to write up first, never taken silently by this kit
#   none     neither: record the probe; a GPU run needs NVIDIA's Vulkan ICD installed
decide_route() {
  local f="$1" icds lib torch
  icds="$(probe_value "$f" vulkan_icds)"
  lib="$(probe_value "$f" nvidia_vulkan_library)"
  torch="$(probe_value "$f" torch)"
  if [ "$(probe_value "$f" nvidia_smi)" != yes ]; then
    echo "none (no nvidia-smi: no NVIDIA driver)"
  elif printf '%s' "$icds" | grep -qi nvidia && [ "$lib" = yes ]; then
    echo "vulkan (NVIDIA Vulkan ICD and libGLX_nvidia.so.0)"
  elif printf '%s' "$torch" | grep -q ' cuda$'; then
    echo "torch (no NVIDIA Vulkan driver; CUDA torch present: write up the PyTorch fallback before using it)"
  else
    echo "none (NVIDIA driver without its Vulkan ICD and no CUDA torch: install NVIDIA's Vulkan ICD)"
  fi
}

# Bytes of the working tree the device tool carries (tracked and untracked, not ignored).
tree_bytes() {
  (cd "$1" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null \
    | awk '{s += $1} END {print s + 0}')
}

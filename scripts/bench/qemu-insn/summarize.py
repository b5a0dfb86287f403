#!/usr/bin/env python3
"""Summarise insn_sym TSVs: python3 summarize.py NAME=file.tsv ... > out.md"""
import re, subprocess, sys

import bisect, os
_symcache = {}
_labels = {}
LABELS = {}   # (kernel, inner label) -> count
def file_syms(path):
    """sorted [(addr, name)] from .symtab+.dynsym: FUNC/IFUNC/NOTYPE code labels"""
    if path in _symcache:
        return _symcache[path]
    out = subprocess.run(["readelf", "-sW", path], capture_output=True, text=True).stdout
    # executable sections
    secs = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True).stdout
    xsec = set()
    for m in re.finditer(r"\[\s*(\d+)\]\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S*X\S*)", secs):
        xsec.add(m.group(1))
    tab = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].endswith(":"):
            continue
        val, typ, ndx, name = f[1], f[3], f[6], f[7]
        if typ not in ("FUNC", "IFUNC", "NOTYPE") or ndx not in xsec:
            continue
        if name.startswith("$") or name.startswith(".L") or "@" in name and typ == "NOTYPE":
            continue
        if name.startswith(".") or name.startswith("GCC_except"):
            _labels.setdefault(path, {})[int(val, 16)] = name   # asm-local label
            continue
        a = int(val, 16)
        if a == 0:
            continue
        name = name.split("@")[0]
        # prefer FUNC names over NOTYPE at the same address
        size = int(f[2], 0) if f[2].isdigit() or f[2].startswith("0x") else 0
        if a not in tab or typ != "NOTYPE":
            tab[a] = (name, size)
    res = sorted(tab.items())
    _symcache[path] = res
    return res

BIN = [""]
LIBHINT = {  # glibc 2.36 aarch64 (stripped): internal code identified by disassembly
    "__xpg_strerror_r": "mem*/str* internal ifunc variants (memcpy/memmove/memset generic; verified memcpy loop)",
    "__default_morecore": "malloc internals (_int_malloc/_int_free/malloc_consolidate)",
}
_kc = {}
def _keys(path, tab):
    if path not in _kc:
        _kc[path] = [a for a, _ in tab]
    return _kc[path]

def resolve(addr, maps):
    for base, end, path in maps:
        if base <= addr < end:
            tab = file_syms(path)
            off = addr - base
            i = bisect.bisect_right(_keys(path, tab), off) - 1
            short = os.path.basename(path)
            if i < 0:
                return f"[{short}+{off:#x}]", path
            nm, size = tab[i][1]
            if size and off >= tab[i][0] + size and os.path.realpath(path) != BIN[0]:
                nm = LIBHINT.get(nm, f"(unnamed code after {nm})")
            lab = _labels.get(path, {})
            if lab:
                if path not in _symcache.get("__lsorted", {}):
                    _symcache.setdefault("__lsorted", {})[path] = sorted(lab.items())
                ls = _symcache["__lsorted"][path]
                j = bisect.bisect_right([a for a, _ in ls], off) - 1
                if j >= 0 and ls[j][0] >= tab[i][0]:
                    return (nm, ls[j][1]), path
            return nm, path
    return "[unmapped/vdso]", None

def load(path):
    cats, total, syms = {}, 0, []
    code, rawmaps = {}, []
    for line in open(path):
        if line.startswith("#code\t"):
            for kv in line.rstrip("\n").split("\t")[1:]:
                k, v = kv.split("=", 1); code[k] = v
        elif line.startswith("#map\t"):
            f = line.split()
            lo, hi = (int(x, 16) for x in f[1].split("-"))
            rawmaps.append((lo, hi, int(f[3], 16), f[6] if len(f) > 6 else ""))
    files = {}
    for lo, hi, off, p in rawmaps:
        if not p.startswith("/") or os.path.basename(p).startswith("qemu-") or "x86_64" in p or p.endswith("libinsn_sym.so"):
            continue
        b, e = files.get(p, (None, 0))
        if off == 0 and (b is None or lo < b):
            b = lo
        files[p] = (b, max(e, hi))
    binary = os.path.realpath(code.get("binary", ""))
    BIN[0] = binary
    guest_base = 0
    if binary in files and files[binary][0] is not None and "start_code" in code:
        guest_base = files[binary][0] - int(code["start_code"], 16)
    maps = [(b - guest_base, e - guest_base, p) for p, (b, e) in files.items() if b is not None]
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("#category\t") and not line.startswith("#category\tname"):
            _, k, v = line.split("\t"); cats[k] = int(v)
        elif line.startswith("#total\t"):
            total = int(line.split("\t")[2])
        elif line.startswith("#") or line.startswith("symbol\t"):
            continue
        else:
            s, c = line.rsplit("\t", 1)
            if s.startswith("@0x"):
                nm, p = resolve(int(s[1:], 16), maps)
                if isinstance(nm, tuple):
                    LABELS[nm] = LABELS.get(nm, 0) + int(c)
                    nm = nm[0]
                if p is not None and os.path.realpath(p) != binary:
                    nm = f"~{nm} [{os.path.basename(p)}]"
                else:
                    nm = nm + " [noFUNC]" if p else nm
                s = nm
            syms.append((s, int(c)))
    agg = {}
    for s, c in syms:
        agg[s] = agg.get(s, 0) + c
    syms = sorted(agg.items(), key=lambda x: -x[1])
    names = [re.sub(r"\.llvm\.\d+$", "", s) for s, _ in syms]
    dem = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                         text=True).stdout.split("\n")
    out = []
    for (s, c), d in zip(syms, dem):
        d = re.sub(r"::h[0-9a-f]{16}$", "", d)
        d = re.sub(r"\[[0-9a-f]{5,16}\]", "", d)
        if d == "_init [noFUNC]":
            d = "PLT stubs (after _init) [noFUNC]"
        out.append((d, c, s))
    agg, first = {}, {}
    for d, c, s in out:
        agg[d] = agg.get(d, 0) + c
        first.setdefault(d, s)
    out = sorted(((d, c, first[d]) for d, c in agg.items()), key=lambda x: -x[1])
    labels = dict(LABELS); LABELS.clear()
    return cats, total, out, labels

ASMK = re.compile(r"^(arm64simd_|arm64fp16_|arm64sve|sve_|sme_|apple_amx|arm64_)")
def group(d):
    dl = d.lower()
    if ASMK.search(d) and "::" not in d:
        return "tract-linalg hand-written asm kernels"
    if "tract_linalg::arm64" in d:
        return "tract-linalg arm64 Rust/intrinsics (tract_linalg::arm64::*)"
    if "tract_linalg" in d:
        return "tract-linalg other (Rust)"
    if "tract_" in d:
        return "tract other (core/nnef/data/...)"
    if re.search(r"zune|jpeg|png|image::|fdeflate|miniz|inflate|flate2|adler|crc32|gif|tiff", dl):
        return "image decode/encode (jpeg-decoder/png/fdeflate/image)"
    if d.endswith(".so.6]") or d.endswith(".so.1]") or ".so" in d.split("[")[-1]:
        return "shared libs (libc/ld.so/libm/libgcc; names approximate)"
    if re.search(r"^(mem|str|__mem|__str|_int_malloc|_int_free|malloc|free|realloc|calloc|cfree)", d) \
            or "alloc::" in d or "__rust_" in d or "__rdl_" in d:
        return "allocator / mem* in main binary"
    if "sha2::" in d or "ed25519" in d or "curve25519" in d:
        return "crypto (bundle signature/hash check)"
    if "ndarray::" in d:
        return "ndarray (generic loops, mostly called from tract)"
    return "rest"

_alias = {}
def aliases(binary):
    """name -> number of other FUNC symbols at the same address (rustc merge-functions aliases)"""
    if binary in _alias:
        return _alias[binary]
    out = subprocess.run(["readelf", "-sW", binary], capture_output=True, text=True).stdout
    byaddr, n2a = {}, {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[3] == "FUNC" and f[6] != "UND":
            byaddr.setdefault(f[1], set()).add(f[7]); n2a[f[7]] = f[1]
    _alias[binary] = {n: len(byaddr[a]) - 1 for n, a in n2a.items()}
    return _alias[binary]

def fmt(n):
    return f"{n:,}"

def main():
    runs = []
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        runs.append((name, path) + load(path))
    for name, path, cats, total, syms, labels in runs:
        print(f"\n## {name}\n\nsource: `{path}`  \ntotal executed guest instructions: **{fmt(total)}** ({total/1e9:.3f} G)\n")
        print("| # | symbol (demangled, hash stripped) | instructions | share |\n|---|---|---:|---:|")
        for i, (d, c, s) in enumerate(syms[:30], 1):
            dd = d if len(d) < 200 else d[:197] + "..."
            dd = dd.replace("|", "\\|")
            na = aliases(BIN[0]).get(s, 0) if BIN[0] else 0
            suf = f" (+{na} aliased names, same code)" if na else ""
            print(f"| {i} | `{dd}`{suf} | {fmt(c)} | {100*c/total:.2f}% |")
        groups = {}
        for d, c, s in syms:
            groups[group(d)] = groups.get(group(d), 0) + c
        print("\n| group | instructions | share |\n|---|---:|---:|")
        for g, c in sorted(groups.items(), key=lambda x: -x[1]):
            print(f"| {g} | {fmt(c)} | {100*c/total:.2f}% |")
        kern = [(d, c) for d, c, s in syms if group(d).startswith("tract-linalg hand")
                or group(d).startswith("tract-linalg arm64")]
        print("\ntract-linalg arm64 kernel symbols executed (asm kernels + tract_linalg::arm64 Rust):\n")
        for d, c in kern[:25]:
            if c < total * 1e-5: break
            print(f"- `{d}`: {fmt(c)} ({100*c/total:.2f}%)")
        if not kern:
            print("- (none)")
        if labels:
            print("\nhottest inner labels of asm kernels (kernel / local label: insns from TBs starting there):\n")
            for (k, l), c in sorted(labels.items(), key=lambda x: -x[1])[:8]:
                if c < total * 1e-4: break
                print(f"- `{k}` / `{l}`: {fmt(c)}")
        print("\n| category | count | per 1000 insns |\n|---|---:|---:|")
        for k, v in cats.items():
            print(f"| {k} | {fmt(v)} | {1000*v/total:.2f} |")

main()

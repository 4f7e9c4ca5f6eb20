"""Makes the PyPI Linux `torch` wheel importable on a CPU-only machine without the NVIDIA packages.

The PyPI x86_64 torch wheel is built with CUDA: `libtorch_cpu.so`, `libtorch_cuda.so`,
`libtorch_python.so` ... list `libcudart.so.13`, `libcublas.so.13`, `libcudnn.so.9`, `libnccl.so.2`
and friends as DT_NEEDED, so `import torch` fails unless the ~3 GB of `nvidia-*` wheels (plus the
1 GB `triton`) are installed. None of that code runs on CPU. This script writes tiny stand-ins for
those libraries into `torch/lib` (which is on the RPATH of every torch library via `$ORIGIN`):
one shared object per missing SONAME that defines every symbol torch imports from it, with the
symbol versions torch asks for. Every stub function returns 100 (`cudaErrorNoDevice` in the CUDA
runtime), so `torch.cuda.is_available()` is False and CPU code paths never touch them.

usage: python torch_cpu_stubs.py [--cc CC]   (run with the venv's python that has torch installed)
Needs `readelf` (binutils) and a C compiler. Idempotent: rewrites the same stubs.
"""
import argparse
import ctypes
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict

# Libraries torch opens itself with dlopen, only when CUDA work is requested: not stubbed.
LAZY = {"libtorch_cuda_linalg.so", "libcaffe2_nvrtc.so"}
STUB_MARKER = "prism-cpu-stub"
# Libraries whose symbols carry no version: which stub gets an unversioned symbol.
PREFIX_OWNER = [("nccl", "libnccl.so.2"), ("cusparseLt", "libcusparseLt.so.0"),
                ("cuFile", "libcufile.so.0"), ("nvshmem", "libnvshmem_host.so.3")]


def torch_lib_dir():
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        sys.exit("torch is not installed in this interpreter")
    return os.path.join(os.path.dirname(spec.origin), "lib")


def readelf(args, path):
    return subprocess.run(["readelf", "-W", *args, path], check=True, capture_output=True,
                          text=True).stdout


def needed(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", readelf(["-d"], path))


def defined_and_undefined(path):
    """(defined names, [(name, version or None, type)] undefined, non-weak)."""
    defined, undefined = set(), []
    for line in readelf(["--dyn-syms"], path).splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].endswith(":"):
            continue
        _, _, _, typ, bind, _, ndx, name = parts[:8]
        base, _, version = name.partition("@")
        version = version.lstrip("@").split(" ")[0] or None
        if ndx == "UND":
            if bind != "WEAK" and base:
                undefined.append((base, version, typ))
        else:
            defined.add(base)
    return defined, undefined


def version_files(path):
    """Version name -> the file (SONAME) that must define it, from the version-needs section."""
    out, current = {}, None
    for line in readelf(["-V"], path).splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and current:
            out[m.group(1)] = current
    return out


def system_path(soname):
    """Path of a system library by SONAME (the usual directories, then `ldconfig -p`)."""
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib",
              "/usr/lib"):
        path = os.path.join(d, soname)
        if os.path.exists(path):
            return path
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(rf"^\s*{re.escape(soname)} \(.*x86-64.*\) => (\S+)$", out, re.M)
    return m.group(1) if m else None


def is_stub(path):
    try:
        with open(path, "rb") as f:
            return STUB_MARKER.encode() in f.read()
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    args = ap.parse_args()
    lib = torch_lib_dir()
    torch_libs = sorted(f for f in os.listdir(lib) if ".so" in f and not is_stub(os.path.join(lib, f)))
    loaded = [f for f in torch_libs if f not in LAZY and f.startswith(("libtorch", "libc10", "libshm"))]
    # The missing SONAMEs (closure over the torch libraries that import torch loads).
    missing = set()
    for f in loaded:
        for n in needed(os.path.join(lib, f)):
            if n in torch_libs or system_path(n):
                continue
            if os.path.exists(os.path.join(lib, n)) and not is_stub(os.path.join(lib, n)):
                continue
            missing.add(n)
    if not missing:
        print("torch_cpu_stubs: nothing to stub")
        return
    # Symbols that resolve without stubs: defined by a torch library, by a system library that a
    # torch library needs (libstdc++, libgomp, ...), or by the interpreter (the Python C API).
    defined_anywhere = set()
    undefined = []
    vfile = {}
    system_libs = set()
    for f in torch_libs:
        d, u = defined_and_undefined(os.path.join(lib, f))
        defined_anywhere |= d
        if f in loaded:
            undefined += u
            vfile.update(version_files(os.path.join(lib, f)))
        system_libs |= {n for n in needed(os.path.join(lib, f)) if n not in torch_libs and n not in missing}
    for n in sorted(system_libs):
        path = system_path(n)
        if path:
            defined_anywhere |= defined_and_undefined(path)[0]
    process = ctypes.CDLL(None)
    # Assign each symbol to its stub: versioned ones to the file that owns the version,
    # unversioned ones (NCCL, cuSPARSELt, cuFile export none) by name prefix, else to one stub.
    per_lib = defaultdict(dict)  # soname -> {(name, version): type}
    unversioned_libs = sorted(m for m in missing if m not in vfile.values())
    fallback = (unversioned_libs or sorted(missing))[0]
    for name, version, typ in undefined:
        if name in defined_anywhere:
            continue
        if version is not None:
            owner = vfile.get(version)
            if owner not in missing:
                continue  # glibc, libstdc++, ... provided by the system
            per_lib[owner][(name, version)] = typ
        else:
            if hasattr(process, name):
                continue
            owner = next((so for prefix, so in PREFIX_OWNER if name.startswith(prefix) and so in missing),
                         fallback)
            per_lib[owner][(name, None)] = typ
    with tempfile.TemporaryDirectory() as tmp:
        for soname in sorted(missing):
            syms = per_lib.get(soname, {})
            versions = sorted({v for (_, v) in syms if v} | {v for v, o in vfile.items() if o == soname})
            c_lines = [f'const char prism_stub_marker[] = "{STUB_MARKER} {soname}";']
            for (name, _), typ in sorted(syms.items()):
                if typ == "OBJECT":
                    c_lines.append(f"char {name}[256] __attribute__((aligned(64)));")
                else:
                    c_lines.append(f"long {name}(void) {{ return 100; }}")
            c_path = os.path.join(tmp, "stub.c")
            with open(c_path, "w") as fh:
                fh.write("\n".join(c_lines) + "\n")
            cmd = [args.cc, "-shared", "-fPIC", "-O0", "-w", "-o", os.path.join(lib, soname),
                   f"-Wl,-soname,{soname}", c_path]
            if versions:
                # One node per version; unversioned symbols (and the marker) join the first node,
                # which still satisfies unversioned references (they bind to the default version).
                script = []
                for i, v in enumerate(versions):
                    names = sorted(n for (n, vv) in syms if vv == v)
                    if i == 0:
                        names += sorted(n for (n, vv) in syms if vv is None) + ["prism_stub_marker"]
                    body = " ".join(f"{n};" for n in names)
                    script.append(f"{v} {{ global: {body} }};")
                vs = os.path.join(tmp, "vs.map")
                with open(vs, "w") as fh:
                    fh.write("\n".join(script) + "\n")
                cmd.append(f"-Wl,--version-script={vs}")
            subprocess.run(cmd, check=True)
            print(f"torch_cpu_stubs: {soname}: {len(syms)} symbols, versions {versions or '-'}")


if __name__ == "__main__":
    main()

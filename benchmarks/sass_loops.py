"""SASS of the attention kernel without a GPU: compile it for sm_90 with the installed Triton
(its bundled ptxas), then count the instructions of each loop body (backward branch to its
head): the sink and dense passes, and the walk. The numbers in BENCHMARKS.md ("What changed in
the attention kernel") came from Triton 3.6, the device's version:

    pip install --no-deps --target /tmp/t36 triton==3.6.0
    PYTHONPATH=/tmp/t36 python benchmarks/sass_loops.py [NAME=int ...]   # e.g. STOP=0 STOP_EVERY=2
    PYTHONPATH=/tmp/t36 python benchmarks/sass_loops.py --module _ab_prev   # an earlier copy
    SASS_OUT=/tmp/k.sass PYTHONPATH=/tmp/t36 python benchmarks/sass_loops.py   # also the whole SASS

Shapes and specializations are those of the 128K Llama benchmark (bf16, D 128, strides and
lengths divisible by 16, one table row per query head).
"""
import collections
import importlib
import inspect
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from s2o_compile.kernels import triton_s2o as T

POINTERS = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "O": "*bf16", "TABLE": "*i32",
            "OFFSETS": "*i32", "VISITED": "*i32"}
FLOATS = ("qk_scale", "tau")
VALUES = dict(N=131072, Q0=0, H_Q=32, GROUP=4, T_DIV=1, N_MT=2048, TOTAL=2 ** 22, SINK=64, LOCAL=512,
              stride_qb=2 ** 24, stride_qh=2 ** 19, stride_qn=128, stride_kb=2 ** 22,
              stride_kh=2 ** 19, stride_kn=128, stride_vb=2 ** 22, stride_vh=2 ** 19, stride_vn=128)
CONSTEXPRS = dict(SEG=2048, BM=64, HPT=1, BN=64, D=128, D_IN=128, IEEE=False, REMAINING=True,
                  MEAN=False, CHUNK=8, NUM_STAGES=3, WHOLE_TILES=True, STOP=True,
                  LONGEST_FIRST=True, OFF32=True, STOP_EVERY=2, KEY_ORDER=False,
                  CHUNKED=False)
COUNTED = ("HGMMA", "MUFU", "BAR.SYNC", "SHFL", "LDGSTS", "LDS", "STL", "LDL", "FMUL", "FFMA",
           "FADD", "FMNMX", "FSEL")


def compile_kernel(overrides, module=T):
    params = list(inspect.signature(module._s2o_attention_kernel.fn).parameters)
    consts = {**CONSTEXPRS, **overrides}
    sig, attrs = {}, {}
    for i, p in enumerate(params):
        if p in POINTERS:
            sig[p] = POINTERS[p]
        elif p in consts:
            sig[p] = "constexpr"
        elif p in FLOATS:
            sig[p] = "fp32"
        elif VALUES.get(p) == 1:  # Triton specializes an int argument equal to 1
            sig[p], consts[p] = "constexpr", 1
        else:
            sig[p] = "i32"
        if p in POINTERS or (p in VALUES and VALUES[p] % 16 == 0):
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=module._s2o_attention_kernel, signature=sig, attrs=attrs,
                    constexprs={p: v for p, v in consts.items() if p in params})
    return triton.compile(src, target=GPUTarget("cuda", 90, 128),
                          options=dict(num_warps=4, num_stages=consts["NUM_STAGES"]))


def tool(name):
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def opcode(instruction):
    """'@!P0 LDGSTS.E.BYPASS.128 [R1], ...' -> 'LDGSTS.E.BYPASS.128'."""
    words = instruction.split()
    return words[1] if words[0].startswith("@") else words[0]


def loops(sass):
    """(head, end, instructions) of every loop: a branch back to a lower address."""
    ins = [(int(m.group(1), 16), m.group(2).strip()) for m in
           (re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line) for line in sass.splitlines()) if m]
    at = {a: i for i, (a, _) in enumerate(ins)}
    for i, (a, text) in enumerate(ins):
        target = re.search(r"BRA.*0x([0-9a-f]+)\s*$", text)
        if target and int(target.group(1), 16) < a and int(target.group(1), 16) in at:
            yield int(target.group(1), 16), a, [t for _, t in ins[at[int(target.group(1), 16)]:i + 1]]


def main():
    args = sys.argv[1:]
    module = T
    if args[:1] == ["--module"]:  # a copy of the kernels module in s2o_compile/kernels
        module = importlib.import_module(f"s2o_compile.kernels.{args[1]}")
        args = args[2:]
    overrides = {k: int(v) for k, v in (arg.split("=") for arg in args)}
    kernel = compile_kernel(overrides, module)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        sass = subprocess.run([tool("cuobjdump"), "-sass", f.name], capture_output=True,
                              text=True, check=True).stdout
        res = subprocess.run([tool("cuobjdump"), "-res-usage", f.name], capture_output=True,
                             text=True, check=True).stdout
    if os.environ.get("SASS_OUT"):  # the whole SASS, to read a loop's order
        open(os.environ["SASS_OUT"], "w").write(sass)
    registers = re.findall(r"REG:(\d+)", res)
    print(f"triton {triton.__version__}, {overrides or 'defaults'}: registers {registers}, "
          f"shared memory {kernel.metadata.shared} bytes")
    for head, end, body in loops(sass):
        counts = collections.Counter(op for t in body for op in COUNTED if op in opcode(t))
        print(f"loop {head:#x}-{end:#x}: {len(body)} instructions, "
              + ", ".join(f"{op} {counts[op]}" for op in COUNTED))


if __name__ == "__main__":
    main()

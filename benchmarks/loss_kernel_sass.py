"""What the loss kernel costs per logit, read off its machine code: no GPU needed.

    python benchmarks/loss_kernel_sass.py                                  # this checkout's kernel
    git show 896288d:nanogpt/_softcap_ce_kernel.py > /tmp/v2.py
    python benchmarks/loss_kernel_sass.py --kernel /tmp/v2.py              # an older version

Compiles ``softcap_ce_kernel`` for an H100/H200 (sm_90) with the installed Triton and its
bundled ptxas, disassembles it with the bundled nvdisasm, and prints each loop's instructions
(each loop body handles BLOCK / (32 · num_warps) logits per thread) and how many go to the
special-function unit (MUFU: exp2, reciprocal, tanh). With 128 lanes issuing per SM and cycle and
16 MUFU lanes, instructions / 128 and MUFU / 16 per logit bound the kernel's speed.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARG_TYPES = {"logits_ptr": "*bf16", "targets_ptr": "*i64", "loss_ptr": "*fp32", "g8_ptr": "*fp8e5"}
INT_ARGS = ("row_stride", "n_valid", "n_total")


def compile_sass(
    kernel_path: Path, block: int, num_warps: int, write_f8: bool, hw_tanh: bool = True
) -> str:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    spec = importlib.util.spec_from_file_location("loss_kernel", kernel_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = module.softcap_ce_kernel
    consts = {"HAS_CAP": True, "SHIFT_BY_CAP": True, "BLOCK": block}
    if "WRITE_F8" in fn.arg_names:
        consts["WRITE_F8"] = write_f8
    if "HW_TANH" in fn.arg_names:  # version 4 on: tanh as one instruction, as on a GPU
        consts["HW_TANH"] = hw_tanh
    signature = {n: ARG_TYPES.get(n, "i32" if n in INT_ARGS else "fp32") for n in fn.arg_names}
    signature.update({c: "constexpr" for c in consts})
    source = ASTSource(
        fn=fn,
        signature=signature,
        constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()},
    )
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps}
    )
    nvdisasm = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm"
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        return subprocess.run(
            [str(nvdisasm), "-c", str(cubin)], capture_output=True, text=True, check=True
        ).stdout


def loops(sass: str) -> list[tuple[str, int, int]]:
    """(label, instructions, MUFU instructions) of every loop (a branch back to a label)."""
    instr_re = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
    instrs, label_at, pending = [], {}, []
    for line in sass.splitlines():
        label = re.match(r"^\s*\.(L_x_\d+):", line)
        if label:
            pending.append(label.group(1))
            continue
        m = instr_re.search(line)
        if m:
            address = int(m.group(1), 16)
            instrs.append((address, m.group(2)))
            label_at.update({p: address for p in pending})
            pending = []
    found = []
    for address, text in instrs:
        branch = re.search(r"BRA\s+(?:`\()?\.?(L_x_\d+)", text)
        if branch and label_at.get(branch.group(1), 1 << 62) < address:
            body = [t for a, t in instrs if label_at[branch.group(1)] <= a <= address]
            found.append((branch.group(1), len(body), sum("MUFU" in t for t in body)))
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernel", default=str(ROOT / "nanogpt" / "_softcap_ce_kernel.py"))
    p.add_argument("--block", type=int, default=2048)
    p.add_argument("--num-warps", type=int, default=8)
    p.add_argument("--fp8", action="store_true", help="the FP8 head's variant (WRITE_F8)")
    p.add_argument(
        "--exact-tanh",
        action="store_true",
        help="version 4 on: tanh from exp2 and a reciprocal, as under the interpreter (HW_TANH off)",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    sass = compile_sass(
        Path(args.kernel), args.block, args.num_warps, args.fp8, not args.exact_tanh
    )
    per_thread = args.block // (32 * args.num_warps)
    total = collections.Counter(re.findall(r"MUFU\.(\w+)", sass))
    print(f"{args.kernel}: {sum(total.values())} MUFU instructions in all ({dict(total)})")
    print("| loop | instructions | per logit | MUFU per logit |\n|---|---|---|---|")
    for label, count, mufu in loops(sass):
        print(f"| {label} | {count} | {count / per_thread:.1f} | {mufu / per_thread:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

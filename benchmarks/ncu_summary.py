"""Where a CUDA kernel's time goes, from Nsight Compute's per-instruction export: stall reasons and hot spots.

Profile on the GPU machine, then export the source page as CSV (sampling needs ``--set full``)::

    ncu --set full -k regex:"tile_pass|sigma_clip" --launch-skip 3 --launch-count 3 -o prof \\
        python benchmarks/gpu_kernels.py --batches 2
    ncu -i prof.ncu-rep --page source --print-source sass --csv > prof.csv

and summarise it anywhere (no GPU, no ncu needed)::

    python benchmarks/ncu_summary.py prof.csv [--top 25] [--block 60]

For each kernel (launches of the same kernel are added up): the warp-stall samples by reason, the
instructions with the most samples (with their executions and main reasons), and the samples and executions
of each block of ``--block`` consecutive SASS instructions -- loops show up as blocks whose instructions run
far more often than the rest.

With the kernels compiled with ``-lineinfo`` (``BRAGGSIEVE_CUDA_LINEINFO=1`` in the profiled process) the same
numbers come per line of engine/cuda/kernels.py's CUDA source: export with ``--print-source cuda,sass`` and
summarise with ``--lines``, which prints each kernel's lines with the most samples and their text (from the
kernels.py beside this script: profile the same version)::

    BRAGGSIEVE_CUDA_LINEINFO=1 ncu --set full --import-source yes -k regex:"tile_pass" ... -o prof python ...
    ncu -i prof.ncu-rep --page source --print-source cuda,sass --csv > lines.csv
    python benchmarks/ncu_summary.py lines.csv --lines [--top 40]
"""
from __future__ import annotations

import argparse
import collections
import csv
import importlib.util
import os
import sys

SAMPLES = "Warp Stall Sampling (All Samples)"
EXECUTED = "Instructions Executed"


def _number(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def read_kernels(path: str) -> dict[str, list[dict[str, str]]]:
    """{kernel name: its SASS rows, summed over its launches} from an ``ncu --page source --csv`` export."""
    kernels: dict[str, list[dict[str, str]]] = {}
    name, header, rows = None, None, []

    def keep():
        if name is None:
            return
        known = kernels.setdefault(name, [])
        if not known:
            known.extend(rows)
            return
        for mine, row in zip(known, rows):  # another launch of the same kernel: add its numbers
            for key, value in row.items():
                if key in (SAMPLES, EXECUTED) or key.startswith("stall_"):
                    mine[key] = str(_number(mine.get(key, "0")) + _number(value))

    with open(path, newline="") as handle:
        for record in csv.reader(handle):
            if record and record[0] == "Kernel Name":
                keep()
                name, header, rows = record[1], None, []
            elif record and record[0] == "Address":
                header = record
            elif header and record:
                rows.append(dict(zip(header, record)))
    keep()
    return kernels


def read_source_lines(path: str) -> dict[str, tuple[collections.Counter, collections.Counter]]:
    """{kernel: (stall samples, executed warp instructions) by CUDA source line}, summed over the kernel's
    launches, from an ``ncu --page source --print-source cuda,sass --csv`` export (one summary row per source
    line, with its SASS rows after it)."""
    kernels: dict[str, tuple[collections.Counter, collections.Counter]] = {}
    name, header = None, None
    with open(path, newline="") as handle:
        for record in csv.reader(handle):
            if not record:
                continue
            if record[0] == "Function Name":
                name, header = record[1], None
            elif record[0] == "Line No":
                header = {key: i for i, key in reversed(list(enumerate(record)))}  # first column of each name
            elif header and name and record[0].isdigit():
                samples, executed = kernels.setdefault(name, (collections.Counter(), collections.Counter()))
                samples[int(record[0])] += _number(record[header[SAMPLES]])
                executed[int(record[0])] += _number(record[header[EXECUTED]])
    return kernels


def source_text() -> list[str]:
    """The lines of the CUDA source the engine compiles, read without CuPy (the cuda package's __init__ needs
    it, kernels.py does not); empty when braggsieve cannot be imported."""
    try:
        import braggsieve.engine as engine

        path = os.path.join(os.path.dirname(engine.__file__), "cuda", "kernels.py")
        spec = importlib.util.spec_from_file_location("braggsieve.engine.cuda.kernels", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # the text is a convenience: print the line numbers without it
        return []
    return module.SOURCE.splitlines()


def summarise_lines(name: str, samples, executed, top: int, text: list[str], out=sys.stdout) -> None:
    total, total_executed = sum(samples.values()) or 1.0, sum(executed.values()) or 1.0
    print(f"== {name[:110]}", file=out)
    print(f"   {total:.0f} stall samples, {total_executed:.0f} warp instructions executed; top {top} source lines "
          "(line: samples, executions, text):", file=out)
    for line, count in samples.most_common(top):
        code = text[line - 1].strip()[:80] if 0 < line <= len(text) else ""
        print(f"   {line:5d}: {100 * count / total:5.1f} % {100 * executed[line] / total_executed:5.1f} %  {code}",
              file=out)


def summarise(name: str, rows: list[dict[str, str]], top: int, block: int, out=sys.stdout) -> None:
    samples = [_number(r.get(SAMPLES, "0")) for r in rows]
    executed = [_number(r.get(EXECUTED, "0")) for r in rows]
    total, total_executed = sum(samples) or 1.0, sum(executed) or 1.0
    reasons = collections.Counter()
    for row in rows:
        for key, value in row.items():
            if key.startswith("stall_") and "Not Issued" not in key:
                reasons[key[len("stall_"):]] += _number(value)
    print(f"== {name[:110]}", file=out)
    print(f"   {len(rows)} SASS instructions, {total:.0f} stall samples, {total_executed:.0f} warp instructions "
          f"executed", file=out)
    print("   stall reasons: " + ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in reasons.most_common(8)),
          file=out)
    print(f"   top {top} instructions (index: samples, executions, SASS, main reasons):", file=out)
    for i in sorted(range(len(rows)), key=lambda k: -samples[k])[:top]:
        mine = collections.Counter({k[len("stall_"):]: _number(v) for k, v in rows[i].items()
                                    if k.startswith("stall_") and "Not Issued" not in k})
        main = ", ".join(f"{k} {int(v)}" for k, v in mine.most_common(2) if v)
        print(f"   {i:6d}: {100 * samples[i] / total:5.1f} % {executed[i]:12.0f}  {rows[i].get('Source', '')[:56]:56s}"
              f"  {main}", file=out)
    print(f"   blocks of {block} instructions with >= 1 % of the samples or executions:", file=out)
    for start in range(0, len(rows), block):
        s, e = sum(samples[start:start + block]), sum(executed[start:start + block])
        if s / total >= 0.01 or e / total_executed >= 0.01:
            print(f"   {start:6d}-{min(start + block, len(rows)) - 1:6d}: samples {100 * s / total:5.1f} %, "
                  f"executions {100 * e / total_executed:5.1f} %", file=out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="output of: ncu -i REPORT --page source --print-source sass --csv")
    parser.add_argument("--top", type=int, default=25, help="instructions listed per kernel (default 25)")
    parser.add_argument("--block", type=int, default=60, help="instructions per block of the map (default 60)")
    parser.add_argument("--lines", action="store_true",
                        help="the CSV is an export with --print-source cuda,sass: summarise by source line")
    args = parser.parse_args(argv)
    if args.lines:
        by_line = read_source_lines(args.csv)
        if not by_line:
            print(f"{args.csv}: no source lines found (expected --print-source cuda,sass of kernels compiled "
                  "with -lineinfo)", file=sys.stderr)
            return 2
        text = source_text()
        for name, (samples, executed) in by_line.items():
            summarise_lines(name, samples, executed, args.top, text)
        return 0
    kernels = read_kernels(args.csv)
    if not kernels:
        print(f"{args.csv}: no kernel found (expected the CSV of ncu's source page)", file=sys.stderr)
        return 2
    for name, rows in kernels.items():
        summarise(name, rows, args.top, args.block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
"""
from __future__ import annotations

import argparse
import collections
import csv
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
    args = parser.parse_args(argv)
    kernels = read_kernels(args.csv)
    if not kernels:
        print(f"{args.csv}: no kernel found (expected the CSV of ncu's source page)", file=sys.stderr)
        return 2
    for name, rows in kernels.items():
        summarise(name, rows, args.top, args.block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Paired comparison of two rows of ``bench_gmm.py``: is row A ahead of row B on a cell, or within the noise of the
problems?

Every problem and method is seeded on its own, so two rows run on the same cell (in one run or in several, from the
``problems.jsonl`` of each run's --out folder) form pairs. For each cell both rows have, the table gives both medians
of max-SW2 and of mode TV (the benchmark's figures), the difference of medians A - B with a 95 % paired bootstrap
interval (resampling problems, seeded), and on how many problems A scores lower:

    python scripts/compare_bench_gmm.py benchmarks/runs/bench_gmm_terminal benchmarks/runs/bench_gmm_equal8 \\
        --a "<row A>" --b "<row B>"
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from compare_evaluate import comparison_cli, paired_difference

METRICS = ("max_sw2", "mode_tv")


def load_problems(run_dirs: list[str]) -> dict:
    """{(setting, d_x, d_y, problem, row): scores} from each run's ``problems.jsonl`` (a later run wins a repeat)."""
    out = {}
    for run in run_dirs:
        path = Path(run) / "problems.jsonl"
        if not path.is_file():
            raise SystemExit(f"{path}: no per-problem log here (bench_gmm.py writes one in its --out folder)")
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                cell = (r["setting"], r["d_x"], r["d_y"], r["problem"])
                out.update({(*cell, row): scores for row, scores in r["scores"].items()})
    return out


def compare(problems: dict, row_a: str, row_b: str) -> list[dict]:
    """One record per (cell, metric) over the problems both rows have."""
    cells = sorted({key[:3] for key in problems if key[4] == row_a})
    out = []
    for cell in cells:
        both = sorted(key[3] for key in problems if key[:3] == cell and key[4] == row_a
                      and (*cell, key[3], row_b) in problems)
        for metric in METRICS if both else ():
            a = np.array([problems[(*cell, p, row_a)][metric] for p in both])
            b = np.array([problems[(*cell, p, row_b)][metric] for p in both])
            diff, low, high = paired_difference(a, b, statistic=np.median)
            out.append({"cell": f"{cell[0]} {cell[1]}/{cell[2]}", "metric": metric, "problems": len(both),
                        "a": float(np.median(a)), "b": float(np.median(b)), "difference": diff, "low": low,
                        "high": high, "a_lower": int((a < b).sum())})
    return out


def markdown(records: list[dict], row_a: str, row_b: str) -> str:
    lines = [f"| cell | metric | problems | A: {row_a} (median) | B: {row_b} (median) | A - B (95 % interval) | "
             "A lower on |", "|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['cell']} | {r['metric']} | {r['problems']} | {r['a']:.3f} | {r['b']:.3f} | "
                     f"{r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] | {r['a_lower']} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    return comparison_cli(argv, __doc__, "bench_gmm.py", load_problems, compare, markdown, "problem")


if __name__ == "__main__":
    main()

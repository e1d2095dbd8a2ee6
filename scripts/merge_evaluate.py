"""Merge ``evaluate.py`` runs over disjoint held-out digits into one table (means weighted by images).

Each query's noise depends on its index only, so ``--first 10 --images 10`` extends a 10-image run to 20
exactly as one 20-image run would have drawn them (the seconds per image come from each run's machine load):

    python scripts/merge_evaluate.py outputs/a/results.json outputs/b/results.json --out outputs/merged
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import markdown


def merge(runs: list[dict]) -> dict:
    """{prior: {"cells": {cell: weighted mean metrics}, "images": total}} over runs that cover a cell. A metric that
    only some of a cell's runs have (one added to evaluate.py later) is left out of that cell."""
    totals: dict = {}
    for run in runs:
        images = run["meta"]["images"]
        for prior, table in run["results"].items():
            out = totals.setdefault(prior, {"cells": {}, "images": {}, "_per_metric": {}})
            for cell, metrics in table["cells"].items():
                acc, seen = out["cells"].setdefault(cell, {}), out["_per_metric"].setdefault(cell, {})
                for k, v in metrics.items():
                    acc[k] = acc.get(k, 0.0) + v * images
                    seen[k] = seen.get(k, 0) + images
                out["images"][cell] = out["images"].get(cell, 0) + images
    for out in totals.values():
        seen_all = out.pop("_per_metric")
        for cell, acc in out["cells"].items():
            for k in list(acc):
                if seen_all[cell][k] < out["images"][cell]:
                    del acc[k]
                else:
                    acc[k] /= out["images"][cell]
    return totals


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="results.json files of evaluate.py")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    merged = merge([json.loads(Path(p).read_text()) for p in args.runs])
    table = markdown(merged)
    print(table)
    for prior, out in merged.items():
        print(f"{prior}: images per cell {sorted(set(out['images'].values()))}")
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps({"sources": args.runs, "results": merged}, indent=2))
        (out_dir / "results.md").write_text(table + "\n")
    return merged


if __name__ == "__main__":
    main()

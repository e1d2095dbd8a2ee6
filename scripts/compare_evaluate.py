"""Paired comparison of two rows of ``evaluate.py``: is row A ahead of row B, or within the noise of the digits?

Every query's noise depends only on its index, so two rows run on the same held-out digits (in one run or in
several, e.g. ``--first 20 --images 20`` beside a 20-image run) form pairs. For each prior and mask kind, on the
digits both rows have, the table gives both means, their difference A - B and a 95 % paired bootstrap interval of
that difference (resampling digits, seeded):

    python scripts/compare_evaluate.py outputs/run1 outputs/run2 --a "VIPaint-2 Langevin 50" --b DPS

Runs that logged the calibration terms (``vipaint_pl.metrics.calibration_terms``) add "error / spread": each row's
squared error to the truth over its squared spread, summed over the digits (1: calibrated; above: too narrow; below:
too wide), with each row's own 95 % interval beside its value.

``--per-image METRIC`` then lists, per prior and mask, the digits on which the rows differ in that metric, largest
difference first, with each one's share of the summed difference: which digits carry a gap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

METRICS = ("psnr", "st_lpips", "diversity", "digit_accuracy", "distinct_digits", "diversity_same_digit",
           "squared_error", "squared_spread")


def load_images(run_dirs: list[str]) -> dict:
    """{(prior, mask, method, image): metrics} from each run's ``images.jsonl``, or from the per-image lists of its
    ``results.json`` (runs older than the log: image i of a list is digit ``first + i``). A later run wins a repeat."""
    out = {}
    for run in run_dirs:
        path, results = Path(run) / "images.jsonl", Path(run) / "results.json"
        if not path.is_file() and results.is_file():
            saved = json.loads(results.read_text())
            first = saved["meta"].get("first", 0)
            for prior, table in saved["results"].items():
                for cell, rows in table.get("per_image", {}).items():
                    mask, method = cell.split("/", 1)
                    out.update({(prior, mask, method, first + i): r for i, r in enumerate(rows)})
            continue
        if not path.is_file():
            raise SystemExit(f"{path}: no per-image log here (evaluate.py writes images.jsonl in its --out folder)")
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out[(r["prior"], r["mask"], r["method"], r["image"])] = r["metrics"]
    return out


def paired_difference(a: np.ndarray, b: np.ndarray, draws: int = 10000, seed: int = 0,
                      statistic=np.mean) -> tuple[float, float, float]:
    """statistic(a) - statistic(b) over pairs (the mean: the mean of a - b) and the 2.5 % / 97.5 % quantiles of its
    bootstrap over pairs."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    idx = np.random.default_rng(seed).integers(0, a.size, size=(draws, a.size))
    boot = statistic(a[idx], axis=1) - statistic(b[idx], axis=1)
    return float(statistic(a) - statistic(b)), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def error_over_spread(error: np.ndarray, spread: np.ndarray, draws: int = 10000, seed: int = 0) -> np.ndarray:
    """sum(error) / sum(spread) over digits (1: a calibrated sampler; ``vipaint_pl.metrics.calibration_terms``), then
    its values on ``draws`` bootstrap resamplings of the digits (seeded: two rows on the same digits share them)."""
    idx = np.random.default_rng(seed).integers(0, error.size, size=(draws, error.size))
    return np.concatenate([[error.sum() / spread.sum()], error[idx].sum(1) / spread[idx].sum(1)])


def compare(images: dict, row_a: str, row_b: str, metrics=METRICS) -> list[dict]:
    """One record per (prior, mask, metric) over the digits both rows have; with the calibration terms, also
    "error / spread" (its interval: of A's ratio less B's, over the same resampled digits)."""
    cells = sorted({(p, m) for p, m, method, _ in images if method == row_a})
    out = []
    for prior, mask in cells:
        both = sorted(i for p, m, method, i in images
                      if (p, m, method) == (prior, mask, row_a) and (prior, mask, row_b, i) in images)
        if not both:
            continue
        for metric in metrics:
            a = np.array([images[(prior, mask, row_a, i)].get(metric, np.nan) for i in both])
            b = np.array([images[(prior, mask, row_b, i)].get(metric, np.nan) for i in both])
            if np.isnan(a).any() or np.isnan(b).any():
                continue
            diff, low, high = paired_difference(a, b)
            out.append({"prior": prior, "mask": mask, "metric": metric, "images": len(both), "a": float(a.mean()),
                        "b": float(b.mean()), "difference": diff, "low": low, "high": high})
        terms = [[images[(prior, mask, row, i)].get(k) for i in both] for row in (row_a, row_b)
                 for k in ("squared_error", "squared_spread")]
        if all(v is not None for column in terms for v in column):
            ra, rb = (error_over_spread(np.array(e), np.array(sp)) for e, sp in (terms[:2], terms[2:]))
            low, high = np.quantile(ra[1:] - rb[1:], [0.025, 0.975])
            out.append({"prior": prior, "mask": mask, "metric": "error / spread", "images": len(both),
                        "a": float(ra[0]), "b": float(rb[0]), "difference": float(ra[0] - rb[0]), "low": float(low),
                        "high": float(high), "a_interval": tuple(map(float, np.quantile(ra[1:], [0.025, 0.975]))),
                        "b_interval": tuple(map(float, np.quantile(rb[1:], [0.025, 0.975])))})
    return out


def markdown(records: list[dict], row_a: str, row_b: str) -> str:
    lines = [f"| prior | mask | metric | images | {row_a} | {row_b} | difference (95 % interval) |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        a, b = (f"{r[k]:.4f}" + (" [{:.3f}, {:.3f}]".format(*r[k + "_interval"]) if k + "_interval" in r else "")
                for k in ("a", "b"))
        lines.append(f"| {r['prior']} | {r['mask']} | {r['metric']} | {r['images']} | {a} | {b} | "
                     f"{r['difference']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] |")
    return "\n".join(lines)


def per_image_differences(images: dict, row_a: str, row_b: str, metric: str) -> list[dict]:
    """The digits on which A and B differ in ``metric`` (prior, mask, image, a, b, difference, share of the cell's
    summed difference), per cell largest |difference| first."""
    known = {name for (_, _, method, _), metrics in images.items() if method == row_a for name in metrics}
    if metric not in known:
        raise SystemExit(f"--per-image {metric!r}: row {row_a!r} has no such metric; it has {sorted(known)}")
    out = []
    for prior, mask in sorted({(p, m) for p, m, method, _ in images if method == row_a}):
        pairs = [(i, images[(prior, mask, row_a, i)].get(metric), images[(prior, mask, row_b, i)].get(metric))
                 for p, m, method, i in images if (p, m, method) == (prior, mask, row_a)
                 and (prior, mask, row_b, i) in images]
        pairs = [(i, float(a), float(b)) for i, a, b in pairs if a is not None and b is not None and a != b]
        total = sum(a - b for _, a, b in pairs)
        for i, a, b in sorted(pairs, key=lambda r: (-abs(r[1] - r[2]), r[0])):
            out.append({"prior": prior, "mask": mask, "image": i, "a": a, "b": b, "difference": a - b,
                        "share": (a - b) / total if total else float("nan")})
    return out


def comparison_cli(argv, doc: str, script: str, load, compare_rows, to_markdown, unit: str,
                   per_image=None) -> list[dict]:
    """The command line of a paired comparison: run folders of ``script``, rows --a and --b; prints the table
    (and, given ``per_image(images, a, b, metric)``, the --per-image list)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help=f"--out folders of {script} runs")
    parser.add_argument("--a", required=True, help=f"a row of {script} (e.g. 'VIPaint-2 Langevin 50')")
    parser.add_argument("--b", required=True, help="the row it is compared with (e.g. DPS)")
    if per_image is not None:
        parser.add_argument("--per-image", metavar="METRIC", help=f"also list the {unit}s on which the rows differ "
                            "in METRIC (e.g. digit_accuracy)")
    args = parser.parse_args(argv)
    images = load(args.runs)
    records = compare_rows(images, args.a, args.b)
    if not records:
        raise SystemExit(f"no {unit} has both rows {args.a!r} and {args.b!r} in {args.runs}")
    print(to_markdown(records, args.a, args.b))
    if per_image is not None and args.per_image:
        rows = per_image(images, args.a, args.b, args.per_image)
        print(f"\n| prior | mask | {unit} | {args.per_image}: A | B | A - B | share of the summed difference |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['prior']} | {r['mask']} | {r['image']} | {r['a']:.4f} | {r['b']:.4f} | "
                  f"{r['difference']:+.4f} | {r['share']:+.2f} |")
        if not rows:
            print(f"(no {unit} on which the rows differ in {args.per_image})")
    return records


def main(argv=None) -> list[dict]:
    return comparison_cli(argv, __doc__, "evaluate.py", load_images, compare, markdown, "digit",
                          per_image=per_image_differences)


if __name__ == "__main__":
    main()

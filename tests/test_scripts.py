"""The benchmark scripts: the exact-posterior grid's quick cell and workers, the image metrics."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


class _Always(torch.nn.Module):
    """A 'classifier' that always answers digit 3."""

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((x.shape[0],), 3), 10).float()


def test_image_metrics_on_exact_and_shifted_samples():
    from evaluate import image_metrics

    from vipaint_pl.datasets import digits
    from vipaint_pl.perceptual import PerceptualDistance

    truth = digits(16, "test")[0][:1]
    st = PerceptualDistance("st-lpips")
    exact = image_metrics(truth.repeat(4, 1, 1, 1), truth, 3, _Always(), st)
    assert exact["ssim"] > 0.999 and exact["st_lpips"] < 1e-4 and exact["diversity"] == 0.0
    assert exact["digit_accuracy"] == 1.0 and exact["lpips"] != exact["lpips"]  # LPIPS: NaN when not given
    noisy = truth + 0.2 * torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    worse = image_metrics(noisy, truth, 5, _Always(), st)
    assert worse["psnr"] < 30 and worse["st_lpips"] > exact["st_lpips"] and worse["diversity"] > 0.05
    assert worse["digit_accuracy"] == 0.0 and exact["distinct_digits"] == 1.0


class _Brightness(torch.nn.Module):
    """A 'classifier' whose digit is the image's mean brightness bucket."""

    def forward(self, x):
        bucket = ((x.mean((1, 2, 3)) + 1) * 5).long().clamp(0, 9)
        return torch.nn.functional.one_hot(bucket, 10).float()


def test_distinct_digits_counts_the_different_digits_among_samples():
    from evaluate import image_metrics

    from vipaint_pl.perceptual import PerceptualDistance

    levels = torch.tensor([-0.95, -0.85, -0.5, 0.05, 0.15, 0.95]).view(6, 1, 1, 1).expand(6, 1, 16, 16)
    metrics = image_metrics(levels.clone(), levels[:1], 0, _Brightness(), PerceptualDistance("st-lpips"))
    assert metrics["distinct_digits"] == 4.0 and metrics["digit_accuracy"] == pytest.approx(2 / 6)
    # within a digit: the two pairs read alike, each 0.1 apart in [-1, 1], i.e. 0.05 in [0, 1] units
    assert metrics["diversity_same_digit"] == pytest.approx(0.05, abs=1e-6)
    assert metrics["diversity"] > 0.3
    alone = image_metrics(levels[[0, 2, 5]].clone(), levels[:1], 0, _Brightness(), PerceptualDistance("st-lpips"))
    assert alone["diversity_same_digit"] != alone["diversity_same_digit"]  # no two samples read alike: NaN


def test_quick_cell_vipaint_and_dps_beat_prior_samples(capsys):
    import bench_gmm

    cell = bench_gmm.main(["--quick", "--methods", "prior (reference)", "exact posterior (floor)", "VIPaint-2",
                           "VIPaint-4", "DPS"])[0]["methods"]
    ref = cell["prior (reference)"]["max_sw2"]
    assert cell["exact posterior (floor)"]["max_sw2"] < 0.1 * ref  # exact samples: only the metric's own noise
    for name in ("VIPaint-2", "VIPaint-4", "DPS"):
        assert cell[name]["max_sw2"] < 0.25 * ref, (name, cell[name], ref)
    assert "| svd | 8 | 2 | DPS |" in capsys.readouterr().out


def test_unknown_benchmark_method_is_a_clear_error(capsys):
    import bench_gmm

    with pytest.raises(SystemExit):
        bench_gmm.main(["--quick", "--methods", "DPSS"])
    assert "DPSS" in capsys.readouterr().err


def test_parallel_workers_give_the_same_figures(capsys):
    import bench_gmm

    args = ["--quick", "--methods", "prior (reference)", "DPS"]
    one, two = bench_gmm.main(args)[0]["methods"], bench_gmm.main(args + ["--jobs", "2"])[0]["methods"]
    for name in one:
        assert {k: v for k, v in one[name].items() if k != "seconds"} == \
               {k: v for k, v in two[name].items() if k != "seconds"}


def test_a_stopped_grid_run_continues_where_it_stopped(tmp_path, capsys):
    import json

    import bench_gmm

    args = ["--quick", "--methods", "prior (reference)", "DPS", "--out", str(tmp_path)]
    full = bench_gmm.main(args)[0]["methods"]
    lines = (tmp_path / "problems.jsonl").read_text().splitlines()
    assert [json.loads(line)["problem"] for line in lines] == [0, 1]
    (tmp_path / "problems.jsonl").write_text(lines[0] + "\n")  # as if stopped during problem 1
    capsys.readouterr()
    bench_gmm.main(["--summarize"] + args)
    assert "| DPS (1 of 2 problems) |" in capsys.readouterr().out
    again = bench_gmm.main(args)[0]["methods"]
    out = capsys.readouterr().out
    assert "1 of 2 problems already in" in out and "problem 1:" in out and "problem 0:" not in out
    for name in full:  # the continued run gives the figures of the uninterrupted one
        assert {k: v for k, v in full[name].items() if k != "seconds"} == \
               {k: v for k, v in again[name].items() if k != "seconds"}
    # a method added later runs alone on the problems already there
    bench_gmm.main(["--quick", "--methods", "DPS", "exact posterior (floor)", "--out", str(tmp_path)])
    assert "exact posterior (floor)" in capsys.readouterr().out.split("problem 0:")[1].split("\n")[0]
    records = [json.loads(line) for line in (tmp_path / "problems.jsonl").read_text().splitlines()]
    assert [set(r["scores"]) for r in records[-2:]] == [{"exact posterior (floor)"}] * 2


def test_a_damaged_problem_log_is_a_clear_error(tmp_path):
    import bench_gmm

    (tmp_path / "problems.jsonl").write_text('{"quick": true, "setting": "svd"\n')
    with pytest.raises(SystemExit, match="line 1: not a record of this run"):
        bench_gmm.main(["--quick", "--methods", "DPS", "--out", str(tmp_path)])


def test_a_stopped_image_benchmark_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    import evaluate

    monkeypatch.setattr(evaluate, "CHAIN", 4)  # short chains: this checks the bookkeeping, not the method
    monkeypatch.setattr(evaluate, "train_classifier", lambda size: (_Always(), 1.0))
    args = ["--images", "2", "--priors", "digits-pixel", "--masks", "small", "--methods", "DPS", "--out", str(tmp_path)]
    full = evaluate.main(args)["digits-pixel"]["cells"]["small/DPS"]
    lines = (tmp_path / "images.jsonl").read_text().splitlines()
    assert len(lines) == 2 and full["error_over_spread"] > 0  # the calibration of the cell, from every image's terms
    (tmp_path / "images.jsonl").write_text(lines[0] + "\n")  # as if stopped during the second image
    calls = []
    run_row = evaluate.run_row
    monkeypatch.setattr(evaluate, "run_row", lambda *a: calls.append(a[-1]) or run_row(*a))
    capsys.readouterr()
    again = evaluate.main(args)["digits-pixel"]["cells"]["small/DPS"]
    assert "1 images already in" in capsys.readouterr().out and calls == ["digits-pixel/1"]
    same = {k: v for k, v in again.items() if k != "seconds"}
    assert same == pytest.approx({k: v for k, v in full.items() if k != "seconds"}, rel=0, abs=0, nan_ok=True)


def test_every_registered_method_has_a_row_in_both_benchmarks():
    import bench_gmm
    import evaluate

    from vipaint_pl.methods import METHODS

    assert {name for _, name, _ in bench_gmm.rows()} - {None, "exact"} == set(METHODS)
    assert {name for _, name, _ in evaluate.ROWS} == set(METHODS)


def test_every_evaluate_row_is_a_valid_configuration_with_its_label_s_settings():
    import evaluate

    from vipaint_pl.methods import method_config

    configs = {label: method_config(name, changes) for label, name, changes in evaluate.ROWS}  # each one validated
    mix = configs["VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step "
                  "spacing 4, mixture of 4 fitted with equal weights"]
    assert (mix.components, mix.sampling.corrector_levels, mix.sampling.step_spacing) == (4, "all", 4)
    assert configs["VIPaint-2"].sampling.corrector_levels == "last" and configs["VIPaint-2"].sampling.steps == 100


def test_merged_evaluate_runs_weigh_each_run_by_its_images(tmp_path):
    import json

    from merge_evaluate import main as merge_main

    cell = lambda v: {"psnr": v, "ssim": v, "st_lpips": v, "lpips": float("nan"), "diversity": v,  # noqa: E731
                      "digit_accuracy": v, "seconds": v}
    runs = [({"images": 10}, {"half/DPS": cell(20.0) | {"distinct_digits": 2.0}, "half/MGPS": cell(1.0)}),
            ({"images": 5}, {"half/DPS": cell(26.0)})]
    paths = []
    for i, (meta, cells) in enumerate(runs):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps({"meta": meta, "results": {"digits-pixel": {"cells": cells}}}))
    merged = merge_main([str(p) for p in paths])["digits-pixel"]
    assert merged["cells"]["half/DPS"]["psnr"] == pytest.approx(22.0)  # (10 x 20 + 5 x 26) / 15
    assert merged["images"] == {"half/DPS": 15, "half/MGPS": 10}
    assert merged["cells"]["half/MGPS"]["psnr"] == 1.0
    assert "distinct_digits" not in merged["cells"]["half/DPS"]  # only one of its runs has it


def test_paired_comparison_pairs_digits_across_runs_and_brackets_the_difference(tmp_path):
    import json

    import numpy as np
    from compare_evaluate import main as compare_main
    from compare_evaluate import paired_difference

    # A is B + 0.01 on every digit, whatever the digit's own level: the difference and its interval are 0.01 exactly.
    # Digits 0-9 in one run, 10-19 in another, digit 20 has row A only (not paired, left out).
    level = np.random.default_rng(1).normal(size=21)
    for run, digits in (("r1", range(10)), ("r2", range(10, 21))):
        (tmp_path / run).mkdir()
        with open(tmp_path / run / "images.jsonl", "w") as f:
            for i in digits:
                for method, shift in (("A", 0.01), ("B", 0.0)):
                    if method == "B" and i == 20:
                        continue
                    f.write(json.dumps({"prior": "digits-pixel", "mask": "half", "method": method, "image": i,
                                        "metrics": {"psnr": float(level[i] + shift)}}) + "\n")
    (tmp_path / "r3").mkdir()  # an older run: per-image lists in results.json only, digits 21 and 22
    (tmp_path / "r3" / "results.json").write_text(json.dumps({"meta": {"first": 21}, "results": {"digits-pixel": {
        "per_image": {"half/A": [{"psnr": 1.01}, {"psnr": 2.01}], "half/B": [{"psnr": 1.0}, {"psnr": 2.0}]}}}}))
    (record,) = compare_main([str(tmp_path / r) for r in ("r1", "r2", "r3")] + ["--a", "A", "--b", "B"])
    assert record["images"] == 22 and record["metric"] == "psnr"
    assert record["difference"] == pytest.approx(0.01) and record["low"] == pytest.approx(0.01)
    assert record["high"] == pytest.approx(0.01)
    # noisy differences: the interval brackets the mean and shrinks with more digits
    d = np.random.default_rng(2).normal(0.0, 1.0, size=400)
    mean, low, high = paired_difference(d[:25], np.zeros(25))
    assert low < mean < high
    assert (high - low) > 2.5 * np.subtract(*paired_difference(d, np.zeros(400))[2:0:-1])
    with pytest.raises(SystemExit, match="no digit has both rows"):
        compare_main([str(tmp_path / "r1"), "--a", "A", "--b", "C"])


def test_error_over_spread_reads_one_for_posterior_draws_and_the_width_error_otherwise(tmp_path):
    """Truth and samples drawn from one Gaussian 'posterior' per digit: the ratio is 1 for samples of its width s,
    (1 + w^2) / (2 w^2) for samples of width w s (2.5 at w = 1/2, 0.625 at w = 2); only missing pixels count."""
    import json

    from compare_evaluate import main as compare_main
    from evaluate import image_metrics

    g = torch.Generator().manual_seed(0)
    missing = torch.zeros(16, 16)
    missing[:, 8:] = 1
    with open(tmp_path / "images.jsonl", "w") as f:
        for i in range(150):
            mean = -0.5 + torch.rand(1, 1, 16, 16, generator=g)
            draw = lambda n, w: mean + (0.2 * w * torch.randn(n, 1, 16, 16, generator=g)) * missing  # noqa: E731
            truth = draw(1, 1.0)
            for method, width in (("exact", 1.0), ("narrow", 0.5), ("wide", 2.0)):
                samples = draw(10, width) + 0.3 * (1 - missing)  # observed pixels far off: must not count
                m = image_metrics(samples, truth, 3, _Always(), lambda a, b: torch.zeros(a.shape[0]), None, missing)
                f.write(json.dumps({"prior": "digits-pixel", "mask": "half", "method": method, "image": i,
                                    "metrics": m}) + "\n")
    by_metric = lambda records: {r["metric"]: r for r in records}  # noqa: E731
    narrow = by_metric(compare_main([str(tmp_path), "--a", "narrow", "--b", "exact"]))["error / spread"]
    wide = by_metric(compare_main([str(tmp_path), "--a", "wide", "--b", "exact"]))["error / spread"]
    assert narrow["b"] == pytest.approx(1.0, abs=0.05) and narrow["b_interval"][0] < 1.0 < narrow["b_interval"][1]
    assert narrow["a"] == pytest.approx(2.5, rel=0.05) and wide["a"] == pytest.approx(0.625, rel=0.05)
    assert narrow["low"] > 1.0 and wide["high"] < -0.2  # the width errors are far beyond the interval's noise


def test_per_image_differences_list_the_digits_that_carry_a_gap_largest_first(tmp_path, capsys):
    import json

    from compare_evaluate import main as compare_main

    acc = {"A": [1.0, 0.0, 1.0, 0.5, 1.0], "B": [1.0, 1.0, 0.0, 0.5, 0.7]}  # digits 1, 2 and 4 differ; sum +0.3
    with open(tmp_path / "images.jsonl", "w") as f:
        for method, values in acc.items():
            for i, v in enumerate(values):
                f.write(json.dumps({"prior": "digits-pixel", "mask": "half", "method": method, "image": i,
                                    "metrics": {"digit_accuracy": v}}) + "\n")
    capsys.readouterr()
    compare_main([str(tmp_path), "--a", "A", "--b", "B", "--per-image", "digit_accuracy"])
    listed = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| digits-pixel")]
    per_digit = [(int(r[2]), float(r[5]), float(r[6].rstrip(" |"))) for r in listed if r[2].isdigit()]
    assert per_digit == [(1, -1.0, pytest.approx(-3.33, abs=0.01)), (2, 1.0, pytest.approx(3.33, abs=0.01)),
                         (4, pytest.approx(0.3), pytest.approx(1.0))]
    with pytest.raises(SystemExit, match="no such metric; it has \\['digit_accuracy'\\]"):
        compare_main([str(tmp_path), "--a", "A", "--b", "B", "--per-image", "accuracy"])


def test_grid_comparison_pairs_problems_across_runs_by_the_difference_of_medians(tmp_path):
    import json

    from compare_bench_gmm import main as compare_main

    # Row A's max-SW2 is B's minus 1 on every problem of svd 8/1 (problems 0-4 in one run, 5-8 in another; problem 9
    # has A only): the difference of medians and its whole interval are -1, and A is lower on all 9 pairs.
    runs = (("r1", range(5), ("A", "B")), ("r2", range(5, 10), ("A",)), ("r3", range(5, 9), ("B",)))
    for run, problems, rows in runs:
        (tmp_path / run).mkdir()
        with open(tmp_path / run / "problems.jsonl", "w") as f:
            for p in problems:
                scores = {row: {"max_sw2": 10.0 + p - (row == "A"), "mode_tv": 0.1 * (p % 3)} for row in rows}
                f.write(json.dumps({"setting": "svd", "d_x": 8, "d_y": 1, "problem": p, "scores": scores}) + "\n")
    sw2, tv = compare_main([str(tmp_path / r) for r in ("r1", "r2", "r3")] + ["--a", "A", "--b", "B"])
    assert sw2["cell"] == "svd 8/1" and sw2["problems"] == 9 and sw2["a_lower"] == 9
    assert sw2["difference"] == sw2["low"] == sw2["high"] == pytest.approx(-1.0)
    assert tv["difference"] == pytest.approx(0.0) and tv["a_lower"] == 0
    with pytest.raises(SystemExit, match="no problem has both rows"):
        compare_main([str(tmp_path / "r2"), "--a", "A", "--b", "B"])


def test_diagnosis_compare_reads_one_on_exact_draws_and_the_width_error_it_is_given():
    from diagnose_vipaint_gmm import compare, directions

    from vipaint_pl.operators import random_dense_operator
    from vipaint_pl.priors.gmm import grid_mixture_prior

    op = random_dense_operator(6, 2, seed=0)
    obs, unobs = directions(op, 6)  # the row space of A and its complement, orthonormal
    A = op.as_matrix((6,)).double()
    assert torch.allclose(obs @ obs.T, torch.linalg.pinv(A) @ A, atol=1e-10)
    assert torch.allclose(torch.cat([obs, unobs], 1).T @ torch.cat([obs, unobs], 1), torch.eye(6, dtype=torch.float64),
                          atol=1e-10)
    prior = grid_mixture_prior(6, seed=1)
    y = op.measure(prior.sample(1, torch.Generator().manual_seed(2)), 0.5, torch.Generator().manual_seed(3))
    post = prior.exact_posterior(op, y, 0.5)
    exact, other = (post.sample(n, torch.Generator().manual_seed(s)) for n, s in ((10_000, 4), (4_000, 5)))
    same = compare(other, exact, post.means, post.weights, obs, unobs)
    assert abs(same["std_obs"] - 1) < 0.06 and abs(same["std_unobs"] - 1) < 0.06 and same["offset"] < 0.06
    assert same["stray"] < 0.01  # exact draws rarely sit nearest a mode of weight below 1e-3
    # half the spread along the unobserved directions around each draw's mode: the ratio reads 0.5 there only
    means = post.means[torch.cdist(other, post.means).argmin(1)]
    narrowed = other - 0.5 * ((other - means) @ unobs) @ unobs.T
    shrunk = compare(narrowed, exact, post.means, post.weights, obs, unobs)
    assert abs(shrunk["std_unobs"] - 0.5) < 0.05 and abs(shrunk["std_obs"] - 1) < 0.06


def test_diagnose_reports_a_mixtures_components_against_the_exact_modes():
    """``diagnose_vipaint_gmm.py --weights`` on svd 8/1 problem 0 (five posterior modes) with the grid's
    equal-weights row: the components reach every mode with mass, and the sampler's weights match the exact ones
    (measured TV 0.087; the row fitted with learned weights reaches 0.55 of the mass, TV 0.45)."""
    from diagnose_vipaint_gmm import component_weights

    row = "VIPaint-2 mixture, equal weights in the fit, 256 resampled starts, score gradient, 32 lower draws, Langevin 50"
    torch.set_grad_enabled(True)
    r = component_weights("svd", 8, 1, 0, row, streams=("sample", "another"))
    assert r["exact_mass_reached"] > 0.95, r
    assert 0.0 <= r["weight_tv"] < 0.15, r
    # the same fit weighed with another stream's draws: the same verdict, with weights that differ by their noise
    assert r["weight_tv_per_stream"][0] == r["weight_tv"] and r["weight_tv_per_stream"][1] < 0.15, r
    assert r["weights_per_stream"][0] != r["weights_per_stream"][1]
    assert abs(sum(r["weights_per_stream"][1]) - 1) < 1e-6 and len(r["exact_weights"]) == len(r["modes"])
    assert len(r["bounds_per_stream"]) == 2 and all(len(b) == len(r["modes"]) for b in r["bounds_per_stream"])
    # weighed with the exact -log p_Te(z_Te) in place of the diffusion term's estimate: the same fit and modes, the
    # weights of the exact prior term (also close to the exact ones on this cell)
    exact = component_weights("svd", 8, 1, 0, row, exact_prior=True)
    assert exact["modes"] == r["modes"] and 0.0 <= exact["weight_tv"] < 0.15, exact
    assert exact["weights_per_stream"][0] != r["weights_per_stream"][0]

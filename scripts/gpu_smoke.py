"""Every registered method (and VIPaint's mixture and Tweedie forms) on the GPU with a few steps, on both embedded
priors: prints OK or where it failed, one line each, and exits 1 if any failed. The CPU tests cannot see a tensor
left on the wrong device; this does.

    python scripts/gpu_smoke.py
"""

from __future__ import annotations

import dataclasses
import sys
import traceback

import torch

from vipaint_pl.masks import make_mask
from vipaint_pl.methods import METHODS, method_config, run_method
from vipaint_pl.operators import Inpainting
from vipaint_pl.priors import load_prior

SHORT = {"steps": 3}
VIPAINT_SHORT = {"fit_steps": 2, "bound": {"mc_samples": 2}, "sampling": {"steps": 3}}
EXTRA = [("vipaint tweedie", "vipaint", {**VIPAINT_SHORT, "bound": {"mc_samples": 2, "reconstruction": "tweedie"},
                                          "sampling": {"steps": 3, "guidance": "tweedie"}}),
         ("vipaint mixture", "vipaint", {**VIPAINT_SHORT, "components": 3,
                                         "init": {"start": "guided", "guided_steps": 2}}),
         ("vipaint per-element gamma", "vipaint", {**VIPAINT_SHORT, "gamma_per_element": True})]


def main() -> int:
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    failed = 0
    for kind, source, size in [("latent", "embedded:digits-latent", 32), ("pixel", "embedded:digits-pixel", 16)]:
        prior = load_prior(kind, source).to(dev)
        masks = torch.stack([make_mask(m, size, size, seed=i) for i, m in enumerate(("half", "random"))]).to(dev)
        op = Inpainting(masks)
        y = op(torch.rand(2, 1, size, size, device=dev) * 2 - 1)
        rows = [(name, name, VIPAINT_SHORT if name == "vipaint" else SHORT) for name in METHODS] + EXTRA
        for label, name, changes in rows:
            try:
                has_steps = "steps" in {f.name for f in dataclasses.fields(method_config(name))}
                cfg = method_config(name, changes if name == "vipaint" or has_steps else {})
                x = run_method(name, prior, op, y, 2, seed=0, names=["a", "b"], config=cfg)
                assert torch.isfinite(torch.as_tensor(x)).all(), "non-finite output"
                print(f"OK   {kind:6s} {label}", flush=True)
            except Exception as err:  # noqa: BLE001  report every failure, keep going
                failed += 1
                frames = traceback.extract_tb(err.__traceback__)[-3:]
                where = " <- ".join(f"{f.filename.split('/')[-1]}:{f.lineno}" for f in reversed(frames))
                print(f"FAIL {kind:6s} {label}: {type(err).__name__}: {str(err)[:200]} at {where}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

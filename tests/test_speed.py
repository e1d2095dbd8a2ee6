"""Network-evaluation counting, the floor, peak memory, the memory options, and the speed benchmark script."""

import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from tiny_models import save_tiny_latent_prior, save_tiny_stable_diffusion
from vipaint_pl.methods import run_method
from vipaint_pl.operators import Inpainting
from vipaint_pl.priors import load_prior
from vipaint_pl.priors.base import DiffusionPrior
from vipaint_pl.profiling import NetworkCounter, OpCounter, PeakMemory
from vipaint_pl.schedule import NoiseSchedule, per_sample, transition, x0_from_eps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


@pytest.fixture(scope="module")
def latent_prior(tmp_path_factory):
    return load_prior("latent", str(save_tiny_latent_prior(tmp_path_factory.mktemp("ldm"), kind="kl")))


def _half_mask_query(channels=3, size=16):
    mask = torch.ones(1, channels, size, size)
    mask[..., size // 2:] = 0
    op = Inpainting(mask)
    return op, op(torch.zeros(1, channels, size, size))


def test_counts_every_network_call_per_direction(latent_prior):
    op, y = _half_mask_query()
    with NetworkCounter(latent_prior) as counter:
        run_method("dps", latent_prior, op, y, 3, config={"steps": 4})  # latent-DPS: UNet and decoder, both ways
    assert counter.evaluations() == {"denoiser forward": 4, "denoiser backward": 4, "decoder forward": 4,
                                     "decoder backward": 4}
    assert counter.samples_evaluated()["denoiser forward"] == 4 * 3  # 3 samples in every call
    with NetworkCounter(latent_prior) as counter:
        run_method("blended", latent_prior, op, y, 2, config={"steps": 5})  # no gradients: forward only
    assert counter.evaluations() == {"encoder forward": 1, "denoiser forward": 5}
    with NetworkCounter(latent_prior) as counter:
        pass
    run_method("blended", latent_prior, op, y, 2, config={"steps": 2})  # hooks are gone after the block
    assert counter.evaluations() == {}


class _SleepyNet(nn.Module):
    """A 'denoiser' whose forward takes a known 20 ms."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, z, t):
        time.sleep(0.02)
        return z * 0 + self.w


class _SleepyPrior(DiffusionPrior):
    def __init__(self):
        super().__init__(NoiseSchedule.linear(1000))
        self.unet = _SleepyNet()

    def _eps(self, z_t, t):
        return self.unet(z_t, t)


def test_floor_is_count_times_the_time_alone():
    prior = _SleepyPrior()
    op, y = _half_mask_query(channels=1, size=4)
    with NetworkCounter(prior) as counter:
        start = time.perf_counter()
        run_method("blended", prior, op, y, 2, config={"steps": 10})
        wall = time.perf_counter() - start
    assert counter.evaluations() == {"denoiser forward": 10}
    floor = counter.floor_seconds(repeats=2)
    assert 10 * 0.02 <= floor <= 10 * 0.03  # ten calls of 20 ms, plus timer slack
    assert floor <= wall


def test_floor_ops_are_the_networks_own_operators_and_the_rest_is_counted_around_them():
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))
    prior = type("NetOnly", (), {"unet": net})()
    x = torch.randn(3, 4)
    with OpCounter() as alone:
        for _ in range(3):
            net(x)
    with NetworkCounter(prior) as counter, OpCounter() as run:
        for _ in range(3):
            z = net(x)
        with torch.no_grad():  # (with autograd on, exp would also keep its output for backward: one more)
            z = (z * 2 + 1).exp()  # three operators around the network
    assert counter.floor_ops() == alone.ops  # three forwards of one signature, counted as they run alone
    recording = 2  # the first call of a signature is kept for replay: its input detached and cloned
    assert run.ops - counter.floor_ops() == 3 + recording


def test_coefficients_at_fixed_times_are_kept_and_equal_the_per_sample_path():
    sched = NoiseSchedule.linear(1000)
    sched.clear_memo()
    z, x = torch.randn(4, 2, 3, dtype=torch.float64), torch.randn(4, 2, 3, dtype=torch.float64)
    t, s = torch.full((4,), 500), torch.full((4,), 480)
    for host_t, host_s in ((500, 480), (torch.tensor(500), torch.tensor(480))):
        mean, std = transition(sched, z, x, host_s, host_t, eta=0.7)
        mean_b, std_b = transition(sched, z, x, s, t, eta=0.7)
        torch.testing.assert_close(mean, mean_b, rtol=0, atol=1e-15)
        torch.testing.assert_close(std, std_b, rtol=0, atol=1e-15)
        torch.testing.assert_close(x0_from_eps(sched, z, x, host_t), x0_from_eps(sched, z, x, t), rtol=0, atol=1e-14)
    assert sched.alpha(500) is sched.alpha(torch.tensor(500))  # computed once, kept
    with OpCounter() as ops:
        transition(sched, z, x, 480, 500, eta=0.7)
    assert ops.ops <= 6  # two products, a sum, the std as a tensor and its view: no arithmetic on the schedule
    with OpCounter() as ops:
        x0_from_eps(sched, z, x, 500)
    assert ops.ops == 3  # a product, a difference, a quotient: alpha_t and sigma_t kept as numbers, not read back
    assert isinstance(per_sample(sched.alpha(500), z), float) and per_sample(sched.alpha(t), z).shape == (4, 1, 1)
    gate = torch.tensor(0.3, requires_grad=True)  # a host number in a graph stays a tensor: its gradient flows
    (grad,) = torch.autograd.grad((per_sample(gate, z) * z).sum(), gate)
    torch.testing.assert_close(grad, z.sum().float())
    with pytest.raises(Exception, match="s < t"):
        transition(sched, z, x, 500, 500)
    sched.clear_memo()
    assert sched.alpha(500) is not sched.alpha(torch.tensor([500]))


def test_the_denoiser_time_at_a_host_time_is_filled_once_and_kept():
    from vipaint_pl.priors.gmm import GaussianMixturePrior

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    seen = []
    prior._eps = lambda z, t: seen.append(t) or z  # the network's view of the time
    z = torch.randn(8, 2)
    prior.predict_eps(z, 500)
    with OpCounter() as ops:
        prior.predict_eps(z, 500)
    assert ops.ops == 0 and seen[0] is seen[1] and torch.equal(seen[0], torch.full((8,), 500))
    prior.predict_eps(z[:3], 500)
    prior.predict_eps(z, 499)
    assert seen[2].tolist() == [500] * 3 and seen[3].tolist() == [499] * 8  # one per time and batch size


def test_red_diff_coefficients_equal_the_per_sample_path_exactly():
    from vipaint_pl.methods.red_diff import REDDiffConfig, red_diff_coefficients, red_diff_times
    from vipaint_pl.priors.gmm import GaussianMixturePrior
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    noise = QueryNoise(0, ["a", "b"], "red-diff", 3)
    for dtype in (torch.float32, torch.float64):
        like = torch.zeros(6, 2, dtype=dtype)
        for times in ("descending", "random"):
            cfg = REDDiffConfig(steps=7, times=times)
            steps = red_diff_times(cfg, prior.num_train_timesteps, noise, like)
            for t, kept in zip(steps, red_diff_coefficients(prior, cfg, steps, like)):
                alpha, sigma = per_sample(prior.schedule.alpha(t), like), per_sample(prior.schedule.sigma(t), like)
                for value, reference in zip(kept, (alpha, sigma, sigma / alpha)):
                    assert torch.equal(value * torch.ones_like(like), reference.expand_as(like))
                assert isinstance(kept[0], float) == (times == "descending")


def test_uniforms_for_all_steps_in_one_draw_are_those_of_a_draw_per_step():
    # RED-diff-V's times: (steps, batch) from one generator call per query, then the stream goes on where the draws
    # per step leave it
    from vipaint_pl.rng import QueryNoise

    like = torch.zeros(6, 2)
    for names in (["a"], ["a", "b"]):
        one, each = (QueryNoise(3, names, "red-diff-v", 6 // len(names)) for _ in range(2))
        together = one.rand(like, 5)
        assert together.shape == (5, 6) and torch.equal(together, torch.stack([each.rand(like) for _ in range(5)]))
        assert torch.equal(one.like(like), each.like(like))


def test_the_diffusion_term_reads_its_coefficients_in_one_lookup():
    from vipaint_pl.methods.vipaint import diffusion_loss
    from vipaint_pl.priors.gmm import GaussianMixturePrior

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    z, noise = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    u = torch.rand(8, dtype=torch.float64)
    diffusion_loss(prior, z, 400, u, noise)  # the first call makes the kept table
    with OpCounter() as denoiser:
        prior.predict_eps(z, torch.full((8,), 500))
    with OpCounter() as term:
        diffusion_loss(prior, z, 400, u, noise)
    # 113 around the denoiser when each of 8 coefficients was looked up, cast and shaped apart and Tweedie's two
    # recomputed from the schedule (checked, looked up, square-rooted); 69 with one lookup, cast and copy of all ten
    assert term.ops - denoiser.ops <= 75


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory("cpu") as memory:
        block = torch.ones(64 * 1024 * 1024 // 4 * 4)  # 256 MiB, touched
        time.sleep(0.05)
        del block
    assert memory.increase_bytes > 200 * 1024**2
    assert memory.peak_bytes >= memory.start_bytes + memory.increase_bytes - 1


def test_memory_options_give_the_same_decodes_and_gradients(tmp_path):
    folder = save_tiny_stable_diffusion(tmp_path / "sd")
    plain = load_prior("stable-diffusion", str(folder))
    saving = load_prior("stable-diffusion", str(folder), gradient_checkpointing=True, decode_batch_size=2)
    assert saving.decode_batch_size == 2 and saving.unet.is_gradient_checkpointing

    def value_and_grad(prior):
        z = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        x = prior.decode(prior.predict_x0(z, 300))
        (grad,) = torch.autograd.grad(x.square().sum(), z)
        return x.detach(), grad

    (x0, g0), (x1, g1) = value_and_grad(plain), value_and_grad(saving)
    assert torch.allclose(x0, x1, atol=1e-5) and torch.allclose(g0, g1, atol=1e-5)
    with pytest.raises(Exception, match="decode_batch_size"):
        load_prior("stable-diffusion", str(folder), decode_batch_size=0)


def test_bench_speed_methods_part_records_overhead():
    import bench_speed

    rows = bench_speed.main(["--parts", "methods", "--priors", "digits-pixel", "--methods", "dps", "blended",
                             "--chain", "3", "--repeats", "1"])
    assert [r["method"] for r in rows] == ["dps", "blended"]
    dps = rows[0]
    assert dps["evaluations"] == {"denoiser forward": 3, "denoiser backward": 3}
    assert dps["floor_seconds"] > 0 and dps["overhead"] == pytest.approx(dps["seconds"] / dps["floor_seconds"])


def test_bench_speed_ops_part_counts_the_operators_around_the_networks():
    import bench_speed

    (dps,) = bench_speed.main(["--parts", "ops", "--priors", "digits-pixel", "--methods", "dps", "--chain", "3"])
    assert dps["evaluations"] == 6 and dps["network_ops"] > 0
    assert dps["first_ops"] == dps["network_ops"] + dps["first_outside"]
    assert 0 < dps["second_outside"] < dps["first_outside"]  # the second run finds the chain's coefficients kept


@pytest.mark.parametrize("config", ["sd1_5", "sd2_base"])
def test_stable_diffusion_configs_load_with_the_memory_options(config, tmp_path):
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "prior" / f"{config}.yaml").read_text())
    prior_spec = spec["model"]["init_args"]["prior"]
    prior = load_prior(prior_spec["kind"], str(save_tiny_stable_diffusion(tmp_path / "sd")), **prior_spec["kwargs"])
    assert prior.gradient_checkpointing and prior.decode_batch_size == 1
    assert prior.unet.is_gradient_checkpointing and prior.autoencoder.is_gradient_checkpointing


def test_the_schedule_stays_on_the_cpu_and_serves_per_sample_times_of_any_device(latent_prior):
    """Coefficients at Python / CPU times come from a CPU float64 table (no device round trip); a prior's
    schedule is one object, so its per-device copies of the table are made once."""
    sched = latent_prior.schedule
    assert sched is latent_prior.schedule and sched.alphas_cumprod.device.type == "cpu"
    assert latent_prior.to(torch.float32).schedule.alphas_cumprod.dtype == torch.float64
    t = torch.tensor([0, 10, 999])
    torch.testing.assert_close(sched.alpha(t), sched.alphas_cumprod[t].sqrt())
    assert float(sched.alpha(-1)) == 1.0 and float(sched.sigma(-1)) == 0.0
    with pytest.raises(Exception, match="out of range"):
        sched.alpha(torch.tensor([1000]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device synchronizations exist on a GPU only")
def test_dps_and_vipaint_steps_make_no_host_device_sync_on_a_gpu(latent_prior):
    """Every step of DPS and of VIPaint's fit and sampling queues its work without waiting for the GPU (a sync
    stalls the GPU until the host queues more): under the sync debug mode "error", any sync raises."""
    prior = latent_prior.to("cuda")
    op, y = _half_mask_query()
    op, y = Inpainting(op.mask.cuda()), y.cuda()
    for name, cfg in [("dps", {"steps": 3}), ("vipaint", {"fit_steps": 2, "sampling": {"steps": 3},
                                                          "init": {"start": "observation"}})]:
        run_method(name, prior, op, y, 2, config=cfg)  # first calls (allocations, pinned buffers) outside the check
        torch.cuda.set_sync_debug_mode("error")
        try:
            run_method(name, prior, op, y, 2, config=cfg)
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("dtype,foreach", [(torch.float32, False), (torch.float64, False), (torch.float32, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_one_tensor_adam_is_torchs_adam_bitwise_with_fewer_operators(dtype, foreach, weight_decay):
    # RED-diff's and ReSample's optimizer: 30 steps on the same gradients give bitwise the parameters of torch's
    # single-tensor Adam (AdamW with weight decay; and of its foreach update, a GPU's default), in 7 operators a step
    # (8 with weight decay) where torch's take at least 4 more: its step counter's increment and read-back and the
    # profiler records around step and zero_grad
    from vipaint_pl.methods.adam import OneTensorAdam
    from vipaint_pl.profiling import OpCounter

    gen = torch.Generator().manual_seed(0)
    start = torch.randn(3, 5, generator=gen, dtype=dtype)
    grads = [torch.randn(3, 5, generator=gen, dtype=dtype) * 10 ** (i % 3 - 1) for i in range(30)]
    mine, theirs = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    kind = torch.optim.AdamW if weight_decay else torch.optim.Adam
    reference = kind([theirs], lr=0.05, betas=(0.9, 0.99), weight_decay=weight_decay, foreach=foreach)
    adam = OneTensorAdam(mine, lr=0.05, betas=(0.9, 0.99), weight_decay=weight_decay)
    counts = []
    for g in grads:
        reference.zero_grad()
        theirs.grad = g.clone()
        with OpCounter() as ops:
            reference.step()
            reference.zero_grad()
        mine.grad = g.clone()
        with OpCounter() as own:
            adam.step()
        counts.append((own.ops, ops.ops))
        assert mine.grad is None
    assert torch.equal(mine, theirs)
    assert {own for own, _ in counts} == {8 if weight_decay else 7}, counts
    assert all(torchs >= own + 4 for own, torchs in counts), counts  # measured: 6 more a step, 9 at the first

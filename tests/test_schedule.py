import numpy as np
import pytest
import torch

from vipaint_pl.schedule import (
    DATA_TIME,
    NoiseSchedule,
    bridge,
    gaussian_entropy,
    gaussian_kl,
    transition,
    transition_std,
)

S = NoiseSchedule.linear(1000)


def test_alpha_sigma_from_betas_match_numpy_float64():
    betas = np.linspace(1e-4, 2e-2, 1000)
    ab = np.cumprod(1 - betas)
    t = torch.tensor([0, 10, 500, 999])
    np.testing.assert_allclose(S.alpha(t).numpy(), np.sqrt(ab[t.numpy()]), rtol=1e-12)
    np.testing.assert_allclose(S.sigma(t).numpy(), np.sqrt(1 - ab[t.numpy()]), rtol=1e-12)
    np.testing.assert_allclose(S.snr(t).numpy(), ab[t.numpy()] / (1 - ab[t.numpy()]), rtol=1e-12)
    assert S.alpha(DATA_TIME) == 1 and S.sigma(DATA_TIME) == 0


@pytest.mark.parametrize("kind", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_schedule_from_diffusers_config_matches_diffusers(kind):
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_schedule=kind, beta_start=0.00085, beta_end=0.012)
    ours = NoiseSchedule.from_scheduler_config(sched.config)
    np.testing.assert_allclose(ours.alphas_cumprod.numpy(), sched.alphas_cumprod.double().numpy(), rtol=1e-5, atol=1e-7)  # diffusers is float32


def test_out_of_range_time_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        S.alpha(1000)


def _bayes_posterior(s, t, x, z):
    """q(z_s | z_t, x) by conditioning the joint Gaussian (z_s, z_t) | x, in float64."""
    a_s, a_t = float(S.alpha(s)), float(S.alpha(t))
    v_s, v_t = float(S.sigma(s)) ** 2, float(S.sigma(t)) ** 2
    cov = (a_t / a_s) * v_s  # Cov(z_s, z_t | x)
    mean = a_s * x + cov / v_t * (z - a_t * x)
    var = v_s - cov**2 / v_t
    return mean, np.sqrt(var)


@pytest.mark.parametrize("s,t", [(499, 500), (400, 550), (0, 999), (DATA_TIME, 3)])
def test_ddpm_jump_transition_is_the_exact_gaussian_posterior(s, t):
    x, z = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    mean, std = transition(S, z, x, s, t, eta=1.0)
    ref_mean, ref_std = _bayes_posterior(s, t, x.numpy(), z.numpy())
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(std.numpy(), ref_std, rtol=1e-10, atol=1e-12)


def _bridge_by_conditioning(m, u, t, z_m, z_t):
    """q(z_u | z_m, z_t) by conditioning the forward chain's joint Gaussian (z_u, z_t) | z_m, in float64."""
    ab = lambda i: float(S.alpha(i)) ** 2  # noqa: E731
    a_um, a_tu = np.sqrt(ab(u) / ab(m)), np.sqrt(ab(t) / ab(u))
    v_um, v_tu = 1 - ab(u) / ab(m), 1 - ab(t) / ab(u)
    v_t = a_tu**2 * v_um + v_tu  # Var(z_t | z_m)
    cov = a_tu * v_um  # Cov(z_u, z_t | z_m)
    mean = a_um * z_m + cov / v_t * (z_t - a_tu * a_um * z_m)
    return mean, np.sqrt(v_um - cov**2 / v_t)


@pytest.mark.parametrize("m,u,t", [(100, 300, 600), (0, 1, 2), (250, 499, 999), (DATA_TIME, 400, 550)])
def test_the_bridge_is_the_forward_chain_conditioned_on_both_ends(m, u, t):
    z_m, z_t = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    mean, std = bridge(S, z_t, z_m, m, u, t)
    ref_mean, ref_std = _bridge_by_conditioning(m, u, t, z_m.numpy(), z_t.numpy())
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(std.numpy(), ref_std, rtol=1e-10, atol=1e-12)
    if m == DATA_TIME:
        torch.testing.assert_close(mean, transition(S, z_t, z_m, u, t)[0], rtol=1e-12, atol=1e-12)
    # per-sample times (tensors) take the computed path, host times the kept one: the same numbers
    per_sample_mean, per_sample_std = bridge(S, z_t[:, None], z_m[:, None], *(torch.full((5,), v) for v in (m, u, t)))
    assert torch.equal(per_sample_mean[:, 0], mean) and torch.equal(per_sample_std[:, 0], std)
    assert S.memo(("bridge", m, u, t), lambda: None) is not None  # kept at the first call


def test_a_bridge_to_its_own_start_returns_the_start():
    z_m, z_t = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    mean, std = bridge(S, z_t, z_m, 300, 300, 700)
    torch.testing.assert_close(mean, z_m, rtol=0, atol=1e-12)
    assert float(std.max()) == 0.0
    with pytest.raises(Exception, match="m <= u < t"):
        bridge(S, z_t, z_m, 400, 300, 700)
    with pytest.raises(Exception, match="m <= u < t"):
        bridge(S, z_t, z_m, torch.tensor([400]), torch.tensor([300]), torch.tensor([700]))


@pytest.mark.parametrize("eta", [0.0, 0.2, 0.7, 1.0])
def test_every_eta_keeps_the_marginal(eta):
    # z_t = a_t x + s_t e  =>  z_s = A x + B z_t + std n must have mean a_s x and variance s_s^2.
    s, t = 400, 550
    x = torch.zeros(1, dtype=torch.float64)
    mean0, std = transition(S, torch.zeros(1, dtype=torch.float64), x + 1, s, t, eta)  # A (x = 1, z = 0)
    meanB, _ = transition(S, torch.ones(1, dtype=torch.float64), x, s, t, eta)  # B (x = 0, z = 1)
    A, B = float(mean0), float(meanB)
    assert A + B * float(S.alpha(t)) == pytest.approx(float(S.alpha(s)), rel=1e-12)
    assert B**2 * float(S.sigma(t)) ** 2 + float(std) ** 2 == pytest.approx(float(S.sigma(s)) ** 2, rel=1e-12)


def test_ddim_eta0_matches_diffusers_ddim_step():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                          set_alpha_to_one=False)
    sched.set_timesteps(20)  # step of 50
    t = int(sched.timesteps[3])
    z, eps = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    ref = sched.step(eps, t, z, eta=0.0).prev_sample
    x0 = (z - S.sigma(t) * eps) / S.alpha(t)
    mean, std = transition(S, z, x0, t - 50, t, eta=0.0)
    assert float(std.max()) == 0.0
    torch.testing.assert_close(mean, ref, rtol=1e-6, atol=1e-6)


def test_ddim_eta_std_matches_ddim_paper_sigma():
    # Song et al. 2021 Eq. 16: sigma = eta sqrt((1 - ab_s)/(1 - ab_t)) sqrt(1 - ab_t/ab_s)
    s, t, eta = 300, 420, 0.6
    ab_s, ab_t = float(S.alphas_cumprod[s]), float(S.alphas_cumprod[t])
    ref = eta * np.sqrt((1 - ab_s) / (1 - ab_t)) * np.sqrt(1 - ab_t / ab_s)
    assert float(transition_std(S, s, t, eta)) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("s,t", [(400, 550), (0, 999), (100, 101)])
def test_jump_with_the_x0_variance_is_the_exact_marginal_transition_of_unit_gaussian_data(s, t):
    """Data x ~ N(0, 1): E[x | z_t] = alpha_t z_t, Var[x | z_t] = sigma_t^2, and the forward chain's own
    p(z_s | z_t) = N(alpha_{t|s} z_t, 1 - alpha_{t|s}^2) from the joint Gaussian (z_s, z_t). The plug-in jump (x_var 0) has
    the right mean but too small a variance; with x_var = sigma_t^2 both match, in float64."""
    z = torch.randn(5, dtype=torch.float64)
    a_s, a_t = float(S.alpha(s)), float(S.alpha(t))
    cov = a_t / a_s  # Cov(z_s, z_t) = alpha_{t|s} Var(z_s), Var(z_s) = Var(z_t) = 1
    exact_mean, exact_std = cov * z.numpy(), np.sqrt(1 - cov**2)
    plug_in = transition(S, z, a_t * z, s, t, eta=1.0)
    mean, std = transition(S, z, a_t * z, s, t, eta=1.0, x_var=float(S.sigma(t)) ** 2)
    np.testing.assert_allclose(mean.numpy(), exact_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(std.numpy(), exact_std, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(plug_in[0], mean)
    assert (plug_in[1] < std).all()


def test_transition_needs_s_before_t():
    with pytest.raises(ValueError, match="s < t"):
        transition(S, torch.zeros(1), torch.zeros(1), 500, 400)


def test_gaussian_kl_matches_closed_form_and_torch():
    g = torch.Generator().manual_seed(1)
    mq, mp = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    sq, sp = torch.rand(50, generator=g, dtype=torch.float64) + 0.1, torch.rand(50, generator=g, dtype=torch.float64) + 0.1
    ours = gaussian_kl(mq, sq, mp, sp)
    ref = np.log(sp.numpy() / sq.numpy()) + (sq.numpy() ** 2 + (mq.numpy() - mp.numpy()) ** 2) / (2 * sp.numpy() ** 2) - 0.5
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-12)
    tref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq), torch.distributions.Normal(mp, sp))
    torch.testing.assert_close(ours, tref)
    assert gaussian_kl(mq, sq, mq, sq).abs().max() < 1e-12
    torch.testing.assert_close(gaussian_entropy(sq), torch.distributions.Normal(mq, sq).entropy())

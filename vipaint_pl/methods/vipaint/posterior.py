"""VIPaint's variational family (Eq. 11-12): a hierarchical Gaussian posterior over K diffusion times per query,
optionally a mixture of M of them, and the common random numbers its mixture shares across components."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...schedule import gaussian_kl, per_sample, transition, transition_std
from .config import InitConfig


class HierarchicalPosterior(nn.Module):
    """Variational parameters for Q queries, each a mixture of M hierarchies (M = 1: the paper's family).

    Row ``q * M + m`` of ``mu`` / ``log_std`` (per level, over the latent grid) and ``gamma`` (per level)
    is component m of query q; ``logits`` (Q, M) give the mixture weights pi = softmax(logits).
    """

    def __init__(self, times: list[int], num_queries: int, latent_shape: tuple[int, ...], components: int = 1,
                 gamma_per_element: bool = False, eta: float = 1.0, variance: str = "plug-in"):
        super().__init__()
        self.times, self.components, self.eta, self.variance = list(times), components, eta, variance
        k, rows = len(times), num_queries * components
        self.mu = nn.Parameter(torch.zeros(k, rows, *latent_shape))
        self.log_std = nn.Parameter(torch.zeros(k, rows, *latent_shape))
        self.gamma = nn.Parameter(torch.zeros(k - 1, rows, *(latent_shape if gamma_per_element else ())))
        self.logits = nn.Parameter(torch.zeros(num_queries, components))

    @property
    def k(self) -> int:
        return len(self.times)

    def component_rows(self, idx: Tensor) -> Tensor:
        """The parameter rows of the queries ``idx``: (len(idx), M)."""
        return idx[:, None] * self.components + torch.arange(self.components, device=idx.device)

    @torch.no_grad()
    def initialize(self, prior, z_obs: Tensor, cfg: InitConfig, noise) -> None:
        """z_obs: each row's anchor in code space, (Q * M, *latent_shape) (the encoded observation, or a
        component's x0 estimate); noise: one draw per row."""
        sch = prior.schedule
        for k, s in enumerate(self.times):
            a, sg = float(sch.alpha(s)), float(sch.sigma(s))
            self.mu[k] = a * z_obs + cfg.noise_scale * sg * noise.like(z_obs)
            if k == 0:
                std = sg
            else:
                std = cfg.lower_std_factor * float(transition_std(sch, s, self.times[k - 1], 1.0))
            self.log_std[k] = torch.log(torch.tensor(std))
        self.gamma.fill_(cfg.gamma)

    def sample(self, prior, rows: Tensor, noise, with_kl: bool = False, with_path: bool = False,
               top: Tensor | None = None, correct=None):
        """Ancestral sampling through the hierarchy (Eq. 11), one sample per entry of ``rows``: returns z_Te,
        z_Ts, the per-sample KLs of the lower levels, and (``with_path``) every level's (prior mean, prior std,
        z_s, q's mean) for mixture densities. ``top``: a given z_Te per sample (only the lower levels drawn).
        ``correct(k, z)``: applied to each level's draw but the last before the next is drawn from it."""
        mu, std = self.mu[:, rows], self.log_std[:, rows].exp()
        z = mu[0] + std[0] * noise.randn(mu.shape[2:], mu) if top is None else top
        if correct is not None and self.k > 1:
            z = correct(0, z)
        z_top, kl, path = z, z.new_zeros(z.shape[0]), []
        for k in range(1, self.k):
            t, s = self.times[k - 1], self.times[k]
            x_var = float(prior.schedule.sigma(t)) ** 2 if self.variance == "unit-data" else 0.0
            p_mean, p_std = transition(prior.schedule, z, prior.predict_x0(z, t), s, t, eta=self.eta, x_var=x_var)
            g = per_sample(torch.sigmoid(self.gamma[k - 1, rows]), z)
            q_mean = g * p_mean + (1 - g) * mu[k]  # Eq. 12
            if with_kl:
                kl = kl + gaussian_kl(q_mean, std[k], p_mean, p_std).flatten(1).sum(1)
            z_next = q_mean + std[k] * noise.like(q_mean)
            if correct is not None and k < self.k - 1:
                z_next = correct(k, z_next)
            path.append((p_mean, p_std, z_next, q_mean))
            z = z_next
        return (z_top, z, kl, path) if with_path else (z_top, z, kl)

    def log_density(self, rows: Tensor, z_top: Tensor, path) -> Tensor:
        """log q_m(z) of each sample's whole hierarchy under every component m of its query: (B, M).

        ``rows`` (B, M): the parameter rows of each sample's query. The prior means along the path are shared
        by all components, so this costs no network call.
        """
        def log_normal(x, mean, std):  # summed over the event, broadcast over the M components
            return (-0.5 * ((x[:, None] - mean) / std) ** 2 - torch.log(std) - 0.9189385332).flatten(2).sum(2)

        mu, std = self.mu[:, rows], self.log_std[:, rows].exp()  # (K, B, M, ...)
        logq = log_normal(z_top, mu[0], std[0])
        for k, (p_mean, _, z_s, _) in enumerate(path, start=1):
            g = torch.sigmoid(self.gamma[k - 1, rows])
            g = g.view(*g.shape, *([1] * (mu.ndim - 1 - g.ndim)))  # (B, M) or per element (B, M, ...)
            logq = logq + log_normal(z_s, g * p_mean[:, None] + (1 - g) * mu[k], std[k])
        return logq


class SharedAcrossComponents:
    """Common random numbers for a mixture: every component of a query gets the same S draws, so that the
    components' bounds differ by their parameters, not by their noise (low-variance weight gradients).
    Rows are laid out query by query, then component, then sample."""

    def __init__(self, noise, components: int):
        self.noise, self.components = noise, components
        self.per_query = noise.per_query * components

    def _tile(self, draws: Tensor) -> Tensor:
        q, s = self.noise.num_queries, self.noise.per_query
        return draws.view(q, 1, s, *draws.shape[1:]).expand(q, self.components, s, *draws.shape[1:]).reshape(
            q * self.components * s, *draws.shape[1:])

    def randn(self, shape, like: Tensor) -> Tensor:
        return self._tile(self.noise.randn(shape, like))

    def like(self, tensor: Tensor) -> Tensor:
        return self.randn(tensor.shape[1:], tensor)

    def rand(self, like: Tensor) -> Tensor:
        return self._tile(self.noise.rand(like))

    def repeat(self, tensor: Tensor) -> Tensor:
        return tensor.repeat_interleave(self.per_query, 0)

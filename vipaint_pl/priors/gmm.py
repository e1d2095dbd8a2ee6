"""Gaussian-mixture prior: exact denoiser, score, sampling and exact posteriors.

p(x) = sum_i w_i N(m_i, C_i). Under z_t = alpha_t x + sigma_t eps the noisy marginal is
sum_i w_i N(alpha_t m_i, alpha_t^2 C_i + sigma_t^2 I), so the score, the denoiser E[x | z_t]
and, for y = A x + sigma_y n, the posterior p(x | y) are all available in closed form.
Internally everything is float64; inputs of shape (B, *event_shape) are flattened to (B, d).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ..errors import ShapeError
from ..schedule import NoiseSchedule
from .base import DiffusionPrior


class GaussianMixture:
    """A mixture of full-covariance Gaussians in R^d (float64) that can be sampled and evaluated."""

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor):
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.weights = self.weights / self.weights.sum()
        self.means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.ndim == 2:  # diagonal variances
            covs = torch.diag_embed(covs)
        self.covs = 0.5 * (covs + covs.transpose(-1, -2))
        n, d = self.means.shape
        if self.weights.shape != (n,) or self.covs.shape != (n, d, d):
            raise ShapeError("weights (n,), means (n, d) and covs (n, d, d) or (n, d) must agree")
        eye = torch.eye(d, dtype=torch.float64)
        self._chol = torch.linalg.cholesky(self.covs + 1e-12 * eye)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)
        out = self.means[idx].clone()
        for c in idx.unique().tolist():  # per component: memory O(n d), not O(n d^2)
            rows = idx == c
            out[rows] += noise[rows] @ self._chol[c].T
        return out

    def component_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; m_i, C_i) for every component: shape (B, n)."""
        x = x.to(torch.float64).reshape(x.shape[0], -1)
        diff = x.T[None] - self.means[:, :, None]  # (n, d, B): one triangular solve per component, B right-hand sides
        sol = torch.linalg.solve_triangular(self._chol, diff, upper=False)
        logdet = 2 * torch.log(torch.diagonal(self._chol, dim1=-2, dim2=-1)).sum(-1)
        return (-0.5 * (sol**2).sum(1) - 0.5 * logdet[:, None]).T - 0.5 * self.dim * math.log(2 * math.pi)

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self.component_log_prob(x) + self.weights.log(), dim=-1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """p(component i | x): shape (B, n)."""
        return torch.softmax(self.component_log_prob(x) + self.weights.log(), dim=-1)

    def mean(self) -> Tensor:
        return (self.weights[:, None] * self.means).sum(0)


class GaussianMixturePrior(DiffusionPrior):
    """A diffusion prior whose data distribution is a Gaussian mixture: every quantity is exact."""

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor, schedule: NoiseSchedule | None = None,
                 event_shape: tuple[int, ...] | None = None):
        super().__init__(schedule or NoiseSchedule.linear())
        self.mixture = GaussianMixture(weights, means, covs)
        self.event_shape = tuple(event_shape) if event_shape is not None else (self.mixture.dim,)
        if math.prod(self.event_shape) != self.mixture.dim:
            raise ShapeError(f"event_shape {self.event_shape} does not hold {self.mixture.dim} values")
        # C_i = U_i diag(lam_i) U_i^T, so alpha^2 C_i + sigma^2 I is diagonal in the same basis for every t.
        eye = torch.eye(self.mixture.dim, dtype=torch.float64)
        # isotropic components (c_i I): closed forms with (B, n) x (n, d) products, no (B, n, d) tensors
        self._isotropic = bool(torch.allclose(self.mixture.covs, self.mixture.covs[:, :1, :1] * eye))

    @functools.cached_property
    def _eigen(self) -> tuple[Tensor, Tensor]:
        """C_i = U_i diag(lam_i) U_i^T: alpha^2 C_i + sigma^2 I is diagonal in the same basis for every t.
        Computed on first use only (the isotropic path never needs it)."""
        lam, vec = torch.linalg.eigh(self.mixture.covs)
        return lam.clamp_min(0), vec

    def _flat(self, z: Tensor) -> Tensor:
        if tuple(z.shape[1:]) != self.event_shape:
            raise ShapeError(f"expected samples of shape (B, {self.event_shape}), got {tuple(z.shape)}")
        return z.reshape(z.shape[0], -1).to(torch.float64)

    def _responsibilities(self, logp: Tensor) -> Tensor:
        return torch.softmax(logp + self.mixture.weights.log()[None], dim=-1)

    def _isotropic_moments(self, x: Tensor, t: Tensor):
        """Isotropic C_i = c_i I: responsibilities r (B, n), var_i = a^2 c_i + s^2 (B, n), a (B, 1)."""
        a = self.schedule.alpha(t).to(torch.float64)[:, None]  # (B, 1)
        s = self.schedule.sigma(t).to(torch.float64)[:, None]
        c = self.mixture.covs[:, 0, 0].clamp_min(0)[None]  # (1, n)
        m = self.mixture.means
        var = a**2 * c + s**2
        sqdist = (x**2).sum(1, keepdim=True) - 2 * a * (x @ m.T) + a**2 * (m**2).sum(1)[None]  # ||z - a m_i||^2
        logp = -0.5 * sqdist / var - 0.5 * x.shape[1] * torch.log(2 * math.pi * var)
        return self._responsibilities(logp), var, a, c

    def _noisy_components(self, x: Tensor, t: Tensor):
        """General C_i: responsibilities, E[x | z_t, i], U^T (z - a m_i) and the noisy eigenvalues (B, n, d)."""
        a = self.schedule.alpha(t).to(torch.float64)[:, None, None]  # (B, 1, 1)
        s = self.schedule.sigma(t).to(torch.float64)[:, None, None]
        lam, vec = self._eigen
        diff = x[:, None, :] - a * self.mixture.means[None]  # (B, n, d)
        proj = torch.einsum("nji,bnj->bni", vec, diff)  # U^T (z - a m)
        var = a**2 * lam[None] + s**2  # eigenvalues of the noisy covariance
        logp = -0.5 * (proj**2 / var).sum(-1) - 0.5 * torch.log(2 * math.pi * var).sum(-1)
        # E[x | z, i] = m_i + C_i a (a^2 C_i + s^2 I)^-1 (z - a m_i)
        cond = self.mixture.means[None] + torch.einsum("nij,bnj->bni", vec, a * lam[None] / var * proj)
        return self._responsibilities(logp), cond, proj, var, vec

    def posterior_mean(self, z_t: Tensor, t) -> Tensor:
        """E[x | z_t] (exact), shaped like z_t."""
        t = torch.as_tensor(t, device=z_t.device).long().expand(z_t.shape[0])
        x = self._flat(z_t)
        if self._isotropic:  # sum_i r_i [m_i + k_i (z - a m_i)], k_i = a c_i / var_i
            r, var, a, c = self._isotropic_moments(x, t)
            rk = r * a * c / var
            out = (r - a * rk) @ self.mixture.means + rk.sum(1, keepdim=True) * x
        else:
            resp, cond, _, _, _ = self._noisy_components(x, t)
            out = (resp[..., None] * cond).sum(1)
        return out.reshape(z_t.shape).to(z_t.dtype)

    def score(self, z_t: Tensor, t) -> Tensor:
        """grad log p_t(z_t) (exact), shaped like z_t."""
        t = torch.as_tensor(t, device=z_t.device).long().expand(z_t.shape[0])
        x = self._flat(z_t)
        if self._isotropic:  # -sum_i r_i (z - a m_i) / var_i
            r, var, a, _ = self._isotropic_moments(x, t)
            out = -(r / var).sum(1, keepdim=True) * x + a * (r / var) @ self.mixture.means
        else:
            resp, _, proj, var, vec = self._noisy_components(x, t)
            grad = -torch.einsum("nij,bnj->bni", vec, proj / var)
            out = (resp[..., None] * grad).sum(1)
        return out.reshape(z_t.shape).to(z_t.dtype)

    def _eps(self, z_t: Tensor, t: Tensor) -> Tensor:
        # eps_hat = -sigma_t * score (Tweedie); exact for the mixture.
        s = self.schedule.sigma(t).to(torch.float64).view(-1, *([1] * (z_t.ndim - 1)))
        return (-s * self.score(z_t, t).to(torch.float64)).to(z_t.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.mixture.sample(n, generator).reshape(n, *self.event_shape).float()

    def marginal(self, t: int) -> GaussianMixture:
        """p_t(z_t), the data noised to time t: again a mixture, of N(alpha_t m_i, alpha_t^2 C_i + sigma_t^2 I)."""
        a, s = float(self.schedule.alpha(t)), float(self.schedule.sigma(t))
        m = self.mixture
        return GaussianMixture(m.weights, a * m.means, a**2 * m.covs + s**2 * torch.eye(m.dim, dtype=torch.float64))

    def exact_posterior(self, operator, y: Tensor, sigma_y: float) -> GaussianMixture:
        """p(x | y) for y = A x + sigma_y n with any linear operator: again a Gaussian mixture.

        K_i = C_i A^T (A C_i A^T + sigma_y^2 I)^-1; mean m_i + K_i (y - A m_i); cov C_i - K_i A C_i;
        weight proportional to w_i N(y; A m_i, A C_i A^T + sigma_y^2 I).
        """
        A = operator.as_matrix(self.event_shape).to(torch.float64)  # (m, d)
        y = y.reshape(-1).to(torch.float64)
        if y.numel() != A.shape[0]:
            raise ShapeError(f"y has {y.numel()} values but the operator produces {A.shape[0]}")
        C, m, w = self.mixture.covs, self.mixture.means, self.mixture.weights
        S = A @ C @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=torch.float64)  # (n, m, m)
        K = torch.linalg.solve(S, A @ C).transpose(-1, -2)  # C A^T S^-1 (S, C symmetric)
        resid = y[None] - m @ A.T  # (n, m)
        post_means = m + torch.einsum("nij,nj->ni", K, resid)
        post_covs = C - K @ A @ C
        chol = torch.linalg.cholesky(S)
        sol = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)[..., 0]
        log_ev = -0.5 * (sol**2).sum(-1) - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        post_w = torch.softmax(w.log() + log_ev, dim=0)
        return GaussianMixture(post_w, post_means, post_covs)


def grid_mixture_prior(dim: int, spacing: float = 8.0, seed: int = 0,
                       schedule: NoiseSchedule | None = None) -> GaussianMixturePrior:
    """The 25-component benchmark prior of Cardoso et al. (ICLR 2024).

    Means (-spacing*i, -spacing*j) repeated over the dimension for i, j in {-2..2}; identity
    covariances; weights from squared standard normals drawn with ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    means = []
    for i in range(-2, 3):
        for j in range(-2, 3):
            pair = torch.tensor([-spacing * i, -spacing * j], dtype=torch.float64)
            means.append(pair.repeat(dim // 2 + 1)[:dim])
    weights = torch.randn(25, generator=g, dtype=torch.float64) ** 2
    return GaussianMixturePrior(weights, torch.stack(means), torch.ones(25, dim, dtype=torch.float64), schedule)

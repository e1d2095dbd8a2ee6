"""Data fidelity: every measurement term a method uses, named once with its reduction.

Every function returns one value per sample, shape (B,). ``x`` is a decoded image batch (or the oracle's
vectors), ``y`` the observations repeated to the same batch, ``operator`` acts on that batch.

| term            | value per sample                              | used by                                   |
|-----------------|-----------------------------------------------|-------------------------------------------|
| residual_norm   | ``||y - A x||``                               | DPS, latent-DPS, GML-DPS, PSLD, ReSample  |
| squared_norm    | ``||y - A x||^2``                             | CoPaint; DPS with ``loss: squared``        |
| mean_squared    | ``mean_i (y - A x)_i^2``                      | RED-diff (x 1/2), ReSample's fits         |
| gaussian_nll    | ``||y - A x||^2 / (2 sigma^2)``               | VIPaint (``likelihood: gaussian``)        |
| laplace_nll     | ``sum_i |y - A x|_i / b``                     | VIPaint (``likelihood: laplace``)         |
| tweedie_nll     | ``r^T (sigma^2 I + v A A^T)^(-1) r / 2``      | VIPaint's Tweedie bound and sampler        |
| perceptual      | ``P(A^+ A x, A^+ y)`` for a perceptual net P  | VIPaint (``perceptual``)                  |
| gluing          | ``||z0 - E(A^T y + (I - A^T A) D(z0))||``     | PSLD (Rout et al., NeurIPS 2023, Eq. 8)   |
| fixed_point     | ``||z0 - E(D(z0))||``                         | GML-DPS (Rout et al., NeurIPS 2023)       |

Constants of the likelihoods (log-normalizers) are left out: they do not depend on x.
"""

from __future__ import annotations

from torch import Tensor


def residual(operator, x: Tensor, y: Tensor) -> Tensor:
    """A x - y, flattened per sample: (B, m)."""
    return (operator(x) - y).flatten(1)


def residual_norm(operator, x: Tensor, y: Tensor) -> Tensor:
    return residual(operator, x, y).norm(dim=1)


def squared_norm(operator, x: Tensor, y: Tensor) -> Tensor:
    return residual(operator, x, y).pow(2).sum(1)


def mean_squared(operator, x: Tensor, y: Tensor) -> Tensor:
    return residual(operator, x, y).pow(2).mean(1)


def gaussian_nll(operator, x: Tensor, y: Tensor, sigma: float) -> Tensor:
    return squared_norm(operator, x, y) / (2 * sigma**2)


def laplace_nll(operator, x: Tensor, y: Tensor, scale: float) -> Tensor:
    return residual(operator, x, y).abs().sum(1) / scale


def tweedie_nll(operator, x: Tensor, y: Tensor, x_var: float, sigma: float) -> Tensor:
    """-log N(y; A x, sigma^2 I + x_var A A^T) up to its constant: the likelihood of y when the image is x plus
    N(0, x_var I) (x a Tweedie estimate, x_var its spread), through the operator's ``whitened_square``."""
    return 0.5 * operator.whitened_square(residual(operator, x, y), x_var, sigma)


def perceptual(operator, x: Tensor, y: Tensor, net) -> Tensor:
    """A perceptual distance between the observed parts: net(A^+ A x, A^+ y)."""
    return net(operator.pinv(operator(x)), operator.pinv(y))


def glue(operator, x0: Tensor, y: Tensor) -> Tensor:
    """x0 with its measured part replaced by y: x0 + A^+ (y - A x0), so that A(glued) = y. PSLD's authors
    write A^T y + (I - A^T A) x0 with operators for which A^T = A^+ (inpainting); for super-resolution A^T is
    up-sampling divided by f^2 and only the pseudo-inverse keeps the glued image consistent with y."""
    return x0 + operator.pinv(y - operator(x0))


def gluing(prior, operator, z0: Tensor, x0: Tensor, y: Tensor) -> Tensor:
    """PSLD's gluing term for a code z0 and its decoding x0 = D(z0): the observed part from y, the rest
    from x0, encoded again (Rout et al., NeurIPS 2023, Eq. 9)."""
    return (z0 - prior.encode(glue(operator, x0, y))).flatten(1).norm(dim=1)


def fixed_point(prior, z0: Tensor, x0: Tensor) -> Tensor:
    """GML-DPS's term for a code z0 and its decoding x0 = D(z0): distance from the decoder-encoder fixed point."""
    return (z0 - prior.encode(x0)).flatten(1).norm(dim=1)


LIKELIHOODS = {"gaussian": gaussian_nll, "laplace": laplace_nll}
SIMPLE_LOSSES = {"norm": residual_norm, "squared": squared_norm, "mean_squared": mean_squared}

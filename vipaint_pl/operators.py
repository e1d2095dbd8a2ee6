"""Linear measurement operators y = A(x) + sigma_y * noise.

Each operator gives ``forward`` (A), ``transpose`` (A^T) and ``pinv`` (A^+), acting on batches
of images (B, C, H, W) -- or on flat vectors (B, d) for ``DenseLinear``. PSLD needs A^T y and the
projection A^T A; exact posteriors need the matrix, which ``as_matrix`` builds for any operator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import ConfigError, MaskError, ShapeError, check_binary_mask


class Operator(nn.Module):
    """Base class. Subclasses implement ``forward``, ``transpose`` and ``pinv``.

    ``sigma_y`` is the measurement noise level where it is known (0 otherwise); a likelihood whose
    scale is left unset (VIPaint's ``bound.likelihood_scale: null``) reads it.
    """

    sigma_y: float = 0.0

    def transpose(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def pinv(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def measure(self, x: Tensor, sigma_y: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """A(x) + sigma_y * n with n ~ N(0, I)."""
        y = self(x)
        if sigma_y > 0:
            y = y + sigma_y * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
        return y

    def project(self, x: Tensor) -> Tensor:
        """A^+ A x: the part of x the measurement sees."""
        return self.pinv(self(x))

    def conditional_noise(self, n: Tensor, prior_var: float, sigma_y: float) -> Tensor:
        """Sigma^(1/2) n for the covariance of x given y = A x + sigma_y e when x ~ N(m, prior_var I):
        Sigma = prior_var I - prior_var^2 A^T (prior_var A A^T + sigma_y^2 I)^(-1) A. This base class does not know
        A's structure and returns the upper bound prior_var^(1/2) n; ``Inpainting`` and ``DenseLinear`` are exact."""
        return prior_var**0.5 * n

    def whitened_square(self, residual: Tensor, prior_var: float, sigma_y: float) -> Tensor:
        """r^T (prior_var A A^T + sigma_y^2 I)^(-1) r per sample, for residuals r = y - A m: the exponent of
        p(y) when x ~ N(m, prior_var I); ``prior_var`` a float or one per sample (B,). This base class takes
        A A^T = I (exact for inpainting)."""
        return residual.flatten(1).pow(2).sum(1) / (prior_var + sigma_y**2)

    def gram_function(self, v: Tensor, f) -> Tensor:
        """f(A^T A) v, for ``f`` a function applied to each eigenvalue of A^T A (given and returned as a float64
        tensor): the closed forms of linear-Gaussian steps (e.g. DAPS's Langevin chain on a pixel prior). Only
        operators that know A^T A's eigenvectors have it (``knows_gram``): ``Inpainting`` and ``DenseLinear``."""
        raise NotImplementedError(f"{type(self).__name__} does not know the eigenvectors of A^T A")

    @property
    def knows_gram(self) -> bool:
        """Whether ``gram_function`` is available."""
        return type(self).gram_function is not Operator.gram_function

    def repeat_interleave(self, n: int) -> "Operator":
        """The operator for a batch in which every query's sample is repeated ``n`` times (as
        ``Tensor.repeat_interleave(n, 0)``). Operators that act alike on every sample return themselves."""
        return self

    @torch.no_grad()
    def as_matrix(self, event_shape: tuple[int, ...]) -> Tensor:
        """The dense matrix of A for inputs of shape ``event_shape``: (numel(out), numel(in)), float64."""
        d = math.prod(event_shape)
        basis = torch.eye(d, dtype=torch.float64).reshape(d, *event_shape)
        return self.double()(basis).reshape(d, -1).T.contiguous()


class Inpainting(Operator):
    """y = m * x with a binary mask m (1 = observed, 0 = missing). A = A^T = A^+ (a projection)."""

    def __init__(self, mask: Tensor, _checked: bool = False):
        super().__init__()
        mask = torch.as_tensor(mask)
        if mask.ndim == 2:
            mask = mask[None]
        if mask.ndim not in (3, 4):
            raise MaskError(f"mask must have shape (H, W), (C, H, W) or (B, C, H, W); got {tuple(mask.shape)}")
        if not _checked:  # reads the mask back from its device: once per mask, not per step
            check_binary_mask("mask", mask)
        self.register_buffer("mask", mask.float())

    def _mask_for(self, x: Tensor) -> Tensor:
        m = self.mask if self.mask.ndim == x.ndim else self.mask[None]
        if m.shape[-2:] != x.shape[-2:] or m.shape[-3] not in (1, x.shape[-3]):
            raise ShapeError(f"mask of shape {tuple(self.mask.shape)} does not fit images of shape {tuple(x.shape)}")
        return m.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return x * self._mask_for(x)

    transpose = forward
    pinv = forward

    def conditional_noise(self, n: Tensor, prior_var: float, sigma_y: float) -> Tensor:
        """Observed elements: variance prior_var sigma_y^2 / (prior_var + sigma_y^2); missing ones: prior_var."""
        observed = (prior_var * sigma_y**2 / (prior_var + sigma_y**2)) ** 0.5
        m = self._mask_for(n)
        return n * (m * observed + (1 - m) * prior_var**0.5)

    def gram_function(self, v: Tensor, f) -> Tensor:
        """A^T A = diag(m): eigenvalues 0 (missing) and 1 (observed), f taken at both in float64."""
        f0, f1 = f(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist()
        return v * (self._mask_for(v) * (f1 - f0) + f0)

    def repeat_interleave(self, n: int) -> "Inpainting":
        if self.mask.ndim < 4 or self.mask.shape[0] == 1 or n == 1:
            return self
        return Inpainting(self.mask.repeat_interleave(n, 0), _checked=True)

    @property
    def observed_fraction(self) -> float:
        return float(self.mask.mean())


class SuperResolution(Operator):
    """Average pooling by ``factor``. A^T is nearest upsampling / factor^2; A^+ is nearest upsampling."""

    def __init__(self, factor: int):
        super().__init__()
        if factor < 1 or int(factor) != factor:
            raise ConfigError(f"super-resolution factor must be a positive integer, got {factor}")
        self.factor = int(factor)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ShapeError(f"image size {tuple(x.shape[-2:])} is not divisible by factor {self.factor}")
        return F.avg_pool2d(x, self.factor)

    def pinv(self, y: Tensor) -> Tensor:  # A A^T = I / f^2, so A^+ = f^2 A^T
        return F.interpolate(y, scale_factor=self.factor, mode="nearest")

    def transpose(self, y: Tensor) -> Tensor:
        return self.pinv(y) / self.factor**2


class GaussianBlur(Operator):
    """Circular convolution with a normalized Gaussian kernel, diagonal in the Fourier basis.

    The circular boundary makes A^T (conjugate filter) and A^+ (inverse filter on frequencies whose
    gain exceeds ``rcond`` times the largest, zero elsewhere) exact.
    """

    def __init__(self, kernel_size: int = 9, sigma: float = 2.0, rcond: float = 1e-3):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if sigma <= 0:
            raise ConfigError(f"blur sigma must be positive, got {sigma}")
        r = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
        g = torch.exp(-(r**2) / (2 * sigma**2))
        k = torch.outer(g, g)
        self.register_buffer("kernel", (k / k.sum()).float())
        self.kernel_size, self.sigma, self.rcond = kernel_size, sigma, rcond

    def _transfer(self, h: int, w: int, device) -> Tensor:
        if self.kernel_size > min(h, w):
            raise ShapeError(f"blur kernel {self.kernel_size} is larger than the image {h}x{w}")
        pad = torch.zeros(h, w, dtype=torch.float64, device=device)
        k, c = self.kernel.to(device, torch.float64), self.kernel_size // 2
        pad[: self.kernel_size, : self.kernel_size] = k
        pad = torch.roll(pad, shifts=(-c, -c), dims=(0, 1))  # kernel centred at the origin
        return torch.fft.fft2(pad)

    def _filter(self, x: Tensor, gain) -> Tensor:
        H = gain(self._transfer(x.shape[-2], x.shape[-1], x.device))
        out = torch.fft.ifft2(torch.fft.fft2(x.to(torch.float64)) * H).real
        return out.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self._filter(x, lambda H: H)

    def transpose(self, y: Tensor) -> Tensor:
        return self._filter(y, torch.conj)

    def pinv(self, y: Tensor) -> Tensor:
        def inverse(H):
            keep = H.abs() > self.rcond * H.abs().max()
            return torch.where(keep, 1.0 / torch.where(keep, H, torch.ones_like(H)), torch.zeros_like(H))

        return self._filter(y, inverse)


class DenseLinear(Operator):
    """y = M x for a dense matrix M (m, d), acting on the flattened input."""

    def __init__(self, matrix: Tensor):
        super().__init__()
        matrix = torch.as_tensor(matrix)
        if matrix.ndim != 2:
            raise ShapeError(f"matrix must be 2-D (m, d), got shape {tuple(matrix.shape)}")
        self.register_buffer("matrix", matrix.clone())
        self.register_buffer("matrix_pinv", torch.linalg.pinv(matrix.to(torch.float64)).to(matrix.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return self._flat(x) @ self.matrix.to(x.dtype).T

    def _flat(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.matrix.shape[1]:
            raise ShapeError(f"input has {flat.shape[1]} values per sample, the matrix takes {self.matrix.shape[1]}")
        return flat

    def transpose(self, y: Tensor) -> Tensor:
        return y @ self.matrix.to(y.dtype)

    def pinv(self, y: Tensor) -> Tensor:
        return y @ self.matrix_pinv.to(y.dtype).T

    def project(self, x: Tensor) -> Tensor:
        return self.pinv(self(x)).reshape(x.shape)

    def conditional_noise(self, n: Tensor, prior_var: float, sigma_y: float) -> Tensor:
        """With M = U diag(s) V^T: prior_var along V's orthogonal complement, prior_var sigma_y^2 / (prior_var s^2 +
        sigma_y^2) along each right singular vector."""
        _, s, v = self._svd_parts(n)
        flat = n.reshape(n.shape[0], -1)
        along = flat @ v  # coordinates in the row space
        scale = (prior_var * sigma_y**2 / (prior_var * s**2 + sigma_y**2)).sqrt()
        out = prior_var**0.5 * (flat - along @ v.T) + (along * scale) @ v.T
        return out.reshape(n.shape)

    def whitened_square(self, residual: Tensor, prior_var: float, sigma_y: float) -> Tensor:
        u, s, _ = self._svd_parts(residual)
        prior_var = torch.as_tensor(prior_var, dtype=s.dtype, device=s.device).reshape(-1, 1)  # a float or (B,)
        return ((residual.flatten(1) @ u).pow(2) / (prior_var * s**2 + sigma_y**2)).sum(1)

    def gram_function(self, v: Tensor, f) -> Tensor:
        """With M = U diag(s) V^T: f(A^T A) v = f(0) v + V ((f(s^2) - f(0)) * V^T v), f taken in float64."""
        _, s, _ = self._svd_parts(torch.empty(0, dtype=torch.float64, device=v.device))  # on v's device
        f0 = float(f(torch.zeros(1, dtype=torch.float64)))  # on the host: no read-back
        gain = (f(s**2) - f0).to(v.dtype)
        _, _, basis = self._svd_parts(v)
        flat = self._flat(v)
        return (f0 * flat + ((flat @ basis) * gain) @ basis.T).reshape(v.shape)

    def _svd_parts(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """U (m, k), s (k), V (d, k) of the matrix, computed once, on ``like``'s device and dtype."""
        if not hasattr(self, "_svd"):
            u, s, vh = torch.linalg.svd(self.matrix.to(torch.float64), full_matrices=False)
            self._svd = (u, s, vh.T.contiguous())
        return tuple(part.to(device=like.device, dtype=like.dtype) for part in self._svd)


class CoordinateSubset(DenseLinear):
    """y = x[keep] on the flattened input: inpainting of a vector, the DenseLinear of the identity's rows ``keep``.

    A and A^T are an index and a scatter instead of products with the (m, d) 0 / 1 matrix; they give the
    product's values exactly (each output is one input times 1 plus zeros), in O(m) instead of O(m d)."""

    def __init__(self, keep: Tensor, d: int, dtype: torch.dtype = torch.float64):
        keep = torch.as_tensor(keep, dtype=torch.long)
        if keep.ndim != 1 or len(keep) == 0 or int(keep.min()) < 0 or int(keep.max()) >= d:
            raise ShapeError(f"keep must be a non-empty 1-D index into {d} coordinates, got {keep.tolist()[:8]}...")
        super().__init__(torch.eye(d, dtype=dtype)[keep])
        self.register_buffer("keep", keep.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self._flat(x)[:, self.keep]

    def transpose(self, y: Tensor) -> Tensor:
        return y.new_zeros(y.shape[0], self.matrix.shape[1]).index_copy(1, self.keep, y)


def random_dense_operator(d_x: int, d_y: int, seed: int = 0) -> DenseLinear:
    """A = U diag(s) V^T from the SVD of a Gaussian (d_y, d_x) matrix, s replaced by sorted U[0, 1].

    The operator of Cardoso et al. (ICLR 2024)'s Gaussian-mixture benchmark.
    """
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(d_y, d_x, generator=g, dtype=torch.float64)
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    s = torch.sort(torch.rand(d_y, generator=g, dtype=torch.float64), descending=True).values
    return DenseLinear(U @ torch.diag(s) @ Vh)


TASKS = ("inpainting", "super_resolution", "deblur")


def operator_for_task(task: str, masks: Tensor, **kwargs) -> Operator:
    """The measurement operator of a task for a batch of masks (B, 1, H, W)."""
    if task == "inpainting":
        return Inpainting(masks)
    if task == "super_resolution":
        return SuperResolution(int(kwargs.get("factor", 4)))
    if task == "deblur":
        return GaussianBlur(int(kwargs.get("kernel_size", 9)), float(kwargs.get("sigma", 2.0)))
    raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")

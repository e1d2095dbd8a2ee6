import pytest
import torch

from vipaint_pl.errors import MaskError, ShapeError
from vipaint_pl.operators import CoordinateSubset, DenseLinear, GaussianBlur, Inpainting, SuperResolution


def _ops():
    mask = (torch.rand(1, 8, 8) > 0.5).float()
    mask[0, 0, 0] = 1
    return {
        "inpainting": (Inpainting(mask), (2, 3, 8, 8)),
        "sr": (SuperResolution(2), (2, 3, 8, 8)),
        "blur": (GaussianBlur(5, 1.5), (2, 3, 8, 8)),
        "dense": (DenseLinear(torch.randn(5, 12, dtype=torch.float64)), (2, 12)),
        "subset": (CoordinateSubset(torch.tensor([7, 0, 3, 11]), 12), (2, 12)),
    }


@pytest.mark.parametrize("name", ["inpainting", "sr", "blur", "dense", "subset"])
def test_adjoint_identity(name):
    op, shape = _ops()[name]
    op = op.double()
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.randn(op(x).shape, dtype=torch.float64)
    lhs = (op(x) * y).sum()
    rhs = (x * op.transpose(y)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["inpainting", "sr", "blur", "dense", "subset"])
def test_pseudo_inverse_penrose_conditions(name):
    op, shape = _ops()[name]
    op = op.double()
    x = torch.randn(shape, dtype=torch.float64)
    # A A^+ A = A  and  A^+ A is a projection
    torch.testing.assert_close(op(op.pinv(op(x))), op(x), rtol=1e-6, atol=1e-6)
    p = op.project(x)
    torch.testing.assert_close(op.project(p), p, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["inpainting", "sr", "blur", "dense", "subset"])
def test_pinv_matches_dense_matrix_pinv(name):
    op, shape = _ops()[name]
    op = op.double()
    A = op.as_matrix(shape[1:])
    y = torch.randn(2, A.shape[0], dtype=torch.float64)
    out_shape = op(torch.zeros(shape, dtype=torch.float64)).shape
    ours = op.pinv(y.reshape(out_shape)).reshape(2, -1)
    ref = y @ torch.linalg.pinv(A, rtol=1e-3).T
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_blur_preserves_constants_and_sums():
    op = GaussianBlur(5, 1.0)
    x = torch.ones(1, 1, 8, 8)
    torch.testing.assert_close(op(x), x)


def test_inpainting_rejects_bad_masks():
    with pytest.raises(MaskError, match="binary"):
        Inpainting(torch.full((1, 4, 4), 0.5))
    with pytest.raises(MaskError, match="no observed pixel"):
        Inpainting(torch.zeros(1, 4, 4))
    op = Inpainting(torch.ones(1, 4, 4))
    with pytest.raises(ShapeError, match="does not fit"):
        op(torch.zeros(1, 3, 5, 5))


def test_other_operator_errors():
    with pytest.raises(ShapeError, match="divisible"):
        SuperResolution(3)(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        GaussianBlur(4)
    with pytest.raises(ShapeError, match="values per sample"):
        DenseLinear(torch.zeros(2, 3))(torch.zeros(1, 4))


def test_measure_adds_noise_of_the_given_scale():
    op = DenseLinear(torch.eye(1000))
    y = op.measure(torch.zeros(1, 1000), sigma_y=0.3, generator=torch.Generator().manual_seed(0))
    assert abs(float(y.std()) - 0.3) < 0.03


def _gaussian_conditional(A: torch.Tensor, prior_var: float, sigma_y: float):
    """Cov(x | y) for x ~ N(m, prior_var I), y = A x + sigma_y e, and (prior_var A A^T + sigma_y^2 I)^-1, float64."""
    inner = torch.linalg.inv(prior_var * A @ A.T + sigma_y**2 * torch.eye(A.shape[0], dtype=torch.float64))
    return prior_var * torch.eye(A.shape[1], dtype=torch.float64) - prior_var**2 * A.T @ inner @ A, inner


@pytest.mark.parametrize("make", ["inpainting", "dense"])
def test_conditional_noise_and_whitened_square_match_the_gaussian_conditional(make):
    from vipaint_pl.operators import random_dense_operator

    if make == "inpainting":
        mask = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]])
        op, shape = Inpainting(mask), (1, 2, 3)
    else:
        op, shape = random_dense_operator(6, 3, seed=2), (6,)
    A = op.as_matrix(shape)
    for prior_var, sigma_y in [(0.8, 0.05), (0.01, 0.5)]:
        cov, inner = _gaussian_conditional(A, prior_var, sigma_y)
        basis = torch.eye(6, dtype=torch.float64).reshape(6, *shape)
        root = op.conditional_noise(basis, prior_var, sigma_y).reshape(6, 6).T  # column j = Sigma^(1/2) e_j
        torch.testing.assert_close(root @ root.T, cov, rtol=1e-10, atol=1e-12)
        r = torch.randn(4, A.shape[0], dtype=torch.float64)
        if make == "inpainting":  # y and A x are both 0 where the mask is 0
            r = r @ A
        residual = r.reshape(4, *shape) if make == "inpainting" else r
        torch.testing.assert_close(op.whitened_square(residual, prior_var, sigma_y), ((r @ inner) * r).sum(1))


def test_coordinate_subset_gives_the_dense_products_values_exactly():
    """The index and scatter give bit for bit what the product with the identity's rows gives, gradients too."""
    keep = torch.tensor([5, 1, 2, 9, 7])
    subset, dense = CoordinateSubset(keep, 10), DenseLinear(torch.eye(10, dtype=torch.float64)[keep])
    x = torch.randn(3, 10, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 5, dtype=torch.float64)
    assert torch.equal(subset(x), dense(x)) and torch.equal(subset.transpose(y), dense.transpose(y))
    assert torch.equal(subset.pinv(y), dense.pinv(y)) and torch.equal(subset.matrix, dense.matrix)
    (g_subset,) = torch.autograd.grad((subset(x) * y).sum(), x)
    (g_dense,) = torch.autograd.grad((dense(x) * y).sum(), x)
    assert torch.equal(g_subset, g_dense)
    with pytest.raises(ShapeError, match="non-empty 1-D index into 10"):
        CoordinateSubset(torch.tensor([3, 10]), 10)
    with pytest.raises(ShapeError, match="takes 10"):
        subset(torch.zeros(1, 11))

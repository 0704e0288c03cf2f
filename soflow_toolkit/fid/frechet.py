r"""The Fréchet distance between two Gaussians, in float64 torch.

For feature statistics $(\mu_1, \Sigma_1)$ and $(\mu_2, \Sigma_2)$ (Heusel et al., 2017, "GANs
Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"):

$$d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
        - 2 \operatorname{tr}\big(\Sigma_1 \Sigma_2\big)^{1/2}.$$

The TensorFlow evaluators take `scipy.linalg.sqrtm` of the non-symmetric product $\Sigma_1\Sigma_2$
and drop the imaginary part that rounding leaves. Here the trace is computed from symmetric matrices
only: with $A = \Sigma_1^{1/2}$ (the symmetric PSD root), $\Sigma_1\Sigma_2 = A^{-1}(A\Sigma_2A)A$ is
similar to the symmetric PSD matrix $A \Sigma_2 A$, so
$\operatorname{tr}(\Sigma_1\Sigma_2)^{1/2} = \sum_i \sqrt{\lambda_i(A\Sigma_2A)}$, from two symmetric
eigendecompositions (`torch.linalg.eigh`) whose eigenvalues are real by construction. This holds for
singular covariances too (fewer samples than feature dimensions), where `sqrtm` of the product is
ill-conditioned.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .statistics import FeatureStatistics

__all__ = ["frechet_distance", "sqrtm_psd", "trace_sqrt_product"]

# Relative asymmetry tolerated in a covariance before it is refused (float32 round trips of a
# symmetric matrix, such as the ADM reference statistics, stay far below this).
_SYMMETRY_RTOL = 1e-5


def _check_covariance(matrix: Tensor, name: str) -> Tensor:
    if not isinstance(matrix, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (D, D); got {type(matrix).__name__}")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be a square matrix of shape (D, D); got shape {tuple(matrix.shape)}")
    if not matrix.is_floating_point():
        raise TypeError(f"{name} must be a floating-point matrix; got dtype {matrix.dtype}")
    matrix = matrix.to(torch.float64)
    if not bool(torch.isfinite(matrix).all()):
        raise ValueError(f"{name} contains NaN or infinite entries")
    scale = float(matrix.abs().max()) if matrix.numel() else 0.0
    asymmetry = float((matrix - matrix.T).abs().max()) if matrix.numel() else 0.0
    if asymmetry > _SYMMETRY_RTOL * max(scale, 1e-300):
        raise ValueError(
            f"{name} must be symmetric (a covariance); got max |M - M^T| = {asymmetry:.3g} "
            f"for entries of size up to {scale:.3g}"
        )
    return (matrix + matrix.T) / 2


def sqrtm_psd(matrix: Tensor) -> Tensor:
    r"""The symmetric positive semi-definite square root of a covariance matrix, in float64.

    With the eigendecomposition $M = V \operatorname{diag}(\lambda) V^\top$ (`torch.linalg.eigh`),
    $M^{1/2} = V \operatorname{diag}(\sqrt{\lambda}) V^\top$. Eigenvalues at or below the rounding
    level of the decomposition, $D \cdot \epsilon_{64} \cdot \lambda_{\max}$ (the rank threshold of
    `numpy.linalg.matrix_rank`), are set to 0: they are zero eigenvalues that rounding made slightly
    positive or negative, and the square root would blow them up to $\sim 10^{-8}$. So the result is
    real, PSD, and exact for singular covariances (fewer samples than features).

    Args:
        matrix: a symmetric PSD matrix, shape `(D, D)`, any floating dtype (computed in float64).

    Returns:
        $M^{1/2}$, shape `(D, D)`, float64, on `matrix`'s device; $M^{1/2} M^{1/2} = M$.

    Raises:
        TypeError: if `matrix` is not a floating tensor.
        ValueError: if it is not square, not symmetric, or not finite.

    Examples:
        >>> import torch
        >>> sqrtm_psd(torch.diag(torch.tensor([4.0, 9.0])))
        tensor([[2., 0.],
                [0., 3.]], dtype=torch.float64)
    """
    matrix = _check_covariance(matrix, "matrix")
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    root: Tensor = (eigenvectors * _sqrt_eigenvalues(eigenvalues)) @ eigenvectors.T
    return root


def _sqrt_eigenvalues(eigenvalues: Tensor) -> Tensor:
    """Square roots of a PSD matrix's eigenvalues, those within rounding of zero set to 0."""
    if eigenvalues.numel() == 0:
        return eigenvalues
    tolerance = eigenvalues.numel() * torch.finfo(torch.float64).eps * eigenvalues.abs().max()
    return torch.where(eigenvalues > tolerance, eigenvalues, torch.zeros_like(eigenvalues)).sqrt()


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    r"""$\operatorname{tr}(\Sigma_1 \Sigma_2)^{1/2}$ for two covariance matrices, in float64.

    Computed as $\sum_i \sqrt{\lambda_i(A \Sigma_2 A)}$ with $A = \Sigma_1^{1/2}$ (see the module
    docstring): the eigenvalues of $\Sigma_1\Sigma_2$ are those of the symmetric PSD $A\Sigma_2A$.
    Eigenvalues within rounding of zero count as zero, as in [`sqrtm_psd`][soflow_toolkit.fid.sqrtm_psd].

    Args:
        sigma1: covariance, shape `(D, D)`.
        sigma2: covariance, shape `(D, D)`.

    Returns:
        A 0-d float64 tensor, $\ge 0$.

    Raises:
        ValueError: if the shapes differ or a matrix is not a finite symmetric square matrix.

    Examples:
        >>> import torch
        >>> a, b = torch.diag(torch.tensor([1.0, 4.0])), torch.diag(torch.tensor([4.0, 9.0]))
        >>> float(trace_sqrt_product(a, b))  # sqrt(1 * 4) + sqrt(4 * 9)
        8.0
    """
    sigma1 = _check_covariance(sigma1, "sigma1")
    sigma2 = _check_covariance(sigma2, "sigma2")
    if sigma1.shape != sigma2.shape:
        raise ValueError(
            f"the covariances must have the same shape; got {tuple(sigma1.shape)} and {tuple(sigma2.shape)}"
        )
    sigma2 = sigma2.to(sigma1.device)
    root = sqrtm_psd(sigma1)
    inner = root @ sigma2 @ root
    return _sqrt_eigenvalues(torch.linalg.eigvalsh((inner + inner.T) / 2)).sum()


def frechet_distance(first: FeatureStatistics, second: FeatureStatistics) -> float:
    r"""The Fréchet distance $d^2$ between the Gaussians of two feature statistics (the FID).

    $d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
    - 2 \operatorname{tr}(\Sigma_1 \Sigma_2)^{1/2}$, in float64. This is the squared 2-Wasserstein
    distance between $\mathcal N(\mu_1, \Sigma_1)$ and $\mathcal N(\mu_2, \Sigma_2)$, so it is
    symmetric and zero for equal statistics; values that rounding would make negative are returned
    as 0.

    Args:
        first: statistics $(\mu_1, \Sigma_1)$, e.g. of the generated samples.
        second: statistics $(\mu_2, \Sigma_2)$ of the same feature dimension, e.g. the reference batch.

    Returns:
        $d^2$ as a Python float.

    Raises:
        TypeError: if an argument is not a [`FeatureStatistics`][soflow_toolkit.fid.FeatureStatistics].
        ValueError: if the feature dimensions differ.

    Examples:
        >>> import torch
        >>> a = FeatureStatistics(torch.zeros(2), torch.eye(2))
        >>> b = FeatureStatistics(torch.tensor([3.0, 4.0]), 4 * torch.eye(2))
        >>> frechet_distance(a, b)  # |mu|^2 + sum (sqrt 1 - sqrt 4)^2 = 25 + 2
        27.0
    """
    for name, stats in (("first", first), ("second", second)):
        if not isinstance(stats, FeatureStatistics):
            raise TypeError(f"{name} must be a FeatureStatistics; got {type(stats).__name__}")
    if first.dim != second.dim:
        raise ValueError(
            f"the statistics have different feature dimensions: {first.dim} and {second.dim} "
            "(use the same feature extractor and layer for both)"
        )
    device = first.mean.device
    mu1, mu2 = first.mean, second.mean.to(device)
    sigma1, sigma2 = first.cov, second.cov.to(device)
    diff = mu1 - mu2
    distance = (
        diff @ diff + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    )
    return max(float(distance), 0.0)

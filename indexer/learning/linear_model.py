"""Multinomial logistic regression in torch, for linear probes on frozen features.

Full-batch L-BFGS on standardised features; the L2 strength is picked by inner
cross-validation, walking the grid from strong to weak regularisation with each fit
warm-started from the previous one. The same code runs on CPU and CUDA; the device is an
argument.

The objective is scikit-learn's: mean cross-entropy + ||W||² / (2·C·n), intercept not
penalised, stopping when every gradient entry is below 1e-4; so `C` means what it means
there. With fewer samples than dimensions it is solved in the samples' principal axes (a
rotation, which leaves the L2 penalty unchanged, restricted to the span of the data where
the optimum lies), each axis scaled by 1 / sqrt(κ·variance + λ) to even out curvature.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from indexer.learning.evaluation import stratified_folds

log = logging.getLogger(__name__)

#: Inverse L2 strengths tried by inner cross-validation (scikit-learn's C).
C_GRID: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
INNER_FOLDS = 3
MAX_ITER = 150
#: Stop once every gradient entry of the (mean-loss) objective is this small, as
#: scikit-learn's lbfgs solver does with its default tol.
GRADIENT_TOLERANCE = 1e-4
#: Features with a smaller spread than this are left unscaled (constant columns).
MIN_SCALE = 1e-6
#: Principal axes with less variance than this share of the largest are dropped.
RANK_TOLERANCE = 1e-7
#: Below this many multiply-adds per logits product, CPU fits run on one thread (see
#: `_small_on_one_thread`).
SMALL_WORK = 2_000_000
#: Typical curvature of the softmax cross-entropy per unit of feature variance, for the
#: preconditioner; only the speed of convergence depends on it.
CURVATURE = 0.1


@dataclass(frozen=True)
class LinearModel:
    """A trained probe: softmax((x - mean) / scale @ weight + bias)."""

    weight: np.ndarray  # (dim, classes) float32
    bias: np.ndarray  # (classes,)
    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,)
    c: float

    def probabilities(self, x: np.ndarray, device: torch.device) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, len(self.bias)), np.float32)
        with torch.inference_mode():
            z = (_tensor(x, device) - _tensor(self.mean, device)) / _tensor(self.scale, device)
            logits = z @ _tensor(self.weight, device) + _tensor(self.bias, device)
            return torch.softmax(logits, dim=1).cpu().numpy()


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    a = np.ascontiguousarray(a, dtype=np.float32)
    # Arrays read from SQL bytes are read-only; torch wants memory it may write.
    return torch.as_tensor(a if a.flags.writeable else a.copy(), device=device)


def fit_linear(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    device: torch.device,
    c_grid: Sequence[float] = C_GRID,
    seed: int = 0,
) -> LinearModel:
    """Standardise `x`, pick C from `c_grid` by inner stratified CV, refit on all of `x`."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale < MIN_SCALE, 1.0, scale)
    with _small_on_one_thread(device, len(x) * min(x.shape) * n_classes):
        basis = _Basis.of(_tensor((x - mean) / scale, device))
        yt = torch.as_tensor(y, dtype=torch.long, device=device)
        grid = sorted(c_grid)
        c, start = _pick_c(basis, yt, n_classes, grid, seed) if len(grid) > 1 else (grid[0], None)
        v, bias = _fit(basis, yt, c, n_classes, start)
    return LinearModel(
        weight=basis.weight(v).cpu().numpy(),
        bias=bias.cpu().numpy(),
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        c=float(c),
    )


_threads_lock = threading.Lock()
_one_thread_users = 0
_saved_threads = 0


@contextlib.contextmanager
def _small_on_one_thread(device: torch.device, work: int) -> Iterator[None]:
    """Run a small CPU fit on one intra-op thread. L-BFGS makes thousands of tiny tensor
    ops, and MKL splits even a 12x24 GEMM across threads: on a busy machine each split
    costs milliseconds (measured 8 ms against 4 µs single-threaded, 20x slower fits).
    torch's thread count is process-wide, so concurrent fits share one save/restore."""
    global _one_thread_users, _saved_threads
    if device.type != "cpu" or work > SMALL_WORK:
        yield
        return
    with _threads_lock:
        if _one_thread_users == 0:
            _saved_threads = torch.get_num_threads()
            torch.set_num_threads(1)
        _one_thread_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _one_thread_users -= 1
            if _one_thread_users == 0:
                torch.set_num_threads(_saved_threads)


@dataclass(frozen=True)
class _Basis:
    """The training features as the solver sees them: z = xs @ axes. With fewer samples
    than dimensions, the axes are the principal axes of the samples (the optimum has no
    weight outside their span, so the problem shrinks to n dimensions); otherwise the
    standardised features themselves (axes None, unit variance)."""

    z: torch.Tensor  # (n, rank)
    axes: torch.Tensor | None  # (dim, rank) orthonormal columns, or None for the identity
    variance: torch.Tensor  # (rank,)

    @classmethod
    def of(cls, xs: torch.Tensor) -> _Basis:
        n, dim = xs.shape
        if n >= dim:
            return cls(xs, None, torch.ones(dim, device=xs.device))
        x64 = xs.double()
        eigenvalues, vectors = torch.linalg.eigh(x64 @ x64.T)
        keep = eigenvalues > RANK_TOLERANCE * eigenvalues.max().clamp(min=1e-30)
        root = eigenvalues[keep].sqrt()
        axes = (x64.T @ vectors[:, keep]) / root
        z = vectors[:, keep] * root
        variance = eigenvalues[keep] / n
        return cls(z.float().contiguous(), axes.float().contiguous(), variance.float())

    def rows(self, mask: torch.Tensor) -> _Basis:
        return _Basis(self.z[mask], self.axes, self.variance)

    def weight(self, v: torch.Tensor) -> torch.Tensor:
        """Weights on the standardised features for solver weights `v`."""
        return v if self.axes is None else self.axes @ v


def _pick_c(
    basis: _Basis, y: torch.Tensor, n_classes: int, c_grid: list[float], seed: int
) -> tuple[float, tuple[torch.Tensor, torch.Tensor]]:
    """The C with the best mean held-out accuracy over inner folds (log-loss breaks ties),
    and a warm start for the final fit (the mean of the folds' solutions at that C)."""
    labels = y.cpu().numpy()
    smallest = int(np.bincount(labels, minlength=n_classes)[np.unique(labels)].min())
    k = max(2, min(INNER_FOLDS, smallest))
    folds = torch.as_tensor(stratified_folds(labels, k, seed), device=y.device)
    accuracy = np.zeros((k, len(c_grid)))
    log_loss = np.zeros((k, len(c_grid)))
    solutions: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in c_grid]
    for fold in range(k):
        train, test = folds != fold, folds == fold
        inner = basis.rows(train)
        start = None
        for i, c in enumerate(c_grid):  # ascending C: each fit starts from the last one
            start = _fit(inner, y[train], c, n_classes, start)
            solutions[i].append(start)
            with torch.inference_mode():
                logits = basis.z[test] @ start[0] + start[1]
                accuracy[fold, i] = float((logits.argmax(dim=1) == y[test]).float().mean())
                log_loss[fold, i] = float(F.cross_entropy(logits, y[test]))
    mean_accuracy, mean_loss = accuracy.mean(axis=0), log_loss.mean(axis=0)
    best = min(range(len(c_grid)), key=lambda i: (-round(mean_accuracy[i], 6), mean_loss[i]))
    log.debug("inner CV accuracy per C: %s -> C=%s", mean_accuracy.round(3), c_grid[best])
    v = torch.stack([v for v, _ in solutions[best]]).mean(dim=0)
    bias = torch.stack([b for _, b in solutions[best]]).mean(dim=0)
    return c_grid[best], (v, bias)


def _fit(
    basis: _Basis,
    y: torch.Tensor,
    c: float,
    n_classes: int,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_iter: int = MAX_ITER,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise mean cross-entropy + ||V||² / (2·c·n) over logits z @ V + b; returns
    (V (rank, classes), b). L-BFGS runs on Q = V / h, h = 1 / sqrt(κ·variance + λ)."""
    n, rank = basis.z.shape
    l2 = 1.0 / (c * max(1, n))
    h = (CURVATURE * basis.variance + l2).rsqrt()
    scaled = basis.z * h
    penalty_weight = 0.5 * l2 * h.pow(2)[:, None]
    if start is None:
        q = torch.zeros(rank, n_classes, device=basis.z.device)
        bias = torch.zeros(n_classes, device=basis.z.device)
    else:
        q, bias = start[0] / h[:, None], start[1].clone()
    q.requires_grad_(True)
    bias.requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [q, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=GRADIENT_TOLERANCE,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(scaled @ q + bias, y) + (penalty_weight * q.pow(2)).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    log.debug("L-BFGS C=%g: %s iterations", c, optimiser.state[q].get("n_iter"))
    return q.detach() * h[:, None], bias.detach()

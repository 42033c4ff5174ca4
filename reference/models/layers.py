"""Hand-written layers of the reference models: the parts the suite exists to verify.

* :class:`LocalResponseNorm` — Krizhevsky et al. 2012, section 3.3, with the window confined to
  channel groups (the two GPUs of the original network).
* :class:`AdaptiveAvgPool2d` — torch's forward, with a backward that is deterministic on CUDA.
* :class:`Subsampling`, :class:`SparseConv2d`, :class:`EuclideanRBF`, :class:`GaussianRBF`,
  :class:`Squash` — LeCun et al. 1998, section II.B and appendix A.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.models.checks import check_floating

__all__ = [
    "AdaptiveAvgPool2d",
    "EuclideanRBF",
    "GaussianRBF",
    "LocalResponseNorm",
    "SparseConv2d",
    "Squash",
    "Subsampling",
]


class LocalResponseNorm(nn.Module):
    """b_c = a_c / (k + alpha * sum_{c' in window(c)} a_c'^2)^beta, the window ``size`` channels wide.

    ``alpha`` is the paper's: it is *not* divided by ``size`` (torch.nn.LocalResponseNorm divides it,
    the Caffe convention), so this layer equals ``nn.LocalResponseNorm(size, size * alpha, beta, k)``.
    Windows stop at the edges of each of ``groups`` equal channel groups, as in the two-GPU network.

    Takes what torch's layer takes: (N, C, *) with one or more dimensions after the channels. The denominator
    is computed as ``(sum / size) * (size * alpha) + k``, the operations torch's layer runs in the same order,
    so the forward pass is bitwise equal to it. Only elementwise ops, padding and slicing are used: forward
    and backward are deterministic on CUDA (torch's layer runs avg_pool2d/3d, whose CUDA backward is not).
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, groups: int = 1) -> None:
        super().__init__()
        if size < 1 or groups < 1:
            raise ValueError(f"LocalResponseNorm needs size >= 1 and groups >= 1, got size={size}, groups={groups}")
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        per_group = x.shape[1] // self.groups
        squares = (x * x).unflatten(1, (self.groups, per_group))  # (N, G, C/G, *)
        padded = F.pad(squares, (0, 0) * (x.dim() - 2) + (self.size // 2, (self.size - 1) // 2))  # channels only
        window = padded[:, :, 0:per_group].clone()  # sums run left to right, as in torch's avg_pool
        for offset in range(1, self.size):
            window.add_(padded[:, :, offset : offset + per_group])
        window.div_(self.size).mul_(self.size * self.alpha).add_(self.k)
        return x / window.flatten(1, 2).pow(self.beta)

    def _check(self, x: Tensor) -> None:
        accepts = f"a floating-point tensor (N, C, *) of 3 or more dimensions with C a multiple of groups={self.groups}"
        got = check_floating("LocalResponseNorm", x, accepts, dims=range(3, 64))
        if x.shape[1] % self.groups:
            raise ValueError(f"LocalResponseNorm expects {accepts}; {got} ({x.shape[1]} channels)")

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}"


def _bins(in_side: int, out_side: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling windows: [floor(i * in / out), ceil((i + 1) * in / out))."""
    return [(i * in_side // out_side, -(-(i + 1) * in_side // out_side)) for i in range(out_side)]


def _adaptive_avg_pool2d_adjoint(grad: Tensor, in_height: int, in_width: int) -> Tensor:
    """Spread each output gradient evenly over its window, bins in row-major order (torch's CPU order)."""
    out_height, out_width = grad.shape[-2:]
    if (in_height, in_width) == (out_height, out_width):
        return grad.clone()
    if (out_height, out_width) == (1, 1):  # torch's forward is then a mean, and its backward mean's: one division
        return (grad / (in_height * in_width)).expand(*grad.shape[:-2], in_height, in_width).clone()
    grad_input = grad.new_zeros(*grad.shape[:-2], in_height, in_width)
    for i, (h0, h1) in enumerate(_bins(in_height, out_height)):
        for j, (w0, w1) in enumerate(_bins(in_width, out_width)):
            grad_input[..., h0:h1, w0:w1] += (grad[..., i, j] / (h1 - h0) / (w1 - w0))[..., None, None]
    return grad_input


class _AdaptiveAvgPool2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, output_size: int) -> Tensor:
        ctx.input_side = x.shape[-2:]
        return F.adaptive_avg_pool2d(x, output_size)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _adaptive_avg_pool2d_adjoint(grad, *ctx.input_side), None


class AdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` with a deterministic backward.

    The forward pass is torch's kernel. The backward adds each bin's share into its window with
    slice additions, bins in row-major order: no atomics, so it runs under
    ``torch.use_deterministic_algorithms(True)`` on CUDA (torch's backward raises there), and on CPU
    it accumulates in the order torch's kernel does.
    """

    def __init__(self, output_size: int) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return _AdaptiveAvgPool2dFunction.apply(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Squash(nn.Module):
    """LeCun et al. 1998, appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3 (f(1) = 1, f(-1) = -1)."""

    amplitude = 1.7159
    slope = 2.0 / 3.0

    def forward(self, x: Tensor) -> Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.6g}"


class Subsampling(nn.Module):
    """LeNet-5's S2/S4: each ``kernel_size`` block summed, times a trainable coefficient, plus a bias, per map."""

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.full((channels,), 1.0 / kernel_size**2))
        self.bias = nn.Parameter(torch.zeros(channels))

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, kernel_size={self.kernel_size}"

    def forward(self, x: Tensor) -> Tensor:
        block_sums = F.avg_pool2d(x, self.kernel_size, divisor_override=1)
        return block_sums * self.weight[:, None, None] + self.bias[:, None, None]


class SparseConv2d(nn.Module):
    """A convolution where output map ``i`` sees only input maps ``table[i]`` (LeNet-5's C3).

    Only the kernels of real connections are parameters: ``weight`` holds one (k, k) kernel per
    (output map, input map) pair, pairs in row-major order of the connection table, so the trainable
    count is the paper's. The forward pass scatters them into a dense weight whose missing
    connections are zero and runs one convolution.
    """

    def __init__(self, in_channels: int, table: Sequence[Sequence[int]], kernel_size: int) -> None:
        super().__init__()
        self.in_channels, self.kernel_size = in_channels, kernel_size
        self.table = tuple(tuple(sorted(maps)) for maps in table)
        self.weight = nn.Parameter(torch.empty(len(self.out_index), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(len(self.table)))
        self.reset_parameters()

    @property
    def out_index(self) -> list[int]:
        """The output map of each kernel in ``weight`` (plain indices from the table: no data to build or load,
        so the layer builds on the meta device)."""
        return [out_map for out_map, in_maps in enumerate(self.table) for _ in in_maps]

    @property
    def in_index(self) -> list[int]:
        """The input map of each kernel in ``weight``."""
        return [in_map for in_maps in self.table for in_map in in_maps]

    def fan_ins(self) -> Tensor:
        """Each output map's fan-in: the kernels of the maps it sees."""
        fan_ins = [len(maps) * self.kernel_size**2 for maps in self.table]
        return torch.tensor(fan_ins, dtype=self.weight.dtype, device=self.weight.device)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """LeCun et al. 1998, appendix A: uniform in (-2.4 / F, 2.4 / F), F the fan-in of the output map."""
        fan_in = self.fan_ins()
        self.weight.uniform_(-1.0, 1.0).mul_(2.4 / fan_in[self.out_index][:, None, None])
        self.bias.uniform_(-1.0, 1.0).mul_(2.4 / fan_in)

    @property
    def out_channels(self) -> int:
        return len(self.table)

    def dense_weight(self) -> Tensor:
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels, self.in_channels, k, k)
        dense[self.out_index, self.in_index] = self.weight
        return dense

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, connections={len(self.out_index)}"


class EuclideanRBF(nn.Module):
    """LeNet-5's output: y_i = sum_j (x_j - w_ij)^2 with fixed prototypes w (a penalty: lower is better)."""

    def __init__(self, prototypes: Tensor) -> None:
        super().__init__()
        self.register_buffer("prototypes", prototypes.clone())

    def forward(self, x: Tensor) -> Tensor:
        return ((x[:, None, :] - self.prototypes) ** 2).sum(dim=-1)  # (N, classes)

    def extra_repr(self) -> str:
        classes, features = self.prototypes.shape
        return f"in_features={features}, out_features={classes}"


class GaussianRBF(nn.Module):
    """The seed notebook's head: y_i = exp(-||x - c_i||^2 / (2 sigma_i^2)), centres and widths trained."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.randn(out_features, in_features))
        self.widths = nn.Parameter(torch.ones(out_features))

    def extra_repr(self) -> str:
        classes, features = self.centres.shape
        return f"in_features={features}, out_features={classes}"

    def forward(self, x: Tensor) -> Tensor:
        squared_distance = ((x[:, None, :] - self.centres) ** 2).sum(dim=-1)  # (N, classes)
        return torch.exp(-squared_distance / (2 * self.widths**2))

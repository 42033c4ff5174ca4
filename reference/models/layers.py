"""Hand-written layers of the reference models: the parts the suite exists to verify.

* :class:`LocalResponseNorm` — Krizhevsky et al. 2012, section 3.3, with the window confined to
  channel groups (the two GPUs of the original network).
* :class:`AdaptiveAvgPool2d` — torch's forward, with a backward that is deterministic on CUDA.
* :class:`ZeroPadShortcut` — He et al. 2015, section 3.3, shortcut option A.
* :class:`Subsampling`, :class:`SparseConv2d`, :class:`EuclideanRBF`, :class:`GaussianRBF`,
  :class:`Squash` — LeCun et al. 1998, section II.B and appendix A.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.models.checks import check_floating, is_proxy, sizes

__all__ = [
    "AdaptiveAvgPool2d",
    "EuclideanRBF",
    "GaussianRBF",
    "LocalResponseNorm",
    "SparseConv2d",
    "Squash",
    "Subsampling",
    "ZeroPadShortcut",
]

PAD_LAYOUTS = ("append", "both")


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
        squares = (x * x).unflatten(1, (self.groups, -1)).flatten(3)  # (N, G, C/G, L), L the positions
        per_group = squares.shape[2]
        padded = F.pad(squares, (0, 0, self.size // 2, (self.size - 1) // 2))  # (N, G, C/G + size - 1, L)
        # Out of place throughout: FX's dead-code elimination drops an in-place op whose result is unused, so
        # a feature extractor would return a window without its sums.
        window = padded.narrow(2, 0, per_group)  # sums run left to right, as in torch's avg_pool
        for offset in range(1, self.size):
            window = window + padded.narrow(2, offset, per_group)
        denominator = window / self.size * (self.size * self.alpha) + self.k
        return x / denominator.reshape_as(x).pow(self.beta)

    def _check(self, x: Tensor) -> None:
        if is_proxy(x):
            return
        accepts = f"a floating-point tensor (N, C, *) of 3 or more dimensions with C a multiple of groups={self.groups}"
        got = check_floating("LocalResponseNorm", x, accepts, dims=range(3, 64))
        if sizes(x)[1] % self.groups:
            raise ValueError(f"LocalResponseNorm expects {accepts}; {got} ({sizes(x)[1]} channels)")

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


@torch.library.custom_op(
    "reference::adaptive_avg_pool2d_adjoint",
    mutates_args=(),
    schema="(Tensor grad, SymInt in_height, SymInt in_width) -> Tensor",  # torch 2.4 cannot read string annotations
)
def _adjoint_op(grad: Tensor, in_height: int, in_width: int) -> Tensor:
    """The adjoint as one opaque op: what a compiler traces, so that H and W stay symbolic (the Python loop over
    bins would pin them)."""
    return _adaptive_avg_pool2d_adjoint(grad, in_height, in_width)


@_adjoint_op.register_fake
def _(grad: Tensor, in_height: int, in_width: int) -> Tensor:
    return grad.new_empty(*grad.shape[:-2], in_height, in_width)


class _AdaptiveAvgPool2dFunction(torch.autograd.Function):
    """Eager mode and torch.func: ``setup_context`` and a generated vmap rule (every op of forward, backward and
    jvp has a batching rule), and forward-mode AD."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, output_size: int) -> Tensor:
        return F.adaptive_avg_pool2d(x, output_size)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, int], output: Tensor) -> None:
        x, ctx.output_size = inputs
        ctx.input_side = x.shape[-2:]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _adaptive_avg_pool2d_adjoint(grad, *ctx.input_side), None

    @staticmethod
    def jvp(ctx, tangent: Tensor, _: None) -> Tensor:
        return F.adaptive_avg_pool2d(tangent, ctx.output_size)  # the pool is linear: its own derivative


class _CompiledAdaptiveAvgPool2dFunction(torch.autograd.Function):
    """What torch.compile and strict export trace: the ctx form every dynamo release takes (torch 2.4's refuses
    setup_context, later ones a custom jvp), with the adjoint as one opaque op."""

    @staticmethod
    def forward(ctx, x: Tensor, output_size: int) -> Tensor:
        ctx.input_side = x.shape[-2:]
        return F.adaptive_avg_pool2d(x, output_size)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _adjoint_op(grad, *ctx.input_side), None


@torch.fx.wrap
def adaptive_avg_pool2d(x: Tensor, output_size: int) -> Tensor:
    """torch's adaptive average pool with a deterministic backward (see :class:`AdaptiveAvgPool2d`)."""
    if torch.jit.is_tracing():
        return F.adaptive_avg_pool2d(x, output_size)
    if torch.compiler.is_compiling():
        return _CompiledAdaptiveAvgPool2dFunction.apply(x, output_size)
    return _AdaptiveAvgPool2dFunction.apply(x, output_size)


class AdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` with a deterministic backward.

    The forward pass is torch's kernel. The backward adds each bin's share into its window with
    slice additions, bins in row-major order: no atomics, so it runs under
    ``torch.use_deterministic_algorithms(True)`` on CUDA (torch's backward raises there), and on CPU
    it accumulates in the order torch's kernel does.

    Every tool sees torch's forward op: torch.func (grad, vmap, jvp) an ``autograd.Function`` with
    ``setup_context``, a vmap rule and a jvp; torch.compile and strict export one whose backward is a single opaque
    op (``reference::adaptive_avg_pool2d_adjoint``), so H and W stay symbolic; FX one call of
    :func:`adaptive_avg_pool2d`, which keeps this backward; jit.trace (and so the legacy ONNX exporter) torch's
    op alone, a traced graph being unable to hold a Python backward.
    """

    def __init__(self, output_size: int) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_avg_pool2d(x, self.output_size)

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
    """LeNet-5's S2/S4: each ``kernel_size`` block summed, times a trainable coefficient, plus a bias, per map.

    The block sum is the block mean times ``kernel_size ** 2``, which is a power of two: the scaling is exact, so
    this is bit for bit ``avg_pool2d(x, k, divisor_override=1)``, forward and backward. The mean is what every
    exporter understands: ONNX's AveragePool has no divisor override, and torch's exporters drop it silently.
    """

    def __init__(self, channels: int, kernel_size: int = 2) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size & (kernel_size - 1):
            raise ValueError(f"Subsampling needs a kernel_size that is a power of two, got {kernel_size}")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.full((channels,), 1.0 / kernel_size**2))
        self.bias = nn.Parameter(torch.zeros(channels))

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, kernel_size={self.kernel_size}"

    def forward(self, x: Tensor) -> Tensor:
        block_sums = F.avg_pool2d(x, self.kernel_size) * self.kernel_size**2
        return block_sums * self.weight[:, None, None] + self.bias[:, None, None]


def _constant(values: list[int]) -> Tensor:
    if not torch.jit.is_tracing():
        return torch.tensor(values)
    with warnings.catch_warnings():  # jit.trace records it as a constant, which it is
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.tensor(values)


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
        index = (_constant(self.out_index), _constant(self.in_index))
        return dense.index_put(index, self.weight)  # not item assignment, which an FX proxy does not record

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


class ZeroPadShortcut(nn.Module):
    """He et al. 2015's shortcut option A (section 3.3): "identity mapping, with extra zero entries padded for
    increasing dimensions", "performed with a stride of 2" across maps of two sizes: ``x[:, :, ::stride, ::stride]``
    with ``out_channels - in_channels`` zero channels. ``layout="append"`` puts them after the identity channels
    (fb.resnet.torch's concatenation of the input and its zeroed copy); ``"both"`` half before and half after (the
    ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`` of popular CIFAR ports). The two give the
    same counts and shapes and different networks. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, layout: str = "append") -> None:
        super().__init__()
        if layout not in PAD_LAYOUTS:
            raise ValueError(
                f"ZeroPadShortcut: layout must be one of {', '.join(map(repr, PAD_LAYOUTS))}; got {layout!r}"
            )
        if out_channels < in_channels or (layout == "both" and (out_channels - in_channels) % 2):
            raise ValueError(
                f"ZeroPadShortcut: cannot pad {in_channels} channels to {out_channels} with layout {layout!r}"
            )
        self.in_channels, self.out_channels, self.stride, self.layout = in_channels, out_channels, stride, layout

    def forward(self, x: Tensor) -> Tensor:
        if not is_proxy(x):
            accepts = f"a floating-point tensor (N, {self.in_channels}, H, W)"
            got = check_floating("ZeroPadShortcut", x, accepts)
            if sizes(x)[1] != self.in_channels:
                raise ValueError(f"ZeroPadShortcut expects {accepts}; {got} ({sizes(x)[1]} channels)")
        extra = self.out_channels - self.in_channels
        before = extra // 2 if self.layout == "both" else 0
        # x[:, :, ::s, ::s] as a 1x1 pool of stride s: the same values, and a size, (H - 1) // s + 1, that torch's
        # symbolic shapes see equal to the strided 3x3 convolution's beside it (the slice's is (H + 1) // s: export
        # with dynamic sides could not prove the two equal and refused every range).
        subsampled = F.max_pool2d(x, 1, self.stride)  # (N, C_in, (H - 1) // s + 1, (W - 1) // s + 1)
        return F.pad(subsampled, (0, 0, 0, 0, before, extra - before))  # (N, C_out, same)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}, layout={self.layout!r}"

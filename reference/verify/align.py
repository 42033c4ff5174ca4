"""Two models' computations lined up without a layer map, and weights ported between them by execution order.

:func:`record` runs a model once and keeps every computation's output in execution order: each call of a leaf
module (a module called twice is two steps, ``relu`` and ``relu#2``) and each torch function called outside
one (``flatten()``, ``cat()#3``), cloned when it ran, so that an in-place ReLU later does not overwrite what
the layer before it computed. Functions that return their input untouched (dropout in eval mode, ``Identity``)
are no computation and are left out.

:func:`align` then pairs the two runs' steps in execution order by output shape, preferring steps of the same
kind, then of the same name, where that disambiguates (a longest common subsequence); steps of one name and kind
meet even where their shapes differ, and there they part. Parallel branches that a ``torch.cat`` joins along
dim 1 (the towers of the 2012 AlexNet, a connection table written as one convolution per map) are first zipped
into joined steps, so that one grouped layer on one side meets its towers on the other; other branches a ``cat`` joins
(an inception module's four, of different depths) are put in the order it joins them, whatever order they ran in. Where another pairing
of the same quality exists, the alignment is ambiguous there: it says where, and the caller compares the certain pairs
only. The steps one side lacks are kept, with where they fall.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from reference.verify.build import state_kept

__all__ = [
    "Alignment",
    "Step",
    "align",
    "pair_by_order",
    "pair_orders",
    "port_by_order",
    "record",
    "same_names",
    "tensor_order",
]

_CATS = {"cat", "concat", "concatenate"}


@dataclass(eq=False)
class Step:
    """One computation of a run: a leaf module's call or a torch function's, or parallel ones joined."""

    name: str  # "features.0", "relu#2" (a module's second call), "flatten()" (a function), "a+b" (joined)
    kind: str  # the module's class or the function, lower case: "conv2d", "relu", "flatten"
    output: Tensor
    inputs: tuple[Step | None, ...] = ()  # the steps whose outputs it read; None: the model's input or a constant
    parts: tuple[str, ...] = ()  # a joined step's branches, in order

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.output.shape)

    @property
    def names(self) -> str | tuple[str, ...]:
        """As a layer map writes it: a name, or the branches joined along dim 1."""
        return self.parts or self.name


@dataclass
class Alignment:
    """Which step of A meets which of B, where it could have been otherwise, and the steps one side lacks."""

    pairs: list[tuple[Step, Step]] = field(default_factory=list)
    steps_a: int = 0
    steps_b: int = 0
    ambiguous: list[str] = field(default_factory=list)  # why, one line per step that could meet another
    uncertain: set[int] = field(default_factory=set)  # the pairs (indices) another best alignment does not have
    lone: list[tuple[str, Step, int]] = field(default_factory=list)  # ("A" or "B", a step with no counterpart, the
    # number of pairs before it)

    def as_map(self) -> dict[str, str | tuple[str, ...]]:
        return {a.name: b.names for a, b in self.pairs}

    def describe(self) -> str:
        aligned = (
            f"layers aligned by execution order, shape and name: {len(self.pairs)} of A's {self.steps_a} steps "
            f"with {len(self.pairs)} of B's {self.steps_b}"
        )
        if not self.ambiguous:
            return aligned
        return (
            f"{aligned}; {len(self.uncertain)} of the pairs ambiguous, not compared (the {len(self.pairs) - len(self.uncertain)} "
            "certain ones are): " + "; ".join(self.ambiguous)
        )


def _kind(name: str) -> str:
    return name.strip("_").lower()


def _tensors(values: object) -> Iterator[Tensor]:
    if isinstance(values, Tensor):
        yield values
    elif isinstance(values, (list, tuple)):
        for value in values:
            yield from _tensors(value)
    elif isinstance(values, dict):
        for value in values.values():
            yield from _tensors(value)


class _Recorder(TorchFunctionMode):
    """Records leaf modules' calls through hooks and, outside them, torch functions through this mode."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.steps: list[Step] = []
        self._producer: dict[int, Step] = {}  # id(tensor) -> the step that last wrote it
        self._alive: list[Tensor] = []  # every tensor seen stays alive, so that no id is reused during the run
        self._calls: Counter[str] = Counter()
        self._inside = 0  # depth of leaf-module calls: their own torch functions are not steps
        self._pending: list[tuple[list[Tensor], list[int]]] = []
        self._state = {id(t) for t in model.state_dict(keep_vars=True).values()}  # weights are no step's output
        self._handles = []
        for name, module in model.named_modules():
            if next(module.children(), None) is None:
                self._handles.append(module.register_forward_pre_hook(self._pre))
                self._handles.append(module.register_forward_hook(self._post(name or type(module).__name__)))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def _pre(self, _module: nn.Module, args: tuple) -> None:
        self._inside += 1
        inputs = list(_tensors(args))
        self._pending.append((inputs, [t._version for t in inputs]))

    def _post(self, name: str):
        def hook(module: nn.Module, _args: tuple, output: object) -> None:
            inputs, versions = self._pending.pop()
            self._add(name, type(module).__name__, output, inputs, versions)
            self._inside -= 1

        return hook

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self._inside or getattr(func, "__name__", "") == "__get__":
            return func(*args, **kwargs)
        inputs = list(_tensors((args, kwargs)))
        versions = [t._version for t in inputs]
        output = func(*args, **kwargs)
        name = getattr(func, "__name__", repr(func))
        self._add(f"{name}()", name, output, inputs, versions)
        return output

    def _add(self, name: str, kind: str, output: object, inputs: list[Tensor], versions: list[int]) -> None:
        if not isinstance(output, Tensor) or not output.is_floating_point():
            return
        if any(output is t and output._version == v for t, v in zip(inputs, versions, strict=True)):
            return  # its input, untouched: no computation
        self._calls[name] += 1
        calls = self._calls[name]
        step = Step(
            name if calls == 1 else f"{name}#{calls}",
            _kind(kind),
            output.detach().clone(),
            tuple(self._producer.get(id(t)) for t in inputs if id(t) not in self._state),
        )
        self.steps.append(step)
        self._producer[id(output)] = step
        self._alive += [output, *inputs]


@contextmanager
def record(model: nn.Module) -> Iterator[list[Step]]:
    """``with record(model) as steps: model(x)``: the steps of every forward pass run inside, in order. One model at
    a time: a torch function mode sees every model's calls, so a second recording inside would take the first
    model's functions for its own."""
    if any(isinstance(mode, _Recorder) for mode in _modes()):
        raise RuntimeError("record() is already recording a model: record one model at a time")
    recorder = _Recorder(model)
    try:
        with recorder:
            yield recorder.steps
    finally:
        recorder.close()


def _modes() -> list[TorchFunctionMode]:
    from torch.overrides import _get_current_function_mode_stack

    return _get_current_function_mode_stack()


def _branches(cat: Step) -> list[list[Step]] | None:
    """The parallel chains of steps whose last outputs ``cat`` joins, from the common input onwards; None where
    they are not such chains (a step with other than one input, different lengths, kinds, or shapes other than
    along dim 1). A chain stops at a step with several inputs, so branches that hold joined branches of their
    own are not joined."""
    if len(set(map(id, cat.inputs))) < 2:
        return None
    chains = [[step] for step in cat.inputs]
    while True:
        if any(len(chain[-1].inputs) != 1 for chain in chains):
            return None
        sources = [chain[-1].inputs[0] for chain in chains]
        if all(source is sources[0] for source in sources):
            break  # the fork: every branch reads the same tensor
        if any(source is None for source in sources):
            return None
        for chain, source in zip(chains, sources, strict=True):
            chain.append(source)
    chains = [chain[::-1] for chain in chains]
    for depth in zip(*chains, strict=True):
        shapes = {(s.shape[:1] + s.shape[2:]) for s in depth}
        if len({s.kind for s in depth}) != 1 or len(shapes) != 1 or len(depth[0].shape) < 2:
            return None
    return chains


def _join_branches(steps: list[Step]) -> list[Step]:
    """``steps`` with each set of parallel branches that a ``cat`` along dim 1 joins zipped into joined steps
    (the ``cat`` itself dropped: the last joined step is its output)."""
    replaced: dict[int, list[Step]] = {}  # id(step) -> the joined steps that stand for it
    dropped: set[int] = set()
    for step in steps:
        if step.kind not in _CATS or not _is_channel_cat(step):
            continue
        chains = _branches(step)
        if chains is None:
            continue
        joined = []
        for depth in zip(*chains, strict=True):
            output = torch.cat([s.output for s in depth], dim=1)
            joined.append(Step("+".join(s.name for s in depth), depth[0].kind, output,
                               (joined[-1] if joined else depth[0].inputs[0],), tuple(s.name for s in depth)))  # fmt: skip
        dropped.update(id(s) for chain in chains for s in chain)
        replaced[id(step)] = joined
    out = []
    for step in steps:
        if id(step) in replaced:
            out += replaced[id(step)]
        elif id(step) not in dropped:
            out.append(step)
    return out


def _ancestors(step: Step) -> set[int]:
    """The ids of ``step`` and of every step its output was computed from."""
    seen: set[int] = set()
    stack = [step]
    while stack:
        current = stack.pop()
        if current is not None and id(current) not in seen:
            seen.add(id(current))
            stack.extend(current.inputs)
    return seen


def _in_branch_order(steps: list[Step]) -> list[Step]:
    """``steps`` with the branches of each ``cat`` along dim 1 (an inception module's four) in the order the ``cat``
    joins them, each branch's own steps in their order: where the model ran its branches in another order (the fourth
    first), the alignment then meets branch with branch, as it would for a model that ran them in order. A branch is
    the steps only that input of the ``cat`` was computed from."""
    for cat in [step for step in steps if step.kind in _CATS and _is_channel_cat(step)]:
        reaches = [_ancestors(source) for source in cat.inputs]
        shared = {key for i, one in enumerate(reaches) for other in reaches[i + 1 :] for key in one & other}
        own = [one - shared for one in reaches]
        members = set().union(*own)
        if len(members) == 0:
            continue
        first = next(index for index, step in enumerate(steps) if id(step) in members)
        ordered = [step for branch in own for step in steps if id(step) in branch]
        rest = [step for step in steps if id(step) not in members]
        steps = rest[:first] + ordered + rest[first:]
    return steps


def _is_channel_cat(step: Step) -> bool:
    """Whether a ``cat`` step joined along dim 1: its output's dim 1 is the sum of its inputs' (checked on shapes,
    since the recorder keeps no arguments but tensors)."""
    ins = [s for s in step.inputs if s is not None]
    if len(ins) != len(step.inputs) or len(step.shape) < 2:
        return False
    return (
        all(s.shape[:1] + s.shape[2:] == step.shape[:1] + step.shape[2:] for s in ins)
        and sum(s.shape[1] for s in ins) == step.shape[1]
    )


_NAMED = 1 << 24  # a shape's weight over a name's: names only break ties between pairings of equal shapes


def _score(a: Step, b: Step) -> int:
    """How well ``a`` meets ``b``, 0 for a pairing that cannot be: 2 for the same shape and kind, 1 for the same shape
    only (times :data:`_NAMED`), plus 1 for the same name. Two steps of one name and kind with different shapes also
    meet (the name's 1 alone): models whose weights port by name (a ResNet with its stride on the first convolution
    of a block or on the second) part at that step, where an alignment by shape would skip it and then pair other
    steps of the same shapes either way."""
    named = int(a.name == b.name)
    if a.shape != b.shape:
        return named if a.kind == b.kind else 0
    return (2 if a.kind == b.kind else 1) * _NAMED + named


def _best(a: Sequence[Step], b: Sequence[Step]) -> list[list[int]]:
    """best[i][j]: the highest total score pairing a[i:] with b[j:] in order."""
    n, m = len(a), len(b)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            take = _score(a[i], b[j])
            take = best[i + 1][j + 1] + take if take else 0
            best[i][j] = max(take, best[i + 1][j], best[i][j + 1])
    return best


_PRIME = (1 << 61) - 1  # paths are counted modulo a Mersenne prime: a chance collision is ~1e-18


def _on_every_best(a: Sequence[Step], b: Sequence[Step], best: list[list[int]]) -> list[list[bool]]:
    """certain[i][j]: pairing a[i] with b[j] is part of every best alignment. A best alignment is a path of best moves
    (pair, skip one of A's, skip one of B's) through the table; a pairing is certain where the paths through it are
    all the paths: counted forwards to it and backwards from after it, one pass each, where forbidding each pairing
    in turn and solving again took a pass per pairing (minutes for a ResNet-152's 500 steps)."""
    n, m = len(a), len(b)

    def moves(i: int, j: int) -> list[tuple[int, int]]:
        """The best moves out of (i, j): to (i + 1, j + 1) by pairing, (i + 1, j), (i, j + 1) by skipping."""
        if i == n or j == m:
            return []
        out = []
        score = _score(a[i], b[j])
        if score and best[i][j] == best[i + 1][j + 1] + score:
            out.append((i + 1, j + 1))
        out += [(i + 1, j)] * (best[i][j] == best[i + 1][j]) + [(i, j + 1)] * (best[i][j] == best[i][j + 1])
        return out

    after = [[1] * (m + 1) for _ in range(n + 1)]  # best paths from (i, j) to the end
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            after[i][j] = sum(after[k][m_] for k, m_ in moves(i, j)) % _PRIME
    before = [[0] * (m + 1) for _ in range(n + 1)]  # best paths from the start to (i, j)
    before[0][0] = 1
    for i in range(n + 1):
        for j in range(m + 1):
            if before[i][j]:
                for k, m_ in moves(i, j):
                    before[k][m_] = (before[k][m_] + before[i][j]) % _PRIME
    return [[bool(before[i][j]) and (i + 1, j + 1) in moves(i, j)
             and before[i][j] * after[i + 1][j + 1] % _PRIME == after[0][0] for j in range(m)]
            for i in range(n)]  # fmt: skip


def align(steps_a: Sequence[Step], steps_b: Sequence[Step]) -> Alignment:
    """Pair A's steps with B's in execution order, by shape and kind (parallel branches joined first)."""
    a, b = (_in_branch_order(_join_branches(list(steps))) for steps in (steps_a, steps_b))
    best = _best(a, b)
    pairs, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        score = _score(a[i], b[j])
        if score and best[i][j] == best[i + 1][j + 1] + score:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1
    result = Alignment([(a[i], b[j]) for i, j in pairs], len(a), len(b))
    certain = _on_every_best(a, b, best)
    for index, (i, j) in enumerate(pairs):  # a pairing is certain only if every other best alignment has it too
        if not certain[i][j]:
            result.uncertain.add(index)
            result.ambiguous.append(f"A's {a[i].name!r} {a[i].shape} could meet another step than B's {b[j].name!r}")
    for side, steps, paired in (("A", a, [i for i, _ in pairs]), ("B", b, [j for _, j in pairs])):
        taken = set(paired)
        for index, step in enumerate(steps):
            if index not in taken:  # paired is increasing: the pairs before it by bisection
                result.lone.append((side, step, bisect.bisect_left(paired, index)))
    return result


class _Uses(TorchFunctionMode):
    """Notes, in order, the first use of each of ``names``' tensors (id -> state_dict name) as any torch function's
    argument, inside leaf modules too."""

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.names, self.seen = names, {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for t in _tensors((args, kwargs)):
            if id(t) in self.names:
                self.seen.setdefault(self.names[id(t)])
        return func(*args, **kwargs)


def tensor_order(model: nn.Module, x: Tensor) -> list[str]:
    """The model's parameters and buffers (state_dict names) in the order its forward pass first uses them; those
    it does not use follow, in registration order."""
    names = {id(t): name for name, t in model.state_dict(keep_vars=True).items()}
    uses = _Uses(names)
    with (
        torch.no_grad(),
        state_kept(model),
        uses,
    ):  # a probe: a train-mode batch norm's statistics are left as they were
        model(x)
    return [*uses.seen, *(name for name in names.values() if name not in uses.seen)]


def pair_by_order(model_a: nn.Module, model_b: nn.Module, x: Tensor) -> dict[str, str]:
    """A's state_dict names -> B's: by name where both have the same names and shapes, else one to one in the order
    the forward passes use them. A ValueError with the two lists up to the first mismatch where neither holds."""
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    if same_names(state_a, state_b):
        return {name: name for name in state_a}
    floating = [t for t in state_b.values() if t.is_floating_point()]
    where_b = {"dtype": floating[0].dtype, "device": floating[0].device} if floating else {}  # B's, if another's
    order_a, order_b = tensor_order(model_a, x), tensor_order(model_b, x.to(**where_b))
    return pair_orders(order_a, state_a, order_b, state_b, (type(model_a).__name__, type(model_b).__name__))


def same_names(state_a: Mapping[str, Tensor], state_b: Mapping[str, Tensor]) -> bool:
    """Whether two state dicts have the same names with the same shapes: then they pair by name."""
    return state_a.keys() == state_b.keys() and all(state_a[k].shape == state_b[k].shape for k in state_a)


def pair_orders(
    order_a: Sequence[str],
    state_a: Mapping[str, Tensor],
    order_b: Sequence[str],
    state_b: Mapping[str, Tensor],
    names: tuple[str, str] = ("A", "B"),
) -> dict[str, str]:
    """:func:`pair_by_order` on orders already known (:func:`tensor_order`; a stored run keeps its model's): by name
    where the names and shapes are the same, else one to one in order, shape for shape; ``names`` are the two models'
    in the error."""
    if same_names(state_a, state_b):
        return {name: name for name in state_a}
    rows = []
    for index in range(max(len(order_a), len(order_b))):
        name_a = order_a[index] if index < len(order_a) else None
        name_b = order_b[index] if index < len(order_b) else None
        shape_a = tuple(state_a[name_a].shape) if name_a else None
        shape_b = tuple(state_b[name_b].shape) if name_b else None
        rows.append(f"{index:>4}  {name_a or '-':<28} {shape_a or ''!s:<22} {name_b or '-':<28} {shape_b or ''}")
        if shape_a != shape_b:
            table = "\n".join(rows)
            raise ValueError(
                f"cannot port {names[1]} into {names[0]} by order: tensor {index} "
                f"differs (A has {len(order_a)}, B {len(order_b)}, in the order each forward pass uses them):\n"
                f"{'#':>4}  {'A':<28} {'shape':<22} {'B':<28} shape\n{table}  <- first mismatch"
            )
    return dict(zip(order_a, order_b, strict=True))


@torch.no_grad()
def port_by_order(source: nn.Module, target: nn.Module, x: Tensor) -> dict[str, str]:
    """Copy ``source``'s parameters and buffers into ``target``'s (by :func:`pair_by_order`, run on ``x``), in
    ``target``'s dtype and device; returns target name -> source name."""
    pairs = pair_by_order(target, source, x)
    state_source, state_target = source.state_dict(), target.state_dict()
    for name_target, name_source in pairs.items():
        state_target[name_target].copy_(state_source[name_source])
    return pairs

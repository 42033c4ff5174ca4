"""A model's run, stored to compare against later (Polygraphy's ``--save-outputs`` / ``--load-outputs``):
``python -m reference diff A --save RUN``, then ``diff A RUN`` on another device, another torch release, a later tree.

A run holds every step's output as :func:`reference.verify.align.record` keeps them (each leaf module's call and each
torch function outside one, in execution order, and which earlier steps each read), the input and the output, the
model's weights and the order its forward pass uses them, and (``grads``) the gradients of the input and of every
parameter under the suite's fixed cotangent; and what made it: the model and its arguments, seed, dtype, device, mode,
the torch and reference versions. One safetensors file: the tensors, and the description as JSON in the header's
metadata. Loading reads tensors and JSON only; no pickled code is ever run.

:func:`reference.verify.compare.compare_models` takes a run in B's place; a layer's own error is then A's module run on
the input the stored step received (the output of the step that made it, or the run's input) against its stored output.
"""

from __future__ import annotations

import datetime
import json
import platform
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reference.verify.align import Step, pair_orders, record, same_names, tensor_order
from reference.verify.forward import cotangent, forward

__all__ = ["FORMAT", "Run", "load_run", "record_run", "run_pairing", "save_run"]

FORMAT = "reference-run/1"
_KEY = "reference-run"  # the safetensors metadata entry that holds the JSON description


@dataclass
class Run:
    """One model's run on one input: see the module's docstring. ``about`` is what made it (``model``, ``kwargs``,
    ``seed``, ``dtype``, ``device``, ``train``, ``torch``, ``reference``, ``machine``, ``saved``)."""

    steps: list[Step]
    input: Tensor
    output: Tensor
    state: dict[str, Tensor]
    order: list[str]  # the state's names in the order the forward pass first uses them
    input_grad: Tensor | None = None
    grads: dict[str, Tensor] | None = None  # parameter name -> gradient
    about: dict[str, Any] = field(default_factory=dict)

    @property
    def train(self) -> bool:
        return bool(self.about.get("train", False))

    @property
    def seed(self) -> int | None:
        return self.about.get("seed")

    def describe(self) -> str:
        """``lenet5, 13 steps on 1x1x32x32 float32, eval mode, made on cpu with torch 2.15.0 (2026-12-05 11:02 UTC)``."""
        about = self.about
        model = about.get("model", "a model")
        kwargs = " ".join(about.get("kwargs") or [])
        mode = "train mode, seed " + str(self.seed) if self.train else "eval mode"
        grads = ", with gradients" if self.grads is not None else ""
        return (f"{model}{f' ({kwargs})' if kwargs else ''}, {len(self.steps)} steps on "
                f"{'x'.join(map(str, self.input.shape))} {str(self.input.dtype).removeprefix('torch.')}, {mode}{grads}, "
                f"made on {about.get('device', '?')} with torch {about.get('torch', '?')} ({about.get('saved', '?')})")  # fmt: skip

    def to(self, device: str | torch.device) -> Run:
        """The run with its tensors on ``device`` (the steps' graph kept)."""
        moved: dict[int, Step] = {}
        for step in self.steps:
            inputs = tuple(None if s is None else moved[id(s)] for s in step.inputs)
            moved[id(step)] = Step(step.name, step.kind, step.output.to(device), inputs, step.parts)
        grads = None if self.grads is None else {k: v.to(device) for k, v in self.grads.items()}
        return replace(self, steps=list(moved.values()), input=self.input.to(device), output=self.output.to(device),
                       state={k: v.to(device) for k, v in self.state.items()},
                       input_grad=None if self.input_grad is None else self.input_grad.to(device), grads=grads)  # fmt: skip


def record_run(
    model: nn.Module, x: Tensor, *, grads: bool = False, seed: int | None = None, about: dict[str, Any] | None = None
) -> Run:
    """Run ``model`` on ``x`` in its mode (reseeded with ``seed`` first, as :func:`compare_models` does) and keep what
    a :class:`Run` holds; ``about`` adds to what made it (the model's name, its arguments)."""
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}  # before a train step
    x = x.detach().clone().requires_grad_(grads)
    with torch.set_grad_enabled(grads), record(model) as steps:
        out = forward(model, x, seed)
    input_grad = parameter_grads = None
    if grads:
        model.zero_grad(set_to_none=True)
        out.backward(cotangent(out))
        input_grad = x.grad.detach()
        parameter_grads = {name: p.grad.detach() for name, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)  # the run holds them now: no copy
    made = {
        "model": type(model).__name__,
        "kwargs": [],
        "seed": seed,
        "dtype": str(x.dtype).removeprefix("torch."),
        "device": str(x.device),
        "train": model.training,
        "torch": torch.__version__,
        "reference": metadata.version("reference"),
        "machine": platform.machine(),
        "saved": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    return Run(list(steps), x.detach().clone(), out.detach().clone(), state, tensor_order(model, x.detach()),
               input_grad, parameter_grads, made | (about or {}))  # fmt: skip


def save_run(run: Run, path: str | Path) -> Path:
    """Write ``run`` to ``path`` (a safetensors file); returns the path."""
    from safetensors.torch import save_file

    index = {id(step): i for i, step in enumerate(run.steps)}
    steps = [{"name": s.name, "kind": s.kind, "inputs": [None if i is None else index[id(i)] for i in s.inputs]}
             for s in run.steps]  # fmt: skip
    tensors = {"input": run.input, "output": run.output}
    tensors |= {f"step.{i}": step.output for i, step in enumerate(run.steps)}
    tensors |= {f"state.{name}": tensor for name, tensor in run.state.items()}
    if run.grads is not None:
        tensors |= {"grad.input": run.input_grad, **{f"grad.{name}": grad for name, grad in run.grads.items()}}
    description = {
        "format": FORMAT,
        "about": run.about,
        "steps": steps,
        "order": run.order,
        "grads": None if run.grads is None else list(run.grads),
    }
    path = Path(path)
    # safetensors writes contiguous tensors that share no memory: record_run's are copies of their own already
    written = {key: tensor.detach().to("cpu").contiguous() for key, tensor in tensors.items()}
    save_file(written, path, metadata={_KEY: json.dumps(description)})
    return path


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """Read a run written by :func:`save_run`, its tensors on ``device``; a ValueError naming what is wrong with a
    file that is not one (missing, not safetensors, no run's description, another format)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such stored run (make one with: python -m reference diff A --save {path})")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as stored:
            header = (stored.metadata() or {}).get(_KEY)
            tensors = {key: stored.get_tensor(key) for key in stored.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a stored run: not a safetensors file ({error})") from None
    if header is None:
        raise ValueError(f"{path} is a safetensors file but not a stored run: its header has no {_KEY!r} entry")
    description = json.loads(header)
    if description.get("format") != FORMAT:
        raise ValueError(f"{path}: a stored run of format {description.get('format')!r}; this reads {FORMAT!r}")
    steps: list[Step] = []
    for i, step in enumerate(description["steps"]):
        inputs = tuple(None if j is None else steps[j] for j in step["inputs"])
        steps.append(Step(step["name"], step["kind"], tensors[f"step.{i}"], inputs))
    prefix = "state."
    state = {key[len(prefix) :]: t for key, t in tensors.items() if key.startswith(prefix)}
    names = description["grads"]
    grads = None if names is None else {name: tensors[f"grad.{name}"] for name in names}
    return Run(steps, tensors["input"], tensors["output"], state, description["order"],
               None if names is None else tensors["grad.input"], grads, description["about"])  # fmt: skip


def run_pairing(model: nn.Module, run: Run, x: Tensor) -> dict[str, str]:
    """``model``'s state names -> the run's: by name where the names and shapes are the same, else by the order the
    forward passes use them (:func:`reference.verify.align.pair_orders`; a ValueError where they part)."""
    state = model.state_dict()
    if same_names(state, run.state):
        return {name: name for name in state}
    return pair_orders(tensor_order(model, x), state, run.order, run.state, (type(model).__name__, "the stored run"))

"""A model trained under torch.distributed against what it computes in one process.

:func:`assert_distributed_equivalent` starts ``world_size`` processes (torch.multiprocessing, spawned; a free port;
each joined, or killed on failure), each building the model under one seed, wrapping it (DDP, or FSDP's
``fully_shard``) and taking SGD steps on its equal slice of the global batch; meanwhile it computes in this process
what they compute (PyTorch's ``_test_DistributedDataParallelCPU`` trains a copy on the full batch: that is not what DDP
computes where a model has batch norm or dropout), and compares every parameter and buffer of every rank after every
step.

What DDP computes, written out (:class:`_Reference`): each rank runs its slice with its own random stream (dropout:
``manual_seed(seed + 1 + rank)`` after the build) and its own batch statistics; the gradients are each divided by the
world size and summed (DDP's reducer divides a bucket before the all-reduce); the running statistics a rank ends a step
with are its own slice's update of those rank 0 began it with (DDP broadcasts rank 0's buffers before each forward);
FSDP broadcasts none: each rank's statistics follow its own slices. The loss is each output's mean squared distance
to fixed targets drawn for the global batch. Parameters and buffers are compared within the dtype's tolerance (the
all-reduce may sum in another order; with two ranks it does not).
"""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import importlib
import os
import queue as queues
import shutil
import signal
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from reference.verify.build import seeded, state_kept
from reference.verify.compare import _diff, describe, tolerance
from reference.verify.forward import outputs

__all__ = ["WRAPS", "DistributedError", "DistributedResult", "assert_distributed_equivalent", "fsdp_unsupported"]

WRAPS = ("ddp", "fsdp")
# The ranks' states after each step (a VGG's parameters and gradients: a gigabyte a step) go through memory where
# Linux offers it: on disk they were half the battery's time (system time) and 120 GB written.
_SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free > 8 << 30 else None
Build = str | Callable[[], nn.Module]


class DistributedError(AssertionError):
    """What parted, or what went wrong in a worker; ``pids`` are the workers', every one joined or killed by now."""

    def __init__(self, message: str, pids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.pids = pids


@dataclass
class StepResult:
    step: int
    rank: int
    params: float  # max |Δ| over the parameters after the step, against the single-process reference
    grads: float  # over the gradients the step took (each rank's, after the all-reduce)
    buffers: float  # over the buffers (0 where the model has none)


@dataclass
class DistributedResult:
    wrap: str
    world_size: int
    rtol: float
    atol: float
    lr: float  # the SGD rate the steps took: ``lr`` over the outputs' largest |value| squared where that exceeds 1
    steps: list[StepResult] = field(default_factory=list)
    checkpoint: str = ""  # how the midway save and reload went

    @property
    def max_diff(self) -> float:
        return max((max(s.params, s.grads, s.buffers) for s in self.steps), default=0.0)


@dataclass(frozen=True)
class _Config:
    build: Build
    seed: int
    steps: int
    lr: float
    wrap: str
    backend: str
    device: str
    world_size: int
    port: int
    folder: str  # where the input, each rank's state after each step and the checkpoint are written
    timeout: float
    sync_batchnorm: bool = False


def fsdp_unsupported(device: str = "cpu") -> str | None:
    """Why FSDP's ``fully_shard`` cannot run here, or None where it can."""
    if _fully_shard() is None:
        return f"torch {torch.__version__} has no fully_shard (FSDP2: torch >= 2.4)"
    return None


def _fully_shard():
    for module in ("torch.distributed.fsdp", "torch.distributed._composable.fsdp"):
        with contextlib.suppress(ImportError, AttributeError):
            return importlib.import_module(module).fully_shard
    return None


def _build(build: Build, seed: int) -> nn.Module:
    """A registry name or ``package.module:callable`` (:func:`reference.verify.diff.build`: the registry's prepared
    weights), or a callable, built under ``seed``."""
    if isinstance(build, str):
        from reference.verify.diff import build as built

        return built(build, seed=seed).model
    return seeded(build, seed)


def _slices(x: Tensor, world_size: int) -> list[Tensor]:
    return list(x.chunk(world_size))


def _targets(parts: tuple[Tensor, ...], n: int, seed: int) -> list[Tensor]:
    """Fixed targets for the global batch of ``n``, one per output, shaped as its rows (its own generator)."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn((n, *p.shape[1:]), generator=generator, dtype=torch.float64) for p in parts]


def _loss(parts: tuple[Tensor, ...], targets: list[Tensor], rank: int, world_size: int) -> Tensor:
    """Each output's mean squared distance to its rows of the targets, summed: a rank's mean over its slice, whose
    average over the ranks is the global batch's."""
    total = None
    for part, target in zip(parts, targets, strict=True):
        rows = target.chunk(world_size)[rank].to(dtype=part.dtype, device=part.device)
        term = (part - rows).pow(2).mean()
        total = term if total is None else total + term
    return total


def _structure(parts: tuple[Tensor, ...]) -> str:
    return ", ".join("x".join(map(str, p.shape[1:])) for p in parts)


def _full(tensor: Tensor) -> Tensor:
    """A tensor whole, on the CPU (an FSDP-sharded one gathered: a collective, every rank must call it)."""
    full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
    return full.detach().to("cpu").contiguous()


def _digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over the tensors' names and bytes: ranks whose parameters and gradients are the same bit for bit have
    the same digest, so only rank 0 writes them."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].view(torch.uint8).numpy() if tensors[name].numel() else b"")
    return digest.hexdigest()


def _state(model: nn.Module) -> dict[str, Tensor]:
    """Parameters and buffers, whole."""
    return {name: _full(tensor) for name, tensor in model.state_dict().items()}


class _Reference:
    """What the ranks compute, in this process, a step at a time (see the module's docstring)."""

    def __init__(self, cfg: _Config, x: Tensor, model: nn.Module | None = None) -> None:
        self.cfg = cfg
        self.model = (model or _build(cfg.build, cfg.seed)).to(device=x.device, dtype=x.dtype).train()
        self.slices = _slices(x, cfg.world_size)
        self.n = x.shape[0]
        self.names = [name for name, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(self.params, lr=cfg.lr)
        self.streams = []
        with torch.random.fork_rng(devices=_cuda(x)):
            for rank in range(cfg.world_size):
                torch.manual_seed(cfg.seed + 1 + rank)
                self.streams.append(_rng_state(x))
        self.buffers = [self._buffers() for _ in range(cfg.world_size)]  # each rank's, after the last step
        self.targets: list[Tensor] | None = None
        self.structures: list[str] = []
        self.grads: dict[str, Tensor] = {}  # the last step's, averaged over the ranks
        self.digest = ""  # rank 0's parameters' and gradients' at the step compared last

    def _buffers(self) -> dict[str, Tensor]:
        return {name: b.detach().clone() for name, b in self.model.named_buffers()}

    def _load_buffers(self, buffers: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, b in self.model.named_buffers():
                b.copy_(buffers[name])

    def step(self) -> None:
        if self.cfg.sync_batchnorm:
            self._step_synchronised()
            return
        cfg = self.cfg
        summed: list[Tensor | None] = [None] * len(self.params)
        begun = [self.buffers[0]] * cfg.world_size if cfg.wrap == "ddp" else self.buffers
        after, self.structures = [], []
        for rank, part in enumerate(self.slices):
            self._load_buffers(begun[rank])
            with torch.random.fork_rng(devices=_cuda(part)):
                _set_rng_state(part, self.streams[rank])
                parts = outputs(self.model(part))
                self.streams[rank] = _rng_state(part)
            self.structures.append(_structure(parts))
            if self.targets is None:
                self.targets = _targets(parts, self.n, cfg.seed)
            grads = torch.autograd.grad(_loss(parts, self.targets, rank, cfg.world_size), self.params,
                                        allow_unused=True)  # fmt: skip
            self._check_used(grads)
            for index, grad in enumerate(grads):
                share = grad / cfg.world_size  # the reducer divides each rank's bucket before the all-reduce
                summed[index] = share if summed[index] is None else summed[index] + share
            after.append(self._buffers())
        self._apply(summed)
        self.buffers = after
        self._load_buffers(after[0])

    def _apply(self, grads) -> None:
        """The SGD step with the ranks' averaged gradients; a DistributedError where it leaves a parameter not finite
        (the comparison would be of NaNs)."""
        for param, grad in zip(self.params, grads, strict=True):
            param.grad = grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.grads = {name: grad.detach() for name, grad in zip(self.names, grads, strict=True)}
        broken = next((name for name, p in zip(self.names, self.params, strict=True) if not p.isfinite().all()), None)
        if broken is not None:
            raise DistributedError(f"the single-process run's {broken!r} is not finite after an SGD step at lr="
                                   f"{self.cfg.lr:g}: the steps diverge; lower lr")  # fmt: skip

    def _check_used(self, grads: tuple[Tensor | None, ...]) -> None:
        unused = [name for name, grad in zip(self.names, grads, strict=True) if grad is None]
        if unused:
            raise DistributedError(
                f"parameter(s) {unused} get no gradient: DDP fails at the next step ('Expected to have finished "
                "reduction in the prior iteration'); leave them out, freeze them, or find_unused_parameters=True"
            )

    def _step_synchronised(self) -> None:
        """With SyncBatchNorm every batch norm normalises with the global batch's statistics and every rank updates
        its running statistics with them: the global batch in one forward, each dropout drawing each rank's rows from
        that rank's stream (in layer order, as the rank draws them), the ranks' mean losses averaged."""
        cfg = self.cfg
        x = torch.cat(self.slices)
        with _per_rank_dropout(self.model, self.streams, x):
            parts = outputs(self.model(x))
        self.structures = [_structure(parts)] * cfg.world_size
        if self.targets is None:
            self.targets = _targets(parts, self.n, cfg.seed)
        rows = [tuple(part.chunk(cfg.world_size)[rank] for part in parts) for rank in range(cfg.world_size)]
        loss = sum(_loss(rows[rank], self.targets, rank, cfg.world_size) for rank in range(cfg.world_size))
        grads = torch.autograd.grad(loss / cfg.world_size, self.params, allow_unused=True)
        self._check_used(grads)
        self._apply(grads)
        self.buffers = [self._buffers()] * cfg.world_size


@contextlib.contextmanager
def _per_rank_dropout(model: nn.Module, streams: list[Tensor], x: Tensor) -> Iterator[None]:
    """Each dropout module, while inside, draws each rank's rows of its input from that rank's stream (``streams``,
    advanced in place)."""
    patched = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]

    def split(original):
        def forward(inputs: Tensor) -> Tensor:
            pieces = []
            for rank, rows in enumerate(inputs.chunk(len(streams))):
                with torch.random.fork_rng(devices=_cuda(x)):
                    _set_rng_state(x, streams[rank])
                    pieces.append(original(rows))
                    streams[rank] = _rng_state(x)
            return torch.cat(pieces)

        return forward

    for module in patched:
        module.forward = split(module.forward)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # the class's forward again


def _cuda(x: Tensor) -> list:
    return [x.device] if x.is_cuda else []


def _rng_state(x: Tensor) -> Tensor:
    return torch.cuda.get_rng_state(x.device) if x.is_cuda else torch.get_rng_state()


def _set_rng_state(x: Tensor, state: Tensor) -> None:
    if x.is_cuda:
        torch.cuda.set_rng_state(state, x.device)
    else:
        torch.set_rng_state(state)


def _wrap(model: nn.Module, cfg: _Config, device: torch.device) -> nn.Module:
    if cfg.wrap == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fully_shard = _fully_shard()
    for module in model.modules():  # each leaf with parameters its own unit, then the root
        if (
            module is not model
            and next(module.children(), None) is None
            and next(module.parameters(False), None) is not None
        ):
            fully_shard(module)
    fully_shard(model)
    return model


def _worker(rank: int, cfg: _Config, messages) -> None:
    """One rank: build, wrap, train, write its state after each step; every event and failure told to the parent."""
    import torch.distributed as dist
    from safetensors.torch import load_file, save_file

    try:
        if hasattr(signal, "SIGUSR1"):  # the parent asks a rank that hangs where it is
            stacks = (Path(cfg.folder) / f"stack.rank{rank}.txt").open("w")
            faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)
        torch.set_num_threads(1)  # the ranks share the cores; one thread each, as the reference
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(cfg.port))
        # the collectives wait longer than the parent: a rank that hangs is named by the parent, not by a peer's timeout
        dist.init_process_group(cfg.backend, rank=rank, world_size=cfg.world_size,
                                timeout=timedelta(seconds=3 * cfg.timeout))  # fmt: skip
        device = torch.device(cfg.device, rank) if cfg.device == "cuda" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        folder = Path(cfg.folder)
        x = load_file(folder / "input.safetensors")["x"]
        part = _slices(x, cfg.world_size)[rank].to(device)
        model = _build(cfg.build, cfg.seed).to(device=device, dtype=x.dtype).train()
        if cfg.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        wrapped = _wrap(model, cfg, device)
        torch.manual_seed(cfg.seed + 1 + rank)  # this rank's dropout stream
        optimizer = torch.optim.SGD([p for p in wrapped.parameters() if p.requires_grad], lr=cfg.lr)
        targets = None
        for step in range(cfg.steps):
            parts = outputs(wrapped(part))
            messages.put(("outputs", rank, step, _structure(parts)))
            targets = targets or _targets(parts, x.shape[0], cfg.seed)
            optimizer.zero_grad(set_to_none=True)
            _loss(parts, targets, rank, cfg.world_size).backward()
            optimizer.step()
            state = _state(model)
            grads = {f"grad.{name}": _full(p.grad) for name, p in model.named_parameters() if p.grad is not None}
            buffers = {name for name, _ in model.named_buffers()}
            shared = {k: v for k, v in (state | grads).items() if k not in buffers}  # the same on every rank
            own = shared | state if rank == 0 else {k: v for k, v in state.items() if k in buffers}  # a rank's own
            save_file(own, folder / f"step{step}.rank{rank}.safetensors", metadata={"digest": _digest(shared)})
            if step == cfg.steps // 2:  # every rank: gathering a sharded state dict is a collective
                messages.put(("checkpoint", rank, step, _reload(wrapped, state, cfg, folder / f"rank{rank}")))
            messages.put(("step", rank, step, ""))
        messages.put(("done", rank, cfg.steps, ""))
    except BaseException:
        messages.put(("error", rank, -1, traceback.format_exc()))
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _reload(wrapped: nn.Module, state: dict[str, Tensor], cfg: _Config, folder: Path) -> str:
    """The wrapped model's state dict (DDP's keys carry ``module.``) saved, then loaded into an unwrapped build: ""
    where every tensor comes back as trained, else what did not."""
    from safetensors.torch import load_file, save_file
    from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

    saved = {name: t.full_tensor() if hasattr(t, "full_tensor") else t for name, t in wrapped.state_dict().items()}
    path = folder.with_name(f"checkpoint.{folder.name}.safetensors")
    save_file({name: t.detach().to("cpu").contiguous() for name, t in saved.items()}, path)
    loaded = load_file(path)
    consume_prefix_in_state_dict_if_present(loaded, "module.")
    fresh = _build(cfg.build, cfg.seed + 1)  # another seed: what it holds afterwards came from the checkpoint
    try:
        fresh.load_state_dict(loaded)
    except RuntimeError as error:
        return f"the checkpoint does not load into an unwrapped model: {str(error).splitlines()[0]}"
    differ = [name for name, t in fresh.state_dict().items() if not torch.equal(t, state[name].to(t.dtype))]
    return f"reloaded tensors differ: {differ}" if differ else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _workers(cfg: _Config) -> Iterator[tuple[list, object]]:
    """The ranks' processes and their message queue; on leaving, every one joined, or killed where it does not end."""
    context = mp.get_context("spawn")
    messages = context.Queue()
    processes = [context.Process(target=_worker, args=(rank, cfg, messages), daemon=True)
                 for rank in range(cfg.world_size)]  # fmt: skip
    for process in processes:
        process.start()
    try:
        yield processes, messages
    except BaseException:
        for process in processes:  # a failure ends them all at once: a rank left waiting on a collective never ends
            process.kill()
        raise
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        messages.close()
        messages.join_thread()


def _wait(processes, messages, cfg: _Config, kind: str, step: int, ranks: set[int], seen: dict) -> None:
    """Read messages until each of ``ranks`` has sent ``kind`` for ``step``; a DistributedError where a worker fails,
    dies, disagrees on its outputs' structure or does not get there within the timeout."""
    pids = tuple(p.pid for p in processes)
    waiting = {rank for rank in ranks if seen.get((kind, rank), -1) < step}  # a rank ahead said so already
    deadline = time.monotonic() + cfg.timeout
    while waiting:
        try:
            what, rank, at, text = messages.get(timeout=0.2)
        except queues.Empty:
            for rank, process in enumerate(processes):
                if process.exitcode not in (None, 0):
                    raise DistributedError(_death(rank, processes, seen), pids) from None
            if time.monotonic() > deadline:
                raise DistributedError(f"rank(s) {sorted(waiting)} did not finish {kind} {step} within the timeout "
                                       f"({cfg.timeout:g} s); {_progress(seen, len(processes))}\n"
                                       f"{_stacks(processes, waiting, cfg)}", pids) from None  # fmt: skip
            continue
        seen[(what, rank)] = at
        if what == "error":
            time.sleep(1.0)  # a peer's death is often why a rank fails (gloo: "Connection closed by peer")
            dead = [r for r, p in enumerate(processes) if p.exitcode is not None and p.exitcode < 0]
            if dead:
                last = text.strip().splitlines()[-1]
                raise DistributedError(_death(dead[0], processes, seen) + f"; then rank {rank} failed: {last}", pids)
            raise DistributedError(f"rank {rank} failed:\n{text}", pids)
        if what == "outputs":
            seen[("structure", rank, at)] = text
        if what == "checkpoint" and text:
            seen["checkpoint"] = f"rank {rank}: {text}"
        if what == kind and at >= step:
            waiting.discard(rank)
            deadline = time.monotonic() + cfg.timeout


def _death(rank: int, processes, seen: dict) -> str:
    code = processes[rank].exitcode
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    return (f"rank {rank} died ({how}, exit code {code}) after step {seen.get(('step', rank), -1)}, with no error of "
            "its own to report")  # fmt: skip


def _progress(seen: dict, world_size: int) -> str:
    """Where each rank last said it was: the forward of a step (its outputs sent), or a step done."""
    places = []
    for rank in range(world_size):
        done, forward = seen.get(("step", rank), -1), seen.get(("outputs", rank), -1)
        place = f"in step {forward}'s backward or step" if forward > done else (
            f"done with step {done}" if done >= 0 else "not through its first forward")  # fmt: skip
        places.append(f"rank {rank} {place}")
    return "; ".join(places)


def _stacks(processes, ranks: set[int], cfg: _Config) -> str:
    """The Python stacks of the ranks still running (faulthandler, asked by SIGUSR1)."""
    if not hasattr(signal, "SIGUSR1"):
        return ""
    for rank in sorted(ranks):
        if processes[rank].is_alive():
            os.kill(processes[rank].pid, signal.SIGUSR1)
    time.sleep(0.5)
    shown = []
    for rank in sorted(ranks):
        path = Path(cfg.folder) / f"stack.rank{rank}.txt"
        text = path.read_text() if path.exists() else ""
        shown.append(f"rank {rank}'s stack:\n{text.strip() or '(none written)'}")
    return "\n".join(shown)


def assert_distributed_equivalent(
    build: Build,
    x: Tensor,
    *,
    world_size: int = 2,
    steps: int = 3,
    wrap: str = "ddp",
    backend: str | None = None,
    lr: float = 0.1,
    seed: int = 0,
    timeout: float = 120.0,
    sync_batchnorm: bool = False,
) -> DistributedResult:
    """Train ``build()`` (a registry name, ``"package.module:callable"``, or a picklable callable) under
    ``world_size`` processes wrapped in ``wrap`` (``"ddp"`` or ``"fsdp"``) for ``steps`` SGD steps (``lr`` over the
    outputs' largest |value| squared where that exceeds 1: VGG-2014's paper init scores ~1e7) on equal slices of
    ``x`` (on ``x``'s device: CPU with gloo, CUDA with NCCL, a GPU a rank), and compare every rank's parameters and
    buffers after every step, and the gradients each step took, with what they compute in one process, within ``x.dtype``'s tolerance; a midway save of
    the wrapped state dict is reloaded into an unwrapped model. Raises :class:`DistributedError` naming the first
    tensor that parts, with its step and rank, or what failed (a parameter with no gradient, outputs of another
    structure on one rank, a worker that died or hung: ``timeout`` seconds without progress). ``sync_batchnorm``:
    the ranks' batch norms converted to SyncBatchNorm (CUDA only, torch's rule), against batch norm over the global
    batch."""
    if wrap not in WRAPS:
        raise ValueError(f"wrap is one of {WRAPS}, got {wrap!r}")
    if world_size < 1 or x.shape[0] % world_size:
        raise ValueError(f"the global batch ({x.shape[0]}) must split into {world_size} equal slices")
    if wrap == "fsdp" and (why := fsdp_unsupported(x.device.type)):
        raise ValueError(why)
    device = x.device.type
    if sync_batchnorm and (device != "cuda" or wrap != "ddp"):
        raise ValueError("SyncBatchNorm synchronises on GPUs only (torch's SyncBatchNorm), under DDP")
    if device == "cuda" and torch.cuda.device_count() < world_size:
        raise ValueError(f"{world_size} ranks on CUDA need as many GPUs; this machine has {torch.cuda.device_count()}")
    from safetensors.torch import save_file

    model = _build(build, seed).to(device=x.device, dtype=x.dtype).train()
    rate = lr / max(1.0, _scale(model, x)) ** 2  # the same step size relative to the weights, whatever the outputs
    with tempfile.TemporaryDirectory(prefix="reference-distributed-", dir=_SCRATCH) as folder:
        cfg = _Config(build, seed, steps, rate, wrap, backend or ("nccl" if device == "cuda" else "gloo"), device,
                      world_size, _free_port(), folder, timeout, sync_batchnorm)  # fmt: skip
        save_file({"x": x.detach().to("cpu").contiguous()}, Path(folder) / "input.safetensors")
        bounds = tolerance(x.dtype)
        result = DistributedResult(wrap, world_size, bounds["rtol"], bounds["atol"], rate)
        threads = torch.get_num_threads()
        seen: dict = {}
        with _workers(cfg) as (processes, messages):
            pids = tuple(p.pid for p in processes)
            try:
                torch.set_num_threads(1)  # as each rank: the same kernels
                reference = _Reference(cfg, x, model)
                for step in range(steps):
                    reference.step()
                    _wait(processes, messages, cfg, "step", step, set(range(world_size)), seen)
                    _structures(reference, seen, step, pids)
                    for rank in range(world_size):
                        result.steps.append(_compare(reference, Path(folder), rank, step, bounds, pids, result.steps))
                _wait(processes, messages, cfg, "done", steps, set(range(world_size)), seen)
            except DistributedError as error:
                error.pids = pids
                raise
            finally:
                torch.set_num_threads(threads)
        result.checkpoint = seen.get("checkpoint", "")
        if result.checkpoint:
            raise DistributedError(f"after step {steps // 2}: {result.checkpoint}", pids)
        prefix = " (keys with 'module.')" if wrap == "ddp" else " (gathered)"
        result.checkpoint = f"saved after step {steps // 2}{prefix}, reloaded unwrapped: every tensor as trained"
        return result


def _scale(model: nn.Module, x: Tensor) -> float:
    """The largest |output| of ``model`` on ``x`` as it stands (its buffers and the RNG left as they were)."""
    with torch.no_grad(), state_kept(model), torch.random.fork_rng(devices=_cuda(x)):
        return max(part.abs().max().item() for part in outputs(model(x)))


def _structures(reference: _Reference, seen: dict, step: int, pids) -> None:
    for rank, expected in enumerate(reference.structures):
        got = seen.get(("structure", rank, step))
        if got != expected:
            raise DistributedError(f"step {step}: rank {rank}'s outputs are ({got}) a sample, the single-process "
                                   f"run's ({expected}): the outputs differ in structure between ranks", pids)  # fmt: skip


def _compare(reference: _Reference, folder: Path, rank: int, step: int, bounds, pids, earlier) -> StepResult:
    """A rank's state after ``step`` against the reference's: rank 0's parameters and gradients, and each rank's own
    buffers; another rank's parameters and gradients are rank 0's where their digests are."""
    from safetensors import safe_open

    path = folder / f"step{step}.rank{rank}.safetensors"
    with safe_open(str(path), framework="pt") as stored:
        digest = stored.metadata()["digest"]
        state = {key: stored.get_tensor(key) for key in stored.keys()}  # noqa: SIM118 (safe_open is no dict)
    path.unlink()
    if rank == 0:
        reference.digest = digest
        found = StepResult(step, rank, 0.0, 0.0, 0.0)
    elif digest != reference.digest:
        raise DistributedError(f"after step {step}, rank {rank}'s parameters or gradients are not rank 0's (their "
                               "digests differ): the ranks have parted from each other", pids)  # fmt: skip
    else:
        first = earlier[-rank]  # rank 0's at this step
        found = StepResult(step, rank, first.params, first.grads, 0.0)
    params = dict(reference.model.named_parameters())
    buffers = reference.buffers[rank]
    grads = {f"grad.{name}": grad for name, grad in reference.grads.items()}
    for name, got in state.items():
        expected = params[name].detach() if name in params else grads.get(name, buffers.get(name))
        if expected is None:
            raise DistributedError(f"step {step}: rank {rank} has {name!r}, the single-process model has not", pids)
        largest, close = _diff(got.to(expected.device), expected, **bounds)
        what, field_ = ("parameter", "params") if name in params else ("gradient", "grads") if name in grads else (
            "buffer", "buffers")  # fmt: skip
        setattr(found, field_, max(getattr(found, field_), largest))
        if not close:
            raise DistributedError(
                f"after step {step}, rank {rank}'s {what} {name.removeprefix('grad.')!r} parts from the single-process "
                f"reference: max |Δ| = {largest:.3g} ({describe(bounds)})", pids)  # fmt: skip
    return found

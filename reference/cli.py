"""``python -m reference {verify,summary,list,goldens,costs,diff,distributed}``: check the hand-written models and
layers against their counterparts, the papers' facts and the stored goldens, all read from the case registry; diff any
two; train one under torch.distributed against one process."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from reference.verify.pairs import DTYPES

DTYPE_BY_NAME = {str(dtype).removeprefix("torch."): dtype for dtype in DTYPES}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _device(text: str) -> str:
    """argparse type for ``--device``: a device torch knows and this machine has, else a usage error."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available here (torch.cuda.is_available() is False)")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: the models run on cpu or cuda")
    return text


def verify_command(names: Sequence[str], pattern: str | None, dtypes: Sequence[str], device: str) -> int:
    """Compare the cases asked for with their counterparts, a row as each pair is done; a progress bar on a terminal
    (none in a pipe)."""
    from tqdm import tqdm

    from reference.verify.runner import select, verify_rows

    cases = select(names, pattern)
    if not cases:
        print("no case with counterparts matches")
        return 1
    width = max(len(f"{case.name} vs {pair.name}") for case in cases for pair in case.pairs)
    header = (
        f"{'pair':<{width}}  {'input':<13} {'dtype':<8} {'max |Δ| fwd':>11}  {'max |Δ| grad':>12}  status  tolerance"
    )
    total = sum(len(case.pairs) for case in cases) * len(dtypes)
    failed = []
    with tqdm(total=total, unit="pair", disable=None, leave=False) as bar:
        bar.write(header + "\n" + "-" * len(header))
        for row in verify_rows(cases, [DTYPE_BY_NAME[name] for name in dtypes], device):
            bar.write(f"{row.name:<{width}}  {'x'.join(map(str, row.shape)):<13} {str(row.dtype)[6:]:<8} "
                      f"{row.forward_max:>11.3g}  {row.grad_max:>12.3g}  {'PASS' if row.passed else 'FAIL':<6}  "
                      f"{row.pair.tolerance.describe(row.dtype)}")  # fmt: skip
            if not row.passed:
                failed.append(f"{row.name} [{str(row.dtype)[6:]}]\n{row.report}")
            bar.update()
    for case in cases:
        for pair in case.pairs:
            if pair.tolerance.why:
                print(f"* {case.name} vs {pair.name}: not exact because {pair.tolerance.why}")
    for failure in failed:
        print(f"\nFAILED {failure}")
    print(f"\n{total - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def summary_command(name: str) -> int:
    import torchinfo

    from reference.verify.facts import fact_rows
    from reference.verify.registry import get_case

    case = get_case(name)
    with torch.device("meta"):  # kinds, shapes and counts need no values: VGG-19 summarised in 0.1 s, not 3 s
        model = case.build()
    side = case.default_side
    columns = ("kernel_size", "output_size", "num_params")  # a kernel column: C's 1x1 convolutions show
    depth = (
        max(name.count(".") for name, _ in model.named_modules()) + 1
    )  # every module: a ResNet's shortcuts are 4 deep
    print(torchinfo.summary(model, input_size=(1, case.in_channels, side, side), device="meta", verbose=0,
                            col_names=columns, depth=depth))  # fmt: skip
    print(f"\n{case.name}: {case.summary}\nsource: {case.paper.citation}\n"
          f"input: (N, {case.in_channels}, H, W), H and W in {case.valid_sides}\n")  # fmt: skip
    print(_table(("fact", "layer", "published", "measured"), fact_rows(case, model)))
    for errata in case.paper.errata.values():
        for layer, (_, note) in errata.items():
            print(f"* erratum, {layer}: {note}")
    for departure in case.paper.departures:
        print(f"* departs: {departure}")
    return 0


def list_command() -> int:
    from reference.verify.registry import CASES

    models = [case for case in CASES.values() if case.is_model]
    rows = [(case.name, f"(N, {case.in_channels}, H, W)", str(case.valid_sides), f"{case.trainable_params:,}",
             case.summary) for case in models]  # fmt: skip
    print(_table(("model", "input", "H, W", "parameters", "what"), rows))
    layers = [case for case in CASES.values() if not case.is_model]
    rows = [(case.name, "x".join(map(str, case.input_space.default)), case.summary) for case in layers]
    print("\n" + _table(("layer", "default input", "what"), rows))
    return 0


def goldens_command(write: bool, directory: Path | None) -> int:
    """Check every model against its stored golden, or (``write``) regenerate the stored files."""
    from reference.verify import golden
    from reference.verify.registry import CASES

    failures = 0
    for case in (case for case in CASES.values() if case.is_model):
        if write:
            print(f"wrote {golden.write(case, directory)}")
            continue
        now, stored = golden.compute(case), golden.load(case, directory)
        for dtype in golden.DTYPES:
            message = golden.drift(case, stored, now, dtype)
            failures += message is not None
            print(f"DRIFT {message}" if message else f"ok    {case.name} {dtype}")
    return 1 if failures else 0


def costs_command(names: Sequence[str], write: bool) -> int:
    """Measure each case's costs in a fresh process and print them; ``write``: store them as package data."""
    from reference.verify import costs as measured
    from reference.verify.registry import CASES

    stored = measured.load()["cases"]
    rows = []
    for name in names or list(CASES):
        stored[name] = measured.measure(name)
        f32, f64 = stored[name]["float32"], stored[name]["float64"]
        rows.append((name, f"{f32.build:.3f}", f"{f32.forward:.4f}", f"{f32.backward:.4f}", f"{f32.pairs:.3f}",
                     f"{f32.peak_mb:.0f}", f"{f64.pairs:.3f}", f"{f64.peak_mb:.0f}"))  # fmt: skip
        print(rows[-1][0], *rows[-1][1:], flush=True)
    header = ("case", "build s", "forward s", "backward s", "pairs s", "peak MB", "pairs s f64", "peak MB f64")
    print("\n" + _table(header, rows))
    if write:
        print(f"wrote {measured.write({name: stored[name] for name in CASES if name in stored})}")
    return 0


def _shape(text: str) -> tuple[int, ...]:
    """argparse type for ``--input``: ``2,3,224,224``."""
    try:
        shape = tuple(int(size) for size in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 2,3,224,224") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every size must be >= 1")
    return shape


def _sample(case, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An input of ``shape``: the case's own draw, or (a model outside the registry) a seeded normal one, on the CPU."""
    if case is not None:
        return case.input_space.sample(shape, dtype=dtype)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _is_run(spec: str) -> bool:
    """Whether diff's B names a stored run (a file, or a path to a .safetensors file) rather than a model."""
    return spec.endswith(".safetensors") or Path(spec).is_file()


def _run_input(run, args: argparse.Namespace) -> str | None:
    """What of ``--input``, ``--dtype``, ``--train`` and ``--grads`` a stored run cannot give (a run compares on its own
    input, dtype and mode, and has gradients only if saved with them), as a usage error; None where all agree."""
    shape = "x".join(map(str, run.input.shape))
    stored = {"input": shape, "dtype": str(run.input.dtype).removeprefix("torch."), "train": run.train}
    asked = {"input": args.input and "x".join(map(str, args.input)), "dtype": args.dtype, "train": args.train or None}
    for key, value in asked.items():
        if value is not None and value != stored[key]:
            return f"{args.b} was made with {key} {stored[key]}; --{key} {value} asked (a run compares on its own)"
    if args.grads and run.grads is None:
        return f"{args.b} has no gradients to compare (--grads): store it with them, diff A --save RUN --grads"
    return None


def diff_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from reference.verify import diff as layers
    from reference.verify import runs
    from reference.verify.compare import describe

    if args.b is None and args.save is None:
        parser.error("B is needed: a model or a stored run to compare A with (or --save RUN alone, to store A's run)")
    if args.save is not None and args.port:
        parser.error("--save stores A as built, --port would change it afterwards: save first, then diff with --port")
    run = b = None
    try:
        a = layers.build(args.a, layers.parse_kwargs(args.a_kwargs))
        if args.b is not None and _is_run(args.b):
            run = runs.load_run(args.b)
        elif args.b is not None:
            b = layers.build(args.b, layers.parse_kwargs(args.b_kwargs))
    except (ValueError, TypeError, ImportError, AttributeError) as error:
        parser.error(str(error))
    if run is not None and (args.b_kwargs or args.b_device):
        parser.error("--b-kwargs and --b-device are for a model; B is a stored run (made on "
                     f"{run.about.get('device')})")  # fmt: skip
    case = a.case or (b.case if b is not None else None)
    if args.plot is not None:
        from reference.verify.plot import FORMATS

        if not args.plot.endswith(FORMATS):
            parser.error(f"--plot writes {' or '.join(FORMATS)}; got {args.plot!r}")
    if run is not None:
        mismatch = _run_input(run, args)
        if mismatch:
            parser.error(mismatch)
        x, args.train, args.dtype, shape = run.input, run.train, str(run.input.dtype)[6:], tuple(run.input.shape)
    else:
        if args.input is None and case is None:
            parser.error("--input is needed where neither A nor B is a registry name, e.g. --input 2,3,224,224")
        args.dtype = args.dtype or "float32"
        dtype = DTYPE_BY_NAME[args.dtype]
        shape = args.input or case.input_space.default
        x = _sample(case, shape, dtype)
    x = x.to(args.device)  # drawn on the CPU: the same input on every device
    if args.save is not None:
        a.model.to(device=x.device, dtype=x.dtype).train(args.train)
        try:
            saved = runs.record_run(a.model, x, grads=args.grads, seed=layers.SEED if args.train else None,
                                    about={"model": args.a, "kwargs": list(args.a_kwargs)})  # fmt: skip
        except (ValueError, TypeError, RuntimeError) as error:
            print(f"diff {args.a}: {error}")
            return 2
        print(f"saved {runs.save_run(saved, args.save)}: {saved.describe()}")
        if args.b is None:
            return 0
    try:
        result, notes = layers.diff(a, run if run is not None else b, x, port=args.port, grads=args.grads,
                                    train=args.train, exact=args.exact, device_b=args.b_device)  # fmt: skip
    except (ValueError, TypeError, RuntimeError) as error:
        print(f"diff {args.a} {args.b}: {error}")
        return 2
    mode = "train mode, the same seed before each forward" if args.train else "eval mode"
    about_b = f"stored run {run.describe()}" if run is not None else f"({type(b.model).__name__})"
    where = args.device if args.b_device in (None, args.device) else f"{args.device} (B on {args.b_device})"
    print(f"A: {args.a} ({type(a.model).__name__})\nB: {args.b} {about_b}\n"
          f"input {'x'.join(map(str, shape))} {args.dtype} on {where}, {mode}; {describe({'rtol': result.rtol, 'atol': result.atol})}")  # fmt: skip
    print("\n".join([*notes, result.alignment.describe()]) + "\n")
    header = (
        "A",
        "B",
        "shape",
        "max |Δ|",
        "own max |Δ|",
        "max |Δ| / max |B|",
        "rtol needed",
        "atol needed",
        "ULPs",
        "",
    )
    print(_table(header, layers.table(result)))
    first = result.first_divergence()
    summary = [] if first is None else [f"first diverging layer: {first.layer!r} (counterpart {first.counterpart!r})",
                                        result.culprit()]  # fmt: skip
    print("\n" + "\n".join([*summary, result.would_pass()]))
    if args.plot:
        from reference.verify.plot import plot

        try:
            print(f"plot: {plot(result, args.plot, title=f'{args.a} vs {args.b}, {args.dtype}')}")
        except ValueError as error:
            print(f"diff {args.a} {args.b}: {error}")
            return 2
    if args.grads:
        print("\n".join([f"\ngradients: max |Δ| = {result.grad_max:.3g}", *result.grad_failures]))
    print("\nagree" if result.passed else "\ndiverge")
    return 0 if result.passed else 1


def distributed_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Train a model under ``--world-size`` processes and compare every rank with the single-process reference."""
    from reference.verify import distributed
    from reference.verify.registry import CASES

    case = CASES.get(args.name)
    if args.input is None and case is None:
        parser.error("--input is needed for a model that is not a registry name, e.g. --input 4,3,224,224")
    default = case.input_space.default if case is not None else None
    shape = args.input or (args.world_size * 2, *default[1:])  # two samples a rank: batch norm needs more than one
    dtype = DTYPE_BY_NAME[args.dtype]
    x = _sample(case, shape, dtype)
    try:
        result = distributed.assert_distributed_equivalent(
            args.name, x.to(args.device), world_size=args.world_size, steps=args.steps, wrap=args.wrap,
            timeout=args.timeout,
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    except distributed.DistributedError as error:
        print(f"{args.name} under {args.wrap}, {args.world_size} ranks on {args.device}: parts\n{error}")
        return 1
    print(f"{args.name} under {args.wrap}, {args.world_size} ranks on {args.device}, global batch "
          f"{'x'.join(map(str, shape))} {args.dtype}, {args.steps} SGD steps at lr {result.lr:.3g}; tolerance "
          f"{distributed.describe({'rtol': result.rtol, 'atol': result.atol})}\n")  # fmt: skip
    rows = [(str(s.step), str(s.rank), f"{s.grads:.3g}", f"{s.params:.3g}", f"{s.buffers:.3g}") for s in result.steps]
    print(_table(("step", "rank", "max |Δ| gradients", "max |Δ| parameters", "max |Δ| buffers"), rows))
    print(f"\ncheckpoint: {result.checkpoint}\nagree")
    return 0


def _case_name(text: str) -> str:
    """argparse type: a registry name (an alias too), else a usage error listing them."""
    from reference.verify.registry import get_case

    try:
        return get_case(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _model_name(text: str) -> str:
    from reference.models import get_model_builder

    try:
        get_model_builder(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify_parser = commands.add_parser(
        "verify", help="compare every case (or those named) with its counterparts, a row as each pair is done"
    )
    verify_parser.add_argument("name", nargs="*", type=_case_name, help="cases to verify (default: all)")
    verify_parser.add_argument("-k", dest="pattern", default=None, metavar="PATTERN",
                               help="only the cases whose name matches: a substring, or a shell pattern (vgg*_bn)")  # fmt: skip
    verify_parser.add_argument(
        "--dtype", nargs="+", choices=DTYPE_BY_NAME, default=["float32"], help="dtypes to compare in (default: float32)"
    )
    verify_parser.add_argument("--device", type=_device, default="cpu", help="cpu (default) or cuda[:N]")
    summary_parser = commands.add_parser(
        "summary", help="torchinfo summary and the paper's facts next to the measured ones"
    )
    summary_parser.add_argument("name", type=_model_name, help="a model (python -m reference list)")
    commands.add_parser("list", help="the models and the input sizes they accept, and the hand-written layers")
    goldens_parser = commands.add_parser("goldens", help="compare every model with its stored golden fingerprint")
    goldens_parser.add_argument("--write", action="store_true", help="regenerate the stored goldens instead")
    goldens_parser.add_argument(
        "--dir", type=Path, default=None, help="golden directory (default: the goldens shipped with the package)"
    )
    costs_parser = commands.add_parser(
        "costs", help="measure each case's costs (build, forward, backward, pairs, peak memory) in a fresh process"
    )
    costs_parser.add_argument("name", nargs="*", type=_case_name, help="cases to measure (default: all)")
    costs_parser.add_argument("--write", action="store_true", help="store them as the package's costs.json")
    diff_parser = commands.add_parser(
        "diff", help="any two models, layer by layer with no layer map; exit 1 where they diverge"
    )
    diff_parser.add_argument("a", help="a registry name (python -m reference list) or package.module:callable")
    diff_parser.add_argument("b", nargs="?", default=None,
                             help="the same, or a stored run (a .safetensors file that --save wrote)")  # fmt: skip
    for side in ("a", "b"):
        diff_parser.add_argument(f"--{side}-kwargs", nargs="+", default=[], metavar="NAME=VALUE",
                                 help=f"keyword arguments for {side.upper()}'s builder, e.g. num_classes=10")  # fmt: skip
    diff_parser.add_argument("--input", type=_shape, default=None, help="input shape, e.g. 2,3,224,224")
    diff_parser.add_argument("--dtype", choices=DTYPE_BY_NAME, default=None, help="float32 (default), or a run's")
    diff_parser.add_argument("--device", type=_device, default="cpu", help="where A and B run: cpu (default), cuda[:N]")
    diff_parser.add_argument("--b-device", type=_device, default=None, help="where B runs, if not on --device")
    diff_parser.add_argument("--save", default=None, metavar="RUN",
                             help="store A's run (each layer's output, the input, weights; gradients with --grads) "
                                  "to RUN, a .safetensors file, to diff against later: diff A RUN")  # fmt: skip
    diff_parser.add_argument("--plot", default=None, metavar="FILE",
                             help="draw the errors per layer to FILE (.png or .svg; needs matplotlib)")  # fmt: skip
    diff_parser.add_argument("--grads", action="store_true", help="compare gradients too")
    diff_parser.add_argument("--port", action="store_true", help="copy B's weights into A first")
    diff_parser.add_argument("--train", action="store_true", help="train mode, the same seed before each forward")
    diff_parser.add_argument("--exact", action="store_true", help="bitwise (default: the dtype's tolerance)")
    distributed_parser = commands.add_parser(
        "distributed",
        help="train a model under DDP or FSDP and compare every rank with one process; exit 1 where they part",
    )
    distributed_parser.add_argument("name", help="a registry name or package.module:callable")
    distributed_parser.add_argument("--world-size", type=int, default=2, help="processes (default 2)")
    distributed_parser.add_argument("--steps", type=int, default=3, help="SGD steps (default 3)")
    distributed_parser.add_argument("--wrap", choices=("ddp", "fsdp"), default="ddp")
    distributed_parser.add_argument("--device", type=_device, default="cpu", help="cpu (gloo) or cuda (nccl)")
    distributed_parser.add_argument("--input", type=_shape, default=None,
                                    help="the global batch's shape (default: two samples a rank at the case's input)")  # fmt: skip
    distributed_parser.add_argument("--dtype", choices=DTYPE_BY_NAME, default="float32")
    distributed_parser.add_argument("--timeout", type=float, default=120.0, help="seconds a rank may take a step")
    args = parser.parse_args(argv)
    if args.command == "distributed":
        return distributed_command(args, parser)
    if args.command == "diff":
        return diff_command(args, parser)
    if args.command == "costs":
        return costs_command(args.name, args.write)
    if args.command == "goldens":
        return goldens_command(args.write, args.dir)
    if args.command == "verify":
        return verify_command(args.name, args.pattern, args.dtype, args.device)
    if args.command == "summary":
        return summary_command(args.name)
    return list_command()

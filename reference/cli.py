"""``python -m reference {verify,summary,list,goldens}``: check the hand-written models against their
counterparts, the papers' facts and the stored goldens."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from reference.specs import SPECS, get_spec, torchvision_meta

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
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
        raise argparse.ArgumentTypeError(f"{text!r}: verify runs on cpu or cuda")
    return text


def verify(dtypes: Sequence[str], device: str) -> int:
    from reference.pairs import PAIRS  # builds nothing until asked; imported here to keep `list` fast

    rows, failed = [], []
    for pair in PAIRS.values():
        for dtype_name in dtypes:
            _, _, x = pair.models(DTYPES[dtype_name])
            result = pair.compare(DTYPES[dtype_name], device)
            forward = "exact" if pair.exact_forward else f"rtol={result.rtol:g} atol={result.atol:g}"
            backward = "exact" if pair.exact_grads else f"rtol={result.grad_rtol:g} atol={result.grad_atol:g}"
            status = "PASS" if result.passed else "FAIL"
            rows.append(
                (pair.name, "x".join(map(str, x.shape)), dtype_name, f"{result.forward_max:.3g}",
                 f"{result.grad_max:.3g}", f"fwd {forward}; grad {backward}", status)
            )  # fmt: skip
            if not result.passed:
                failed.append(f"{pair.name} [{dtype_name}]\n{result.report()}")
    header = ("pair", "input", "dtype", "max |Δ| fwd", "max |Δ| grad", "tolerance", "status")
    print(_table(header, rows))
    for pair in PAIRS.values():
        if pair.why_not_exact:
            print(f"* {pair.name}: not exact because {pair.why_not_exact}")
    for failure in failed:
        print(f"\nFAILED {failure}")
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def summary(name: str) -> int:
    import torchinfo

    spec = get_spec(name)
    model = spec.builder()
    side = spec.default_side
    print(torchinfo.summary(model, input_size=(1, spec.in_channels, side, side), device="cpu", verbose=0))
    arch, facts = spec.architecture, spec.facts
    measured_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows = [("trainable parameters", "total", f"{facts.trainable_params:,}", f"{measured_params:,}")]
    derived = arch.trainable_params()
    rows += [
        ("trainable parameters", layer, f"{n:,}", f"{derived[layer]:,}") for layer, n in facts.params_per_layer.items()
    ]
    connections = arch.connections()
    rows += [
        ("connections", layer, f"{n:,}", f"{connections[layer]:,}") for layer, n in facts.connections_per_layer.items()
    ]
    if facts.total_connections is not None:
        rows.append(("connections", "total", f"{facts.total_connections:,}", f"{sum(connections.values()):,}"))
    neurons = arch.neurons()
    rows += [("neurons", layer, f"{n:,}", f"{neurons[layer]:,}") for layer, n in facts.neurons_per_layer.items()]
    rows += [
        ("neurons (as printed)", layer, f"{n:,}", f"{neurons[layer]:,}")
        for layer, (n, _) in facts.printed_discrepancies.items()
    ]
    if facts.macs is not None:
        rows.append(
            (
                f"MACs at {facts.macs_side}x{facts.macs_side}",
                "total",
                f"{facts.macs:,}",
                f"{sum(arch.macs(facts.macs_side).values()):,}",
            )
        )
    if name == "alexnet":
        meta = torchvision_meta()
        rows.append(("torchvision meta num_params", "total", f"{meta['num_params']:,}", f"{measured_params:,}"))
        rows.append(
            ("torchvision meta _ops (GMAC)", "total", f"{meta['_ops']}", f"{sum(arch.macs(224).values()) / 1e9:.3f}")
        )
    print(
        f"\n{spec.name}: {spec.summary}\nsource: {facts.citation}\ninput: (N, {spec.in_channels}, H, W), H and W in {spec.valid_sides}\n"
    )
    print(_table(("fact", "layer", "published", "measured"), rows))
    for layer, (_, note) in facts.printed_discrepancies.items():
        print(f"* {layer}: {note}")
    return 0


def list_models() -> int:
    rows = [
        (
            spec.name,
            f"(N, {spec.in_channels}, H, W)",
            str(spec.valid_sides),
            f"{spec.facts.trainable_params:,}",
            spec.summary,
        )
        for spec in SPECS.values()
    ]
    print(_table(("model", "input", "H, W", "parameters", "what"), rows))
    return 0


def goldens(write: bool, directory: Path) -> int:
    """Check every model against its stored golden, or (``write``) regenerate the stored files."""
    from reference import golden

    failures = 0
    for spec in SPECS.values():
        if write:
            print(f"wrote {golden.write(spec, directory)}")
            continue
        now = golden.compute(spec)
        for dtype in golden.DTYPES:
            try:
                golden.check(spec, golden.load(spec, directory), now, dtype)
                print(f"ok    {spec.name} {dtype}")
            except AssertionError as error:
                failures += 1
                print(f"DRIFT {error}")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    verify_parser = commands.add_parser("verify", help="run every equivalence pair and print a table")
    verify_parser.add_argument(
        "--dtype", nargs="+", choices=DTYPES, default=list(DTYPES), help="dtypes to compare in (default: both)"
    )
    verify_parser.add_argument("--device", type=_device, default="cpu", help="cpu (default) or cuda[:N]")
    summary_parser = commands.add_parser(
        "summary", help="torchinfo summary and the paper's facts next to the measured ones"
    )
    summary_parser.add_argument("name", choices=list(SPECS))
    commands.add_parser("list", help="the models and the input sizes they accept")
    goldens_parser = commands.add_parser("goldens", help="compare every model with its stored golden fingerprint")
    goldens_parser.add_argument("--write", action="store_true", help="regenerate the stored goldens instead")
    goldens_parser.add_argument("--dir", type=Path, default=None, help="golden directory (default: tests/golden)")
    args = parser.parse_args(argv)
    if args.command == "goldens":
        from reference.golden import GOLDEN_DIR

        return goldens(args.write, args.dir or GOLDEN_DIR)
    if args.command == "verify":
        return verify(args.dtype, args.device)
    if args.command == "summary":
        return summary(args.name)
    return list_models()

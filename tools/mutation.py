"""A mutation run: plant one realistic re-implementer's bug at a time in a copy of the tree, run the default
`pytest` on it (stopping at the first failure), and report which mutants the suite kills.

    python tools/mutation.py                 # every mutant, one after another (about 10 minutes on 2 cores)
    python tools/mutation.py --only lrn      # the mutants whose name contains "lrn"
    python tools/mutation.py --kind "inert op" --kind size-dependent   # the mutants of these kinds

Not part of CI. The mutants are this project's own (mutmut and cosmic-ray mutate operators at random: most of
their mutants break every test at import, and a full run does not fit in an hour here). Each is an exact text
replacement that must match once, so a mutant that no longer applies fails loudly instead of passing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    kind: str  # which blind spot it stands for
    path: str
    old: str
    new: str


A2012 = "reference/models/alexnet2012.py"
TABLES = "reference/models/tables.py"
LAYERS = "reference/models/layers.py"
ALIGN = "reference/verify/align.py"
VGG = "reference/models/vgg.py"
RESNET = "reference/models/resnet.py"
MUTANTS = (
    Mutant("conv1 stride 3", "architecture", A2012, "kernel_size=11, stride=4)", "kernel_size=11, stride=3)"),
    Mutant("conv2 padding 1", "architecture", A2012, "kernel_size=5, padding=2, groups=2", "kernel_size=5, padding=1, groups=2"),
    Mutant("lrn k 1", "architecture", TABLES, "beta=0.75, k=2.0)", "beta=0.75, k=1.0)"),
    Mutant("lrn beta 0.5", "architecture", TABLES, "beta=0.75, k=2.0)", "beta=0.5, k=2.0)"),
    Mutant("lrn alpha convention", "layer", LAYERS, "window / self.size * (self.size * self.alpha)", "window / self.size * self.alpha"),
    Mutant("lrn window offset", "layer", LAYERS, "(0, 0, self.size // 2, (self.size - 1) // 2)", "(0, 0, (self.size - 1) // 2, self.size // 2)"),
    Mutant("c3 table entry", "architecture", "reference/models/lenet.py", "(0, 1, 2), (1, 2, 3)", "(0, 1, 3), (1, 2, 3)"),
    Mutant("squash slope", "layer", LAYERS, "slope = 2.0 / 3.0", "slope = 1.0 / 3.0"),
    Mutant("subsampling mean", "layer", LAYERS, "F.avg_pool2d(x, self.kernel_size) * self.kernel_size**2", "F.avg_pool2d(x, self.kernel_size)"),
    Mutant("rbf l1", "layer", LAYERS, "- self.prototypes) ** 2", "- self.prototypes).abs()"),
    Mutant("pool adjoint one division", "layer", LAYERS, "/ (h1 - h0) / (w1 - w0))", "/ ((h1 - h0) * (w1 - w0)))"),
    Mutant("f6 squash dropped", "architecture", "reference/models/lenet.py", "x = self.squash(self.f6(self.flatten(x)))", "x = self.f6(self.flatten(x))"),
    Mutant("lenet init sqrt", "init", "reference/models/lenet.py", "mul_(2.4 / fan_in)", "mul_(2.4 / fan_in**0.5)"),
    Mutant("alexnet2012 init std", "init", A2012, "normal_(0.0, 0.01)", "normal_(0.0, 0.02)"),
    Mutant("alexnet2012 bias conv4", "init", A2012, 'BIAS_ONE = ("conv2", "conv4", "conv5"', 'BIAS_ONE = ("conv2", "conv5"'),
    Mutant("dropout moved", "train mode", A2012, "x = self.relu(self.fc6(self.dropout(x)))", "x = self.dropout(self.relu(self.fc6(x)))"),
    Mutant("dropout removed", "train mode", A2012, "x = self.relu(self.fc7(self.dropout(x)))", "x = self.relu(self.fc7(x))"),
    Mutant("tv conv1 padding", "architecture", "reference/models/alexnet.py", "kernel_size=11, stride=4, padding=2", "kernel_size=11, stride=4, padding=1"),
    Mutant("port keys swapped", "port", "reference/models/alexnet.py", '"fc6": "classifier.1",\n    "fc7": "classifier.4",', '"fc6": "classifier.4",\n    "fc7": "classifier.1",'),
    Mutant("sparse macs dense", "counts", "reference/models/tables.py", "sum(len(maps) for maps in self.table) * self.kernel_size**2", "len(self.table) * self.in_channels * self.kernel_size**2"),
    Mutant("autocast rule", "validation", "reference/models/checks.py", "{x.dtype, like.dtype} <= AUTOCAST_CASTS", "{x.dtype} <= AUTOCAST_CASTS"),
    Mutant("float64 tolerance x1000", "harness", "reference/verify/compare.py", 'torch.float64: {"rtol": 1e-11, "atol": 1e-12}', 'torch.float64: {"rtol": 1e-8, "atol": 1e-9}'),
    Mutant("shape ignored", "harness", "reference/verify/compare.py", '    if a.shape != b.shape:\n        return float("inf"), False\n    if a.numel() == 0:', '    if a.numel() == 0:'),
    Mutant("missing gradient skipped", "harness", "reference/verify/compare.py", "            if name not in found and param.grad is not None:", "            if False:"),
    Mutant("googlenet bn eps", "architecture", "reference/models/googlenet.py", "TORCHVISION_BN_EPS = 1e-3", "TORCHVISION_BN_EPS = 1e-5"),
    Mutant("googlenet 4e pool", "architecture", "reference/models/googlenet.py", "kernel = 2 if module == \"4e\" and not paper else 3", "kernel = 3"),
    Mutant("googlenet head rate", "train mode", "reference/models/googlenet.py", "self.dropout = nn.Dropout(p=dropout)\n        self.avgpool", "self.dropout = nn.Dropout(p=0.5)\n        self.avgpool"),
    Mutant("towers not joined", "alignment", ALIGN, "    a, b = (_in_branch_order(_join_branches(list(steps))) for steps in (steps_a, steps_b))", "    a, b = (_in_branch_order(list(steps)) for steps in (steps_a, steps_b))"),
    Mutant("branches in run order", "alignment", ALIGN, "    a, b = (_in_branch_order(_join_branches(list(steps))) for steps in (steps_a, steps_b))", "    a, b = (_join_branches(list(steps)) for steps in (steps_a, steps_b))"),
    Mutant("step output not cloned", "alignment", ALIGN, "            output.detach().clone(),", "            output.detach(),"),
    Mutant("ambiguity unchecked", "alignment", ALIGN, "        if not certain[i][j]:", "        if False:"),
    Mutant("kinds ignored", "alignment", ALIGN, "    return (2 if a.kind == b.kind else 1) * _NAMED + named", "    return _NAMED"),
    Mutant("names ignored", "alignment", ALIGN, "    named = int(a.name == b.name)", "    named = 0"),
    Mutant("resnet v1 stride on the 3x3", "architecture", RESNET, "first, middle = (stride, 1) if stride_on_1x1 else (1, stride)", "first, middle = (1, stride)"),
    Mutant("resnet shortcut added before bn", "architecture", RESNET, "        out = self.bn2(self.conv2(out))\n        out += x if", "        out = self.conv2(out)\n        out += x if"),
    Mutant("resnet no relu after the addition", "architecture", RESNET, "        return self.relu(out)\n\n\nclass Bottleneck", "        return out\n\n\nclass Bottleneck"),
    Mutant("resnet option A zeros first", "layer", LAYERS, 'before = extra // 2 if self.layout == "both" else 0', 'before = extra // 2 if self.layout == "both" else extra'),
    Mutant("resnet kaiming fan_in", "init", RESNET, 'nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")', 'nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")'),
    Mutant("resnet zero init bn1", "init", RESNET, "nn.init.zeros_(module.bn3.weight if isinstance(module, Bottleneck) else module.bn2.weight)", "nn.init.zeros_(module.bn1.weight)"),
    Mutant("resnet paper fc not he", "init", RESNET, "        if isinstance(module, (nn.Conv2d, nn.Linear)):\n            nn.init.kaiming_normal_(module.weight, mode=\"fan_in\"", "        if isinstance(module, nn.Conv2d):\n            nn.init.kaiming_normal_(module.weight, mode=\"fan_in\""),
    Mutant("vgg C 1x1 as 3x3", "architecture", VGG, '"conv3-256", "conv3-256", "conv1-256"', '"conv3-256", "conv3-256", "conv3-256"'),
    Mutant("vgg 3x3 padding 0", "architecture", VGG, "kernel, padding=kernel // 2)", "kernel, padding=0)"),
    Mutant("vgg relu before batch norm", "architecture", VGG, "        if isinstance(spec, arch.BatchNorm2dSpec) or (\n            isinstance(spec, (arch.Conv2dSpec, arch.LinearSpec)) and not normalised_next\n        ):", "        if isinstance(spec, (arch.Conv2dSpec, arch.LinearSpec)):"),
    Mutant("vgg one dropout", "train mode", VGG, '            if name.startswith("fc"):', '            if name == "fc6":'),
    Mutant("vgg paper init std 0.01", "init", VGG, "PAPER_WEIGHT_STD = 0.1", "PAPER_WEIGHT_STD = 0.01"),
    Mutant("vgg kaiming fan_in", "init", VGG, 'mode="fan_out"', 'mode="fan_in"'),
    Mutant("vgg torchvision index shifted", "port", VGG, '{name: f"features.{i}" for i, name in enumerate(features)}', '{name: f"features.{i}" for i, name in enumerate(features, start=1)}'),
    Mutant("vgg dense window order", "port", "reference/verify/states.py", "    return tensor.view(shape) if", "    return (tensor.view(shape[0], *shape[2:], -1).movedim(-1, 1) if tensor.dim() == 2 and len(shape) == 4 else tensor.view(shape)) if"),
    Mutant("stored run replayed in place", "harness", "reference/verify/replay.py", "received.to(**where, copy=True)", "received.to(**where)"),
    Mutant("stored run's graph lost", "harness", "reference/verify/runs.py", '        inputs = tuple(None if j is None else steps[j] for j in step["inputs"])', "        inputs = ()"),
    Mutant("stored run's input unchecked", "harness", "reference/verify/compare.py", "    if not torch.equal(stored.to(given.device), given):", "    if False:"),
    Mutant("port by position of definition", "alignment", ALIGN, "    return [*uses.seen, *(name for name in names.values() if name not in uses.seen)]", "    return list(names.values())"),
    # Operations that do nothing at the weights the comparisons use (issue 22): each is caught only where it acts.
    Mutant("alexnet2012 conv4 relu dropped", "inert op", A2012, "        x = self.relu(self.conv4(x))  # (N, 384, 13, 13)", "        x = self.conv4(x)  # (N, 384, 13, 13)"),
    Mutant("seed lrn alpha unconverted", "inert op", A2012, "SEED_LRN_ALPHA = 1e-4 / 5", "SEED_LRN_ALPHA = 1e-4"),
    Mutant("two-tower biases by path", "init", A2012, "            _init_paper({name: getattr(tower, name) for name in _weighted(self.architecture)})", "            _init_paper({f\"tower.{name}\": getattr(tower, name) for name in _weighted(self.architecture)})"),
    Mutant("vgg block3 relu dropped", "inert op", VGG, "        if name == table.output_layer:\n            continue", "        if name in (table.output_layer, \"block3_conv1\"):\n            continue"),
    Mutant("vgg eval batch norm skipped", "inert op", VGG, "        for name in self._features:\n            x = self.get_submodule(name)(x)", "        for name in self._features:\n            if not self.training and \"_bn\" in name:\n                continue\n            x = self.get_submodule(name)(x)"),
    # Promises of the API (issue 22): each option, each semantics, each rule has a test that fails when broken.
    Mutant("weights= aliases the caller's tensors", "promise", "reference/models/weights.py", "    model.load_state_dict(state, assign=fresh)", "    model.load_state_dict(state, assign=True)"),
    Mutant("library checkpoint without statistics", "promise", "reference/models/weights.py", "        renamed[f\"{layers[path]}.{param}\"] = tensor", "        if not param.startswith(\"running\"):\n            renamed[f\"{layers[path]}.{param}\"] = tensor"),
    Mutant("vgg port drops the dropout rate", "promise", "reference/verify/port.py", "    tv_model = builder(weights=None, num_classes=model.num_classes, dropout=model.dropout6.p)", "    tv_model = builder(weights=None, num_classes=model.num_classes)"),
    Mutant("atol scaled by the largest value, not |value|", "promise", "reference/verify/compare.py", "    return max(-low.item(), high.item())", "    return high.item()"),
    Mutant("adaptive pool as nearest upsampling", "size-dependent", LAYERS, "        return adaptive_avg_pool2d(x, self.output_size)", "        return F.interpolate(x, size=(self.output_size, self.output_size), mode=\"nearest\")"),
)  # fmt: skip


def _copy_tree(source: Path, destination: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv*", ".tox", "__pycache__", ".hypothesis", ".benchmarks", "*.egg-info")
    shutil.copytree(source, destination, ignore=ignore)


def _run(mutant: Mutant, workdir: Path) -> tuple[bool, float, str]:
    tree = workdir / mutant.name.replace(" ", "-")
    _copy_tree(workdir / "tree", tree)
    target = tree / mutant.path
    text = target.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(f"mutant {mutant.name!r}: the text to replace occurs {text.count(mutant.old)} times")
    target.write_text(text.replace(mutant.old, mutant.new))
    started = time.perf_counter()
    # From the copy's root: its own `reference` comes first on sys.path, ahead of any installed one.
    done = subprocess.run(
        # The mutant's own check (the text it replaces is in the tree) would kill every mutant: left out.
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header",
         "--ignore=tests/test_mutants.py"],
        cwd=tree, capture_output=True, text=True, check=False,
    )  # fmt: skip
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    shutil.rmtree(tree)
    return done.returncode != 0, time.perf_counter() - started, failed[0] if failed else done.stdout.splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run the mutants whose name contains this (repeatable; with --kind, either)",
    )
    parser.add_argument("--kind", action="append", default=[], help="run the mutants of this kind (repeatable)")
    args = parser.parse_args()
    picked = bool(args.only or args.kind)
    chosen = [m for m in MUTANTS if not picked or any(part in m.name for part in args.only) or m.kind in args.kind]
    killed = 0
    with tempfile.TemporaryDirectory() as workdir:
        _copy_tree(ROOT, Path(workdir) / "tree")  # the tree as it is now: edits made during the run do not leak in
        for mutant in chosen:
            dead, seconds, evidence = _run(mutant, Path(workdir))
            killed += dead
            print(
                f"{'killed ' if dead else 'SURVIVED'}  {mutant.kind:<12} {mutant.name:<28} {seconds:5.0f} s  {evidence}"
            )
            sys.stdout.flush()
    print(f"\n{killed} of {len(chosen)} killed ({100 * killed / len(chosen):.0f} %)")
    return 0 if killed == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())

"""A peer from the literature: TabPack's packed MLP (yandex-research/tabpack, ICML 2026, PyTorch) trains the
width x depth x learning-rate sweep on the CPU, every model in one pack.

    python benchmarks/tabpack_peer.py                            # 5 widths x 3 depths x 64 lrs = 960 models, 20 epochs
    python benchmarks/tabpack_peer.py --lrs 4 --epochs 2         # a quick look (60 models)
    python benchmarks/tabpack_peer.py --widths 64 --depths 1 --lrs 64 --json /tmp/tabpack.json
    python benchmarks/tabpack_peer.py --tabpack ~/src/tabpack    # a clone of the repository instead of the mirror
    python benchmarks/tabpack_peer.py --check 20                 # each member of a pack against it trained alone

The workload is the one the engine runs: the shipped telco churn table (`sweeps.load_csv`, target Churn: 45
features, 5634 training and 1409 validation rows, binary), an MLP of `depth` hidden layers of `width` units with
ReLU and one logit, sigmoid cross-entropy, Adam (0.9, 0.999, eps 1e-8, no weight decay), batch size 32 with the
last partial batch kept (ceil(rows / 32) steps), the learning rates log-spaced in [1e-4, 1e-1], one shuffled
minibatch order per epoch shared by every model, and each model's validation loss after every epoch.

TabPack's own modules do the work, unchanged: `project.nn.MLPBackbonePack` holds every model's hidden layers as
one pack (each member its own `d_block` = width and `n_blocks` = depth: weights are padded to the widest width
and masked, and a block runs only on the members deep enough for it), `project.nn.LinearPack` is the output
layer, `project.nn.PackView` broadcasts the shared minibatch to every member, and `project.optim.AdamWPack`
updates all members with a learning rate each (`weight_decay=0.0`). All 960 models are one pack, as TabPack
packs models of different widths and depths: every member computes (and AdamWPack updates) the widest layer,
256 x 256, whatever its own width, and the second and third blocks run on the members that deep. The training
step is TabPack's (`src/project/tabpack.py`: the members' mean losses summed, one backward, one optimizer
step); only the minibatch order differs from TabPack's default, which draws one per member: here one is shared,
as the engine does. Dropout is 0; TabPack's feature embeddings, early stopping and ensembling are not used.
`--check` shows that each member trains as its own model alone with `torch.optim.Adam` (float64: ~1e-13 apart
after 20 steps).

The code is read at run time from a copy of the repository (`--tabpack` or TABPACK_REPO: a clone, or a bare git
mirror of it) into a temporary folder and imported from there: `src/project/nn.py`, `src/project/optim.py` and
what they import, `src/lib/types.py` and `src/vendor/muon.py`. Nothing of TabPack is vendored into this
repository; it carries no licence file (checked at commit eeb42cd), so its code is only run, never copied here.
It needs Python 3.12 for PEP 695 type syntax in six lines of annotations and aliases; on 3.11 those lines are
rewritten as they are read (`PY311_PATCHES`), which changes nothing that runs.

Printed: models, epochs, wall seconds from the process's start to the end of training (imports and the data
load included), steady-state model-epochs/s (epochs after the first), the best model's validation loss, peak
RSS. Never imported by the library.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # the fallback start when /proc does not say when the process began

import argparse  # noqa: E402
import atexit  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sweeps  # noqa: E402

MIRROR = Path("/work/.mirror/yandex-research+tabpack/repo")  # where the search tool's `fetch` puts the repository
TABPACK_FILES = ("src/project/nn.py", "src/project/optim.py", "src/lib/types.py", "src/vendor/muon.py")
PACKAGES = ("project", "lib", "vendor")  # TabPack's own top-level names (`from lib.types import KWArgs`, ...)
WIDTHS, DEPTHS, LRS = (16, 32, 64, 128, 256), (1, 2, 3), 64
LR_LOW, LR_HIGH = 1e-4, 1e-1
B1, B2, EPS = 0.9, 0.999, 1e-8
VAL_ROWS_PER_CHUNK = 256  # validation rows per forward: 960 members x 256 rows x 256 units is 250 MB a layer

# The only lines of the four files that Python 3.11 cannot parse, and what they become there: PEP 695 type
# syntax in annotations. `lib/types.py` defines aliases (`type KWArgs = dict[str, Any]`); `project/optim.py` has
# one `typing.overload` stub with a type parameter. Each pattern must match exactly: an upstream change fails
# loudly here instead of running something else.
PY311_PATCHES = {
    "src/lib/types.py": [
        ("type KWArgs = dict[str, Any]", "KWArgs = dict[str, Any]"),
        ("type JSONDict = dict[str, Any]", "JSONDict = dict[str, Any]"),
        ("type AMPDType = Literal['bfloat16', 'float16']", "AMPDType = Literal['bfloat16', 'float16']"),
        ("type DataKey = str", "DataKey = str"),
        ("type PartKey = str", "PartKey = str"),
    ],
    "src/project/optim.py": [
        (
            "def _maybe_unsqueeze[T](value: T, *, p: Tensor) -> T: ...",
            "def _maybe_unsqueeze(value, *, p: Tensor): ...",
        ),
    ],
}


def process_seconds() -> float:
    """Seconds since this process started, from /proc (10 ms ticks); since this module began elsewhere."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - START


def read_tabpack(repo: Path) -> tuple[dict[str, str], str]:
    """TabPack's files (path -> text) and its commit, from a clone (a work tree) or a bare git directory."""
    tree = repo if (repo / "src" / "project" / "nn.py").exists() else None
    git = ["git", "-C", str(repo)] if tree else ["git", f"--git-dir={repo}"]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    files = {}
    for name in TABPACK_FILES:
        if tree:
            files[name] = (tree / name).read_text()
            continue
        shown = subprocess.run([*git, "show", f"HEAD:{name}"], capture_output=True, text=True)
        if shown.returncode != 0:
            raise FileNotFoundError(
                f"TabPack's {name} is not in {repo} (a clone of github.com/yandex-research/tabpack or its bare "
                f"git directory is needed, --tabpack), but got: {shown.stderr.strip()}"
            )
        files[name] = shown.stdout
    return files, commit.strip()


def patch_for_python311(files: dict[str, str]) -> list[str]:
    """Rewrites the PEP 695 lines (`PY311_PATCHES`) in place on Python < 3.12; returns the lines rewritten."""
    if sys.version_info >= (3, 12):
        return []
    done = []
    for name, patches in PY311_PATCHES.items():
        for old, new in patches:
            found = files[name].count(old)
            if found != 1:
                raise RuntimeError(f"expected the line {old!r} once in TabPack's {name}, but got {found}")
            files[name] = files[name].replace(old, new)
            done.append(f"{name}: {old}")
    return done


def load_tabpack(repo: Path) -> tuple[ModuleType, ModuleType, dict[str, Any]]:
    """Imports TabPack's `project.nn` and `project.optim` from a temporary copy of its files.

    Returns:
      (project.nn, project.optim, info: the commit, the source and the lines patched for Python 3.11).
    """
    taken = [name for name in PACKAGES if name in sys.modules]
    if taken:
        raise RuntimeError(f"TabPack's packages {PACKAGES} must not be imported already, but got {taken}")
    files, commit = read_tabpack(repo)
    patched = patch_for_python311(files)
    folder = Path(tempfile.mkdtemp(prefix="tabpack-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for package in PACKAGES:
        (folder / package).mkdir()
        (folder / package / "__init__.py").write_text("")  # theirs import nothing these modules need
    for name, text in files.items():
        (folder / name.removeprefix("src/")).write_text(text)
    sys.path.insert(0, str(folder))
    nn, optim = importlib.import_module("project.nn"), importlib.import_module("project.optim")
    return nn, optim, {"tabpack_commit": commit, "tabpack_source": str(repo), "patched_for_py311": patched}


def sweep_grid(widths, depths, lrs: int) -> list[dict[str, Any]]:
    """One dict per model (width, depth, learning_rate): widths x depths x learning rates, rates innermost."""
    rates = np.logspace(math.log10(LR_LOW), math.log10(LR_HIGH), lrs)
    return [{"width": w, "depth": d, "learning_rate": float(lr)} for w in widths for d in depths for lr in rates]


class PackedMLP(torch.nn.Module):
    """Every model of the sweep as one TabPack pack: x (rows, features) -> logits (members, rows).

    `nn` is TabPack's `project.nn`: PackView -> MLPBackbonePack (per-member width and depth, padded to the
    largest and masked) -> LinearPack to one logit, as TabPack's `ModelPack` without feature embeddings.
    """

    def __init__(self, nn: ModuleType, features: int, widths: list[int], depths: list[int]):
        super().__init__()
        members = len(widths)
        self.pack_view = nn.PackView(pack_size=members)
        self.backbone = nn.MLPBackbonePack(
            d_in=features,
            n_blocks=depths,
            d_block=widths,
            max_n_blocks=max(depths),
            max_d_block=max(widths),
            dropout=0.0,
            activation="ReLU",
            pack_size=members,
        )
        self.output = nn.LinearPack(widths, 1, max_in_features=max(widths), pack_size=members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.backbone(self.pack_view(x)))[..., 0]


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each member's mean sigmoid cross-entropy: logits (members, rows), y (rows,) -> (members,)."""
    return F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none").mean(-1)


@torch.inference_mode()
def validation_losses(model: PackedMLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(members,) validation losses, the rows in chunks so a layer's activations stay small."""
    model.eval()
    chunks = [slice(i, i + VAL_ROWS_PER_CHUNK) for i in range(0, len(y), VAL_ROWS_PER_CHUNK)]
    total = sum(member_losses(model(x[rows]), y[rows]) * len(y[rows]) for rows in chunks)
    model.train()
    return total / len(y)


def make_optimizer(optim: ModuleType, model: PackedMLP, rates: list[float]):
    """TabPack's AdamWPack over every parameter pack: a learning rate per member, Adam's defaults, no decay."""
    return optim.AdamWPack(
        model.parameters(), lr=rates, beta1=B1, beta2=B2, eps=EPS, weight_decay=0.0, pack_size=len(rates)
    )


def member_alone(model: PackedMLP, member: int, width: int, depth: int) -> torch.nn.Sequential:
    """A plain torch MLP holding one member's weights, cut out of the padded packs (their dtype)."""
    layers: list[torch.nn.Module] = []
    for block in list(model.backbone.blocks)[:depth]:
        weight = block.linear.weight[member, :width, : width if layers else block.linear.max_in_features]
        linear = torch.nn.Linear(weight.shape[1], width, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(block.linear.bias[member, :width])
        layers += [linear, torch.nn.ReLU()]
    head = torch.nn.Linear(width, 1, dtype=model.output.weight.dtype)
    with torch.no_grad():
        head.weight.copy_(model.output.weight[member, :, :width])
        head.bias.copy_(model.output.bias[member])
    return torch.nn.Sequential(*layers, head)


def difference_from_alone(nn: ModuleType, optim: ModuleType, x, y, grid, batch_size: int, steps: int) -> float:
    """The largest absolute difference, over every member and weight, between the pack after `steps` minibatch
    steps and each member cut out before training (`member_alone`) and trained alone with `torch.optim.Adam`
    (same learning rate, betas, eps) on the same minibatches, all in float64.

    The pack is built in float32 (TabPack's initialisation mixes in float32 tensors), then converted; float64
    is the default dtype from there on, since AdamWPack makes its learning rates and bias corrections in the
    default dtype. The padding, the masks and AdamWPack then match plain torch to ~1e-14 (~1e-9 after 50 steps
    at lr 0.1). In float32 the two differ by rounding only, but Adam's m / sqrt(v) turns rounding on
    near-zero gradients into whole steps of size lr: ~1e-2 apart after 20 steps at lr 1e-2.
    """
    model = PackedMLP(nn, x.shape[1], [g["width"] for g in grid], [g["depth"] for g in grid]).double()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x, y = x.double(), y.double()
        alone = [member_alone(model, i, g["width"], g["depth"]) for i, g in enumerate(grid)]
        optimizer = make_optimizer(optim, model, [g["learning_rate"] for g in grid])
        batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, steps * batch_size, batch_size)]
        for xb, yb in batches:
            optimizer.zero_grad()
            member_losses(model(xb), yb).sum().backward()
            optimizer.step()
        worst = 0.0
        for i, (g, net) in enumerate(zip(grid, alone)):
            adam = torch.optim.Adam(net.parameters(), lr=g["learning_rate"], betas=(B1, B2), eps=EPS)
            for xb, yb in batches:
                adam.zero_grad()
                F.binary_cross_entropy_with_logits(net(xb)[:, 0], yb).backward()
                adam.step()
            trained = member_alone(model, i, g["width"], g["depth"])
            for a, b in zip(net.parameters(), trained.parameters()):
                worst = max(worst, float((a - b).detach().abs().max()))
    finally:
        torch.set_default_dtype(default)
    return worst


def train_epoch(model, optimizer, x, y, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """One epoch in one shuffled order shared by all members, TabPack's step: summed member losses, one
    backward, one AdamWPack step. Returns the (members,) mean training loss over the steps."""
    order = torch.randperm(len(y), generator=generator)
    total, steps = 0.0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        losses = member_losses(model(x[rows]), y[rows])
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step()
        total, steps = total + losses.detach(), steps + 1
    return total / steps


def load_data(path: Path) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_val, y_val) of a binary table as the engine reads it: float32 tensors."""
    data = sweeps.load_csv(path, target="Churn")
    if data.task != "binary":
        raise ValueError(f"the peer trains a binary task (one logit), but {path} is {data.task!r}")
    return tuple(torch.tensor(np.asarray(a, np.float32)) for a in (data.x_train, data.y_train, data.x_val, data.y_val))


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    nn, optim, info = load_tabpack(args.tabpack)
    x, y, xv, yv = load_data(args.data)
    grid = sweep_grid(args.widths, args.depths, args.lrs)
    model = PackedMLP(nn, x.shape[1], [g["width"] for g in grid], [g["depth"] for g in grid])
    optimizer = make_optimizer(optim, model, [g["learning_rate"] for g in grid])
    generator = torch.Generator().manual_seed(args.seed)
    setup_s = process_seconds()
    epoch_times, val_history = [], []
    for epoch in range(args.epochs):
        began = time.perf_counter()
        train_loss = train_epoch(model, optimizer, x, y, args.batch_size, generator)
        val_history.append(validation_losses(model, xv, yv))
        epoch_times.append(time.perf_counter() - began)
        best = int(torch.argmin(val_history[-1]))
        print(
            f"  epoch {epoch + 1:>3}/{args.epochs}  {epoch_times[-1]:7.2f} s  train loss (best member) "
            f"{float(train_loss[best]):.4f}  best val loss {float(val_history[-1][best]):.4f}",
            flush=True,
        )
    wall_s = process_seconds()
    val = torch.stack(val_history).numpy()  # (epochs, members)
    final = val[-1]
    best = int(np.nanargmin(final))
    steady = epoch_times[1:]
    return {
        "peer": "tabpack",
        **info,
        "models": len(grid),
        "widths": list(args.widths),
        "depths": list(args.depths),
        "lrs": args.lrs,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_rows": len(y),
        "val_rows": len(yv),
        "steps_per_epoch": -(-len(y) // args.batch_size),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "wall_s": wall_s,
        "setup_s": setup_s,
        "epoch_times": epoch_times,
        "model_epochs_per_s": len(grid) * len(steady) / sum(steady) if steady else None,
        "best": {**grid[best], "val_loss": float(final[best])},
        "best_val_loss_any_epoch": float(np.nanmin(val)),
        "diverged": int(np.sum(~np.isfinite(final))),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "final_val_loss": [float(v) for v in final],
        "grid": grid,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lrs", type=int, default=LRS, help="learning rates per (width, depth), log-spaced")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "telco_customer_churn.csv")
    parser.add_argument("--tabpack", type=Path, default=Path(os.environ.get("TABPACK_REPO", MIRROR)))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--check",
        type=int,
        metavar="STEPS",
        help="instead: train the widths x depths x 2 learning rates (the range's ends) STEPS steps as a pack and "
        "each member alone with torch.optim.Adam; print the largest weight difference",
    )
    args = parser.parse_args(argv)
    for name in ("lrs", "epochs", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, but got {getattr(args, name)}")
    if min(args.widths) < 1 or min(args.depths) < 1:
        parser.error(f"widths and depths must be >= 1, but got {args.widths} and {args.depths}")
    if args.check:
        torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        nn, optim, info = load_tabpack(args.tabpack)
        x, y, _, _ = load_data(args.data)
        grid = sweep_grid(args.widths, args.depths, 2)
        worst = difference_from_alone(nn, optim, x, y, grid, args.batch_size, args.check)
        print(
            f"tabpack {info['tabpack_commit'][:7]}: {len(grid)} members, {args.check} steps: pack against alone, "
            f"largest weight difference {worst:.3g}"
        )
        return 0
    result = run(args)
    rate = result["model_epochs_per_s"]
    best = result["best"]
    print(
        f"tabpack {result['tabpack_commit'][:7]}: {result['models']} models x {result['epochs']} epochs, "
        f"{result['threads']} threads\n"
        f"  wall {result['wall_s']:.1f} s (process start to end of training; setup {result['setup_s']:.1f} s)\n"
        f"  steady state {'n/a (one epoch)' if rate is None else f'{rate:.3g} model-epochs/s'}"
        f" ({len(result['epoch_times']) - 1} epochs after the first)\n"
        f"  best val loss {best['val_loss']:.4f} (width {best['width']}, depth {best['depth']}, "
        f"lr {best['learning_rate']:.3g}; best at any epoch {result['best_val_loss_any_epoch']:.4f}), "
        f"{result['diverged']} diverged\n"
        f"  peak RSS {result['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

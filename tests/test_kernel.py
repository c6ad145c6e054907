"""The Pallas kernel (issue 25): members trained through an epoch with their state on chip are the XLA path's
members, to float rounding; through `sweeps.run`, with the strategies that edit a population, lanes on and off, a
stop and its resume; and the kernel lowers to Triton for a GPU on any machine.

The kernel runs in Pallas's interpreter here (no GPU): the same jaxpr the GPU backend compiles, evaluated by XLA."""

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import sweeps
from sweeps import space
from sweeps.engine import (
    Controls,
    Split,
    epoch_function,
    flat_params,
    fuse,
    init_population,
    keys,
    make_train_epoch,
    stack_hparams,
    structure_of,
)
from sweeps.engine.hparams import resolve
from sweeps.engine.kernel import KernelPlan, kernel_plan, unsupported

from helpers import Stop, crash_after_saves, synthetic

TOLERANCE = 2e-5  # |kernel - XLA| on any parameter after two epochs (the sums of a matrix product may differ in order)
# in bfloat16 one rounding differs by bfloat16's epsilon (2**-8 relative) and two epochs carry it on
BFLOAT16_TOLERANCE = 1e-2
INTERPRET = KernelPlan(block=2, interpret=True)
# (task, hyperparameters of every member, learning rates, each member's hidden widths where they differ): each
# variant trains 3 members for 2 epochs; the regression one has a rate that diverges (it must be marked alike, and
# change no other member); the multiclass one is a fused population of widths and depths
VARIANTS = {
    "multiclass adamw cosine tanh, fused widths 12/5/8 and depths 1-2": (
        "multiclass",
        {"optimizer": "adamw", "schedule": "cosine", "activation": "tanh", "l2": 1e-3},
        [1e-3, 1e-2, 3e-2],
        [(12, 6), (5,), (8, 3)],
    ),
    "binary adam relu, bfloat16": ("binary", {"precision": "bfloat16", "hidden": (16,)}, [1e-3, 1e-2, 3e-2], None),
    "regression momentum onecycle sigmoid": (
        "regression",
        {"optimizer": "momentum", "schedule": "onecycle", "activation": "sigmoid", "hidden": (20,)},
        [1e-2, 3e-2, 1e3],
        None,
    ),
}


def train_both(data, params: list[dict], structure, epochs: int = 2):
    """The members of `params` trained `epochs` epochs on the XLA path and in the kernel: (populations, metrics)."""
    hparams = stack_hparams(params, len(params), structure)
    controls = Controls(jnp.float32(1e4), jnp.int32(10), jnp.float32(0), jnp.float32(1))
    train, val = Split(data.x_train, data.y_train), Split(data.x_val, data.y_val)
    out = []
    for kernel in (None, INTERPRET):
        pop = init_population(structure, hparams, np.arange(len(params)), 0)
        epoch = make_train_epoch(structure, None, "val_loss", kernel)
        for e in range(epochs):
            pop, metrics = epoch(pop, train, val, keys.batch_order_key(0, e), controls)
        out.append((pop, jax.device_get(metrics)))
    return out


def assert_same_members(xla, kernel, tolerance=TOLERANCE):
    (a, ma), (b, mb) = xla, kernel
    np.testing.assert_array_equal(ma["diverged"], mb["diverged"])
    np.testing.assert_array_equal(np.asarray(a.step), np.asarray(b.step))
    finite = ~ma["diverged"]
    np.testing.assert_allclose(flat_params(a.params)[finite], flat_params(b.params)[finite], atol=tolerance, rtol=0)
    for name in ("train_loss", "val_loss"):
        np.testing.assert_allclose(ma[name][finite], mb[name][finite], rtol=tolerance / 2, atol=1e-6)
    moments = [np.asarray(leaf)[finite] for leaf in jax.tree.leaves(a.opt_state)]
    for x, y in zip(moments, [np.asarray(leaf)[finite] for leaf in jax.tree.leaves(b.opt_state)]):
        np.testing.assert_allclose(x, y, atol=tolerance, rtol=tolerance * 5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_member_trained_in_the_kernel_is_the_member_the_xla_path_trains(variant):
    task, shared, rates, hiddens = VARIANTS[variant]
    data = synthetic(task, rows=300)
    precision = shared.get("precision", "float32")
    shared = {name: value for name, value in shared.items() if name != "precision"}
    params = [
        resolve({"learning_rate": lr, "batch_size": 32, "epochs": 2, **shared, **({"hidden": h} if h else {})})
        for lr, h in zip(rates, hiddens or [None] * len(rates))
    ]
    structure = dataclasses.replace(fuse([structure_of(p, data) for p in params]), precision=precision)
    assert unsupported(structure) is None and (structure.min_depth is not None) == (hiddens is not None)
    xla, kernel = train_both(data, params, structure)
    assert_same_members(xla, kernel, BFLOAT16_TOLERANCE if precision == "bfloat16" else TOLERANCE)
    if rates[-1] >= 300:
        assert xla[1]["diverged"].tolist() == [False, False, True], "the rate meant to diverge did, alone"
    if hiddens is not None:  # the width-5 member's padded units and inputs stay exactly zero in the kernel
        first = np.asarray(kernel[0].params["Dense_0"]["kernel"])[1]
        assert not first[5:].any() and not np.asarray(kernel[0].params["Dense_1"]["kernel"])[1].any()


def test_structures_the_kernel_does_not_take_train_on_the_xla_path_and_say_why(binary_data):
    dropout = structure_of(resolve({"dropout": 0.2}), binary_data)
    assert "dropout" in unsupported(dropout)
    assert kernel_plan("pallas", dropout, 1, "gpu") == (None, unsupported(dropout))
    plain = structure_of(resolve({}), binary_data)
    assert kernel_plan("pallas", plain, 8, "gpu")[0] is None, "the kernel is not partitioned over a mesh"
    assert kernel_plan("pallas", plain, 1, "gpu") == (KernelPlan(block=1, interpret=False), "")
    assert kernel_plan("pallas", plain, 1, "cpu")[0].interpret
    assert kernel_plan("xla", plain, 1, "gpu") == (None, "")
    with pytest.raises(ValueError, match="cannot train in the Pallas kernel: dropout"):
        epoch_function(dropout, kernel=INTERPRET)
    with pytest.warns(UserWarning, match=r"kernel='pallas': .* trains on the XLA path: dropout"):
        result = sweeps.run(binary_data, space={"dropout": [0.2]}, epochs=1, kernel="pallas", progress=False)
    assert result.table["state"].tolist() == ["complete"]
    with pytest.raises(ValueError, match=r"kernel must be one of \['xla', 'pallas'\], but got kernel='triton'"):
        sweeps.run(binary_data, kernel="triton")


# Lowered for CUDA (Triton) on this machine, not compiled: two tasks, depths 2 and 3, blocks of 1 and 4 members,
# float32 and bfloat16 (every optimizer, schedule and activation the kernel takes lowered alike when this was
# written: benchmarks/README.md, "The Pallas kernel")
LOWERED = [
    ("multiclass", {"optimizer": "adamw", "schedule": "warmup_cosine", "hidden": (8, 8)}, 4),
    ("regression", {"optimizer": "rmsprop", "activation": "gelu", "hidden": (8, 8, 8), "precision": "bfloat16"}, 1),
]


def test_the_kernel_lowers_to_triton_for_a_gpu():
    for task, hp, block in LOWERED:
        data = synthetic(task, rows=100)
        precision = hp.get("precision", "float32")
        hp = {name: value for name, value in hp.items() if name != "precision"}
        params = [resolve({"learning_rate": lr, "batch_size": 32, **hp}) for lr in (1e-3, 1e-2, 1e-1)]
        structure = dataclasses.replace(structure_of(params[0], data), precision=precision)
        pop = init_population(structure, stack_hparams(params, 3), np.arange(3), 0)
        controls = Controls(jnp.float32(1e4), jnp.int32(10), jnp.float32(0), jnp.float32(1))
        epoch = jax.jit(epoch_function(structure, kernel=KernelPlan(block=block)))
        splits = (Split(data.x_train, data.y_train), Split(data.x_val, data.y_val))
        lowered = epoch.trace(pop, *splits, keys.batch_order_key(0, 0), controls).lower(lowering_platforms=("cuda",))
        text = lowered.as_text()
        assert text.count("__gpu$xla.gpu.triton") == 1, (task, hp, "one Triton kernel per epoch")
        assert "sweepax_member_epoch" in text


# Through sweeps.run: halving with refill and PBT edit populations between epochs; a grid in two lanes
RUNS = {
    "grid, two lanes": (
        dict(
            space={"learning_rate": space.loguniform(1e-3, 1e-1)},
            strategy=sweeps.Grid(n=4),
            max_population=2,  # two chunks, trained side by side
        ),
        2,
    ),
    "halving with refill": (
        dict(
            space={"learning_rate": space.loguniform(1e-3, 1e-1)},
            strategy=sweeps.Halving(n=6, min_epochs=1, eta=2, refill=True, seed=0),
        ),
        1,
    ),
    "pbt": (dict(space={"learning_rate": space.loguniform(1e-3, 1e-1)}, strategy=sweeps.PBT(population=4, seed=0)), 1),
}
CHEAP = dict(epochs=2, plots=False, progress=False, keep_models=1, checkpoint_every=1)


@pytest.mark.parametrize("name", RUNS)
def test_sweeps_run_in_the_kernel_gives_the_xla_paths_table(name, tmp_path, monkeypatch):
    def sweep():  # a strategy keeps its state: each run gets its own
        return {**copy.deepcopy(RUNS[name][0]), **CHEAP}

    monkeypatch.setenv("SWEEPS_LANES", str(RUNS[name][1]))
    data = synthetic("regression", rows=300)
    xla = sweeps.run(data, **sweep())
    kernel = sweeps.run(data, **sweep(), kernel="pallas", run_dir=tmp_path / "run")
    assert kernel.config["kernel"] == "pallas" and "kernel" not in xla.config
    assert set(kernel.config["steps_by_structure"].values()) == {"pallas"}, "config.json: every step in the kernel"
    columns = ["number", "state", "epochs", "best_epoch"]
    pd.testing.assert_frame_equal(xla.table[columns], kernel.table[columns])
    np.testing.assert_allclose(kernel.table["value"], xla.table["value"], rtol=1e-5)
    np.testing.assert_allclose(kernel.history["value"], xla.history["value"], rtol=1e-4, atol=1e-6)
    if name == "halving with refill":
        assert (kernel.table["state"] == "pruned").any()
        # stopped at its second checkpoint and resumed: the same run, bit for bit (the kernel's program again)
        undo = crash_after_saves(monkeypatch, 2)
        with pytest.raises(Stop):
            sweeps.run(data, **sweep(), kernel="pallas", run_dir=tmp_path / "stopped")
        undo()
        resumed = sweeps.run(data, **sweep(), kernel="pallas", run_dir=tmp_path / "stopped", resume=True)
        pd.testing.assert_frame_equal(kernel.table, resumed.table)
        pd.testing.assert_frame_equal(kernel.history, resumed.history)


def test_the_kernel_is_a_config_key():
    from pathlib import Path

    from sweeps.cli.config import load_config
    from sweeps.cli.config_schema import settings_from_config

    example = Path(__file__).resolve().parents[1] / "data" / "examples" / "churn_lr.toml"
    assert settings_from_config(load_config(example)).kernel == "xla"
    assert settings_from_config(load_config(example, ["train.kernel=pallas"])).kernel == "pallas"
    with pytest.raises(ValueError, match=r"kernel must be one of \['xla', 'pallas'\], but got kernel='cuda'"):
        settings_from_config(load_config(example, ["train.kernel=cuda"]))


def test_a_kernel_that_does_not_compile_trains_on_the_xla_path_and_config_json_says_where_steps_ran(
    binary_data, monkeypatch
):
    from models import MLP
    from sweeps.engine import kernel as kernel_module

    sweep = dict(space={"learning_rate": [1e-3, 1e-2]}, epochs=1, progress=False, plots=False)

    def broken(*args, **kwargs):  # stands for a backend that cannot compile the kernel (Triton out of resources)
        raise RuntimeError("triton: out of shared memory")

    monkeypatch.setattr(kernel_module, "epoch_kernel", broken)
    with pytest.warns(UserWarning, match=r"did not compile in the Pallas kernel \(triton: out of shared memory\)"):
        fell_back = sweeps.run(binary_data, model=MLP(hidden=(7,)), kernel="pallas", **sweep)
    xla = sweeps.run(binary_data, model=MLP(hidden=(7,)), **sweep)
    pd.testing.assert_frame_equal(fell_back.table, xla.table)
    steps = list(fell_back.config["steps_by_structure"].values())
    assert steps == ["xla: the kernel did not compile (triton: out of shared memory)"]
    assert "steps_by_structure" not in xla.config

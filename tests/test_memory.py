"""The memory estimate holds against XLA's accounting, and large groups are chunked to fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sweeps
from sweeps import space
from sweeps.driver.populations import controls_for
from sweeps.engine import Split, Structure, keys, make_train_epoch, memory, population_builder, stack_hparams
from sweeps.engine.hparams import resolve

from helpers import synthetic


@pytest.mark.parametrize("hidden, optimizer, members", [((64,), "adam", 64), ((32, 16), "momentum", 256)])
def test_estimate_bounds_the_compiled_programs_memory(hidden, optimizer, members):
    data = synthetic("binary", rows=2000, features=20)
    structure = Structure(hidden, "relu", 32, optimizer, "constant", False, False, "binary", 20, 1)
    # the population's shapes are all the compiler needs: nothing is initialised (nor its program compiled)
    build = population_builder(structure)
    pop = jax.eval_shape(
        lambda hparams, numbers: build(hparams, numbers, numbers, 0),
        dict(stack_hparams([resolve({})], members)),
        np.arange(members, dtype=np.int32),
    )
    train = Split(jnp.asarray(data.x_train), jnp.asarray(data.y_train))
    val = Split(jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    compiled = (
        make_train_epoch(structure)
        .lower(pop, train, val, keys.batch_order_key(0, 0), controls_for(data, None, None))
        .compile()
    )
    stats = compiled.memory_analysis()
    xla = (
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )
    estimate = memory.population_bytes(structure, members, data.n_train, data.n_val)
    print(f"{hidden} {optimizer} x{members}: estimate {estimate / 2**20:.1f} MB, XLA {xla / 2**20:.1f} MB")
    assert xla <= estimate <= 3 * xla


def test_a_group_too_large_for_the_budget_is_chunked_with_padding_and_one_program(binary_data, monkeypatch):
    monkeypatch.setenv("SWEEPS_LANES", "1")  # lanes share the budget (test_lanes.py)
    structure_bytes = memory.population_bytes(
        Structure((64,), "relu", 32, "adam", "constant", False, False, "binary", binary_data.n_features, 1),
        4,
        binary_data.n_train,
        binary_data.n_val,
    )
    plan = sweeps.dry_run(
        binary_data,
        space={"learning_rate": space.loguniform(1e-3, 1e-1)},
        strategy=sweeps.Grid(n=10),
        memory_budget=structure_bytes,
    )
    (group,) = plan.groups
    assert group.chunk_size == 4 and len(group.chunks) == 3 and group.padding == 2
    assert group.chunk_bytes <= structure_bytes


def test_chunked_sweep_gives_the_same_table_as_one_population(binary_data):
    search = {"learning_rate": space.loguniform(1e-3, 1e-1)}
    whole = sweeps.run(binary_data, space=search, strategy=sweeps.Grid(n=5), epochs=2)
    chunked = sweeps.run(binary_data, space=search, strategy=sweeps.Grid(n=5), epochs=2, max_population=2)
    assert chunked.config["groups"][0]["chunks"] == 3 and chunked.config["groups"][0]["padding"] == 1
    assert chunked.config["compilations"] <= 1, "the padded last chunk reuses the program"
    np.testing.assert_allclose(chunked.table["value"], whole.table["value"], rtol=1e-5)
    assert (chunked.table["state"] == whole.table["state"]).all()


class FakeAccelerator:
    """A device whose allocator reports a limit and the bytes already in use, as a GPU's does."""

    platform = "gpu"

    def __init__(self, limit, in_use):
        self.stats = {"bytes_limit": limit, "bytes_in_use": in_use, "peak_bytes_in_use": in_use}

    def memory_stats(self):
        return self.stats


def test_available_bytes_on_an_accelerator_is_what_is_free_not_the_limit(monkeypatch):
    gpu = FakeAccelerator(limit=60 * 2**30, in_use=45 * 2**30)
    assert memory.available_bytes(gpu) == 15 * 2**30
    monkeypatch.setattr(memory.jax, "devices", lambda *a: [gpu])  # the default device is the first
    assert memory.available_bytes() == 15 * 2**30
    gpu.stats["bytes_in_use"] = 70 * 2**30  # more in use than the limit (stats read mid-change): nothing is free
    assert memory.available_bytes(gpu) == 0


def test_available_bytes_without_allocator_stats_is_the_hosts_free_ram(monkeypatch):
    class HostOnly:
        platform = "cpu"

        def memory_stats(self):
            return None  # what jax's CPU device reports

    page, pages = 4096, 3 * 2**18  # 3 GiB
    monkeypatch.setattr(memory.os, "sysconf", lambda name: {"SC_PAGE_SIZE": page, "SC_AVPHYS_PAGES": pages}[name])
    assert memory.available_bytes(HostOnly()) == 3 * 2**30
    assert memory.available_bytes(FakeAccelerator(limit=0, in_use=0)) == 3 * 2**30  # no limit reported: the host's


def test_the_speed_cap_is_the_largest_power_of_two_whose_step_state_fits_the_cache():
    lesson = Structure((64,), "relu", 32, "adam", "constant", False, False, "binary", 45, 1)
    wide = Structure((512, 512, 512), "relu", 256, "adam", "constant", False, False, "binary", 64, 1)
    per_member = memory.step_bytes(lesson)
    assert per_member == 4 * 3009 * (3 + 2 * 2)  # 3,009 parameters; adam keeps two moments
    cap = memory.fastest_members(lesson, 32 * 2**20)
    assert cap == 256 and cap * per_member <= 32 * 2**20 < 2 * cap * per_member
    assert memory.fastest_members(lesson, 2 * 2**20) == 16
    assert memory.fastest_members(wide, 32 * 2**20) == memory.FEWEST_FASTEST  # never below: vmap still pays
    assert memory.cache_bytes() > 0


def test_on_a_cpu_a_sweep_is_chunked_by_speed_unless_its_strategy_acts_inside_populations(binary_data, monkeypatch):
    monkeypatch.setattr(memory, "cache_bytes", lambda: 8 * memory.step_bytes(_structure(binary_data)))
    grid = sweeps.dry_run(
        binary_data, space={"learning_rate": space.loguniform(1e-4, 1e-1)}, strategy=sweeps.Grid(n=20)
    )
    if jax.default_backend() != "cpu":  # an accelerator: only memory limits a population there
        assert grid.plan.cache_bytes is None and [len(g.chunks) for g in grid.groups] == [1]
        return
    assert grid.plan.cache_bytes is not None
    assert [len(c) for g in grid.groups for c in g.chunks] == [7, 7, 6]  # at most 8 per chunk, as even as possible
    assert "train fastest together" in grid.describe()
    pbt = sweeps.dry_run(binary_data, space={"learning_rate": space.loguniform(1e-4, 1e-1)}, strategy=sweeps.PBT(20))
    assert pbt.plan.cache_bytes is None and [len(g.chunks) for g in pbt.groups] == [1]


def _structure(data):
    return Structure((64,), "relu", 32, "adam", "constant", False, False, "binary", data.n_features, 1)

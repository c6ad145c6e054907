"""Widths, depths and batch sizes in one compiled program (issue 23): a member of a fused population trains as it
would in its own, its padding stays zero, the planner fuses where its cost model says so (and never with
fuse=False), and fused sweeps go through halving, refill, PBT, kept models, a stop and a kill -9 with their
resume, lanes on and off."""

import copy
import dataclasses

import jax
import numpy as np
import pandas as pd
import pytest
from test_checkpoints import kill

import sweeps
from models.mlp import MLP, member_params
from sweeps import space
from sweeps.driver.populations import controls_for, train_chunk
from sweeps.engine import flat_params, fuse, holds, structure_of
from sweeps.engine.hparams import resolve
from sweeps.planning import fusion
from sweeps.planning.planner import Trial
from sweeps.strategies import Halving
from sweeps.strategies.base import EpochView

from helpers import Stop, crash_after_saves, synthetic

# (hidden, batch size) of the members: batch sizes 32, 64 and 96 (micro-batch 32); all: different widths, depths
# 1-3 and batch sizes
SHAPES = {
    "batch sizes": [((8,), 32), ((8,), 64), ((8,), 96)],
    "all": [((16,), 32), ((8, 4), 64), ((24,), 96), ((4, 4, 4), 32)],
}


@pytest.fixture(scope="module")
def data():
    return synthetic("binary", rows=400)


def trials_of(shapes, dropout=0.0):
    return tuple(
        Trial(
            i,
            i,
            0,
            resolve(
                {
                    "hidden": hidden,
                    "batch_size": batch,
                    "learning_rate": 3e-3 * (i + 1),
                    "epochs": 3 + i % 2,
                    "dropout": dropout,
                    "l2": 1e-3,
                    "optimizer": "adamw",
                    "schedule": "cosine",
                }
            ),
        )
        for i, (hidden, batch) in enumerate(shapes)
    )


def train_both(data, trials):
    """The trials trained together in their fused structure, and each alone in its own: (fused population and
    history, [(own population, own history)])."""
    own = [structure_of(t.hparams, data) for t in trials]
    fused = fuse(own)
    assert fused is not None and all(holds(fused, s) for s in own)
    controls = controls_for(data, None, 10.0)
    together = train_chunk(fused, trials, len(trials), data, 0, None, controls)
    alone = [train_chunk(s, (t,), 1, data, 0, None, controls) for s, t in zip(own, trials)]
    return fused, together, alone


@pytest.mark.parametrize("kind", ["all"])  # widths and depths with dropout: the test below
def test_a_fused_member_trains_as_it_does_in_its_own_population(data, kind):
    trials = trials_of(SHAPES[kind])
    fused, (pop, history), alone = train_both(data, trials)
    assert len(set(fused.hidden)) >= 1 and (fused.accumulate > 1) == (kind in ("batch sizes", "all"))
    own_params = (
        flat_params(pop.params, fused.network, np.asarray(pop.hparams["hidden"])) if fused.network.padded else None
    )
    for i, (own_pop, own_history) in enumerate(alone):
        for name in ("train_loss", "val_loss", "val_accuracy", "val_auc"):
            got = np.array([m[name][i] for m in history[: len(own_history)]])
            want = np.array([m[name][0] for m in own_history])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{kind}: member {i}, {name}")
        assert int(pop.step[i]) == int(own_pop.step[0]), "updates: one per minibatch of the member's own size"
        if own_params is not None:
            np.testing.assert_allclose(own_params[i], flat_params(own_pop.params)[0], rtol=1e-5, atol=1e-6)


def test_with_dropout_padded_widths_and_depths_stay_exact_and_accumulated_batches_do_not(data):
    """Dropout masks are drawn unit by unit (a wider layer's first units draw what the narrow one draws), so
    padding changes nothing; a minibatch accumulated from micro-batches draws its masks per micro-batch, so
    those members train on other masks: the same distribution, not the same numbers."""
    # widths and depths in one population: each member against its own population, every epoch's metrics
    trials = trials_of([((16,), 32), ((5,), 32), ((8, 8), 32), ((8, 8, 8), 32)], dropout=0.3)
    _, (_, history), alone = train_both(data, trials)
    for i, (_, own_history) in enumerate(alone):
        for name in ("train_loss", "val_loss"):
            got = np.array([m[name][i] for m in history[: len(own_history)]])
            want = [m[name][0] for m in own_history]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"member {i}, {name}")
    trials = trials_of(SHAPES["batch sizes"][:2], dropout=0.3)
    _, (_, history), alone = train_both(data, trials)
    assert history[-1]["val_loss"][1] != pytest.approx(alone[1][1][-1]["val_loss"][0], abs=1e-6)


def test_padded_parameters_optimizer_state_and_best_parameters_stay_exactly_zero(data):
    trials = trials_of(SHAPES["all"])
    fused, (pop, _), _ = train_both(data, trials)
    widths, layers = np.asarray(pop.hparams["hidden"]), len(fused.hidden)

    def own_block(member: int, layer: int) -> tuple[int, int]:
        """(outputs, inputs) of the member's own part of a layer (kernels stored (out, in)); (0, 0) past its depth."""
        depth = int(np.count_nonzero(widths[member]))
        sizes = [data.n_features, *widths[member][:depth]]
        if layer == layers:  # the head reads the member's last layer
            return data.n_outputs, sizes[depth]
        return (sizes[layer + 1], sizes[layer]) if layer < depth else (0, 0)

    checked = 0
    for name, tree in (("params", pop.params), ("best_params", pop.best_params), ("opt_state", pop.opt_state)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(tree)):
            keys = [str(getattr(p, "key", "")) for p in path]
            layer = next((int(k.split("_")[1]) for k in keys if k.startswith("Dense_")), None)
            if layer is None:
                continue  # the optimizer's step counts
            for member in range(len(trials)):
                rows, cols = own_block(member, layer)
                outside = np.ones(leaf.shape[1:], bool)
                outside[(slice(0, rows), slice(0, cols))[: leaf.ndim - 1]] = False
                assert np.all(np.asarray(leaf[member])[outside] == 0.0), f"{name} {keys} member {member}"
                checked += int(outside.sum())
    assert checked > 1000


def test_a_member_cut_out_of_a_padded_network_is_the_network_it_is_alone():
    x = jax.random.normal(jax.random.PRNGKey(0), (9, 5))
    key = jax.random.PRNGKey(3)
    alone = MLP(hidden=(6, 3), outputs=2)
    own = alone.init(key, x)["params"]
    padded = MLP(hidden=(8, 8, 8), outputs=2, min_depth=1)
    widths = np.array([6, 3, 0])
    params = padded.init(key, x, widths=widths)["params"]
    cut = member_params(jax.device_get(params), widths)
    jax.tree.map(np.testing.assert_array_equal, cut, jax.device_get(own))  # the same initial values
    np.testing.assert_allclose(
        padded.apply({"params": params}, x, widths=widths), alone.apply({"params": own}, x), rtol=1e-6, atol=1e-6
    )
    with pytest.raises(ValueError, match="min_depth takes each member's widths"):
        padded.apply({"params": params}, x)


def test_fuse_pads_to_the_widest_and_refuses_what_no_program_holds(data):
    base = structure_of(resolve({"hidden": (64, 32)}), data)
    f = fuse([base, dataclasses.replace(base, hidden=(16, 128, 8)), dataclasses.replace(base, batch_size=128)])
    # layer 0 as wide as its widest; from the shallowest member's last layer on, one width (a skipped layer passes on)
    assert (f.hidden, f.min_depth, f.batch_size, f.accumulate) == ((64, 128, 128), 2, 32, 4)
    assert holds(f, dataclasses.replace(base, hidden=(32, 100))) and not holds(
        f, dataclasses.replace(base, batch_size=48)
    )
    assert not holds(f, dataclasses.replace(base, hidden=(64,))), "shallower than any member fused"
    assert not holds(f, dataclasses.replace(base, hidden=(65, 8))) and not holds(
        f, dataclasses.replace(base, batch_size=256)
    )
    shallow = fuse([base, dataclasses.replace(base, hidden=(8,))])
    assert (shallow.hidden, shallow.min_depth) == ((64, 64), 1)
    assert fuse([base, dataclasses.replace(base, optimizer="sgd")]) is None
    assert fuse([base, dataclasses.replace(base, activation="tanh")]) is None
    assert fuse([base, dataclasses.replace(base, hidden=())]) is None  # no hidden layer to pass on


def test_the_cost_model_fuses_where_it_pays_and_fuse_false_never(data):
    base = structure_of(resolve({"hidden": (64,)}), data)
    cheap = [(dataclasses.replace(base, hidden=(w,)), [10] * 8) for w in (32, 48, 64)]
    assert len(fusion.groups(cheap, data.n_train, data.n_val)) == 1
    assert len(fusion.groups(cheap, data.n_train, data.n_val, enabled=False)) == 3
    # one huge member pads a thousand small ones to its width: dearer than a second compilation
    lopsided = [(dataclasses.replace(base, hidden=(4,)), [50] * 1000), (dataclasses.replace(base, hidden=(2048,)), [1])]
    assert len(fusion.groups(lopsided, 20_000, 5_000)) == 2


SPACE = {
    "learning_rate": space.loguniform(1e-3, 1e-2),
    "hidden": [(8,), (16, 8), (4, 4, 4)],
    "batch_size": [32, 64],
}
RUN_SPACE = {**SPACE, "hidden": [(8,), (16, 8)]}  # fused against one program per structure: 4 of them


def test_sweeps_run_fused_equals_unfused_and_keeps_models_of_their_own_widths(data, tmp_path):
    settings = dict(space=RUN_SPACE, strategy=sweeps.Grid(n=2), epochs=2, plots=False, keep_models=8)
    fused = sweeps.run(data, run_dir=tmp_path / "fused", **settings)
    apart = sweeps.run(data, run_dir=tmp_path / "apart", fuse=False, **settings)
    assert len(fused.config["compile_by_structure"]) == 1 and len(apart.config["compile_by_structure"]) == 4
    assert "hidden<=" not in fused.table.to_string(), "the table shows each trial's own widths, not the padding"
    pd.testing.assert_frame_equal(
        fused.table.drop(columns=["value"]),
        apart.table.drop(columns=["value"]),
        check_exact=False,
        rtol=1e-5,
        atol=1e-5,
    )
    for trial in fused.table.drop_duplicates("params_hidden")["number"]:  # one of each width and depth
        model = sweeps.load_model(tmp_path / "fused", trial=int(trial))
        other = sweeps.load_model(tmp_path / "apart", trial=int(trial))
        assert jax.tree.map(np.shape, model.params) == jax.tree.map(np.shape, other.params)
        rows = np.asarray(data.x_val[:20])
        np.testing.assert_allclose(model.predict_proba(rows), other.predict_proba(rows), rtol=1e-5, atol=1e-6)


def test_the_dry_run_shows_the_fused_group_and_what_padding_costs(data):
    text = sweeps.dry_run(data, space=SPACE, strategy=sweeps.Grid(n=2), epochs=3).describe()
    assert "12 trials in 1 structure groups: 1 compiled programs" in text
    assert "hidden<=[16, 16, 16] relu (padded: depth 1-3), batch 32 (x1-2 accumulated)" in text
    assert "fused: group 0 trains 6 structures in one program (" in text and "micro-batches of 32)" in text
    assert all(f"hidden {list(h)} batch {b}" in text for h in SPACE["hidden"] for b in SPACE["batch_size"])
    assert "the padding adds" in text and "% multiply-adds" in text
    apart = sweeps.dry_run(data, space=SPACE, strategy=sweeps.Grid(n=2), epochs=3, fuse=False).describe()
    assert "6 structure groups" in apart


def test_a_refill_starts_only_what_fits_the_population():
    strategy = Halving(n=2, min_epochs=1, eta=2, refill=True, samples=4, seed=0)
    strategy.use_epochs(2)
    strategy.ask({"hidden": space.choice([(4,), (8,), (99,)])})
    strategy._queue = [{"hidden": (99,)}, {"hidden": (4,)}]
    view = EpochView(
        epoch=1,
        numbers=np.array([0, 1]),
        epochs_done=np.array([1, 1]),
        active=np.array([False, True]),
        trained=np.array([True, True]),
        score=np.array([0.5, 0.4]),
        hparams={},
        objective="val_loss",
        fits=lambda config: config["hidden"] != (99,),
    )
    decisions = strategy.decide(view)
    assert decisions.refill == {0: {"hidden": (4,)}} and strategy._queue == [{"hidden": (99,)}]


def test_pbt_never_pads_widths_together_its_exploit_copies_whole_members(data):
    """PBT copies a member's weights onto another: across widths the copy would truncate the network it copies,
    so its groups keep widths and depths apart and fuse batch sizes only."""
    planned = sweeps.dry_run(data, space=SPACE, strategy=sweeps.PBT(population=12, seed=0), epochs=3)
    assert sorted(len({t.hparams["hidden"] for t in g.trials}) for g in planned.groups) == [1, 1, 1]
    assert all(g.structure.accumulate == 2 for g in planned.groups), "batch sizes 32 and 64 still share a program"
    halving = sweeps.dry_run(data, space=SPACE, strategy=sweeps.Halving(n=12, seed=0), epochs=3)
    assert len(halving.groups) == 1


# Fused sweeps through the strategies that edit a population: halving (prune, repack), refill (a freed slot takes
# a trial of another width), PBT (exploit copies a member of another width and batch size onto a slot)
FUSED_SWEEPS = {
    "halving": {"strategy": sweeps.Halving(n=6, min_epochs=1, eta=2, seed=0), "space": SPACE, "epochs": 3},
    "refill": {
        "strategy": sweeps.Halving(n=4, min_epochs=1, eta=2, refill=True, samples=8, seed=1),
        "space": SPACE,
        "epochs": 3,
    },
    "pbt": {
        "strategy": sweeps.PBT(population=4, interval=1, seed=0),
        "space": {"learning_rate": space.loguniform(1e-3, 1e-2)},
        "epochs": 3,
    },
}


@pytest.mark.parametrize(("name", "lanes", "resume_lanes"), [("halving", 2, 1), ("refill", 1, 2), ("pbt", 2, 1)])
def test_a_fused_sweep_stopped_and_resumed_gives_the_same_run(data, tmp_path, monkeypatch, name, lanes, resume_lanes):
    settings = {"checkpoint_every": 1, "plots": False, "keep_models": 2, **copy.deepcopy(FUSED_SWEEPS[name])}
    whole = sweeps.run(data, run_dir=tmp_path / "whole", **copy.deepcopy(settings))
    assert len(whole.config["compile_by_structure"]) == 1, "one compiled program for every shape"
    assert (whole.table["state"] != "failed").all()
    if name == "refill":
        assert len(whole.table) == 8 and whole.table["params_hidden"].nunique() > 1
        planned = sweeps.dry_run(data, **copy.deepcopy(FUSED_SWEEPS[name]))  # room for the queue, no trial twice
        assert [len(g.trials) for g in planned.groups] == [4] and len(planned.groups[0].fused) > 1
    monkeypatch.setenv("SWEEPS_LANES", str(lanes))
    undo = crash_after_saves(monkeypatch, 2)
    with pytest.raises(Stop):
        sweeps.run(data, run_dir=tmp_path / "run", **copy.deepcopy(settings))
    undo()
    monkeypatch.setenv("SWEEPS_LANES", str(resume_lanes))
    resumed = sweeps.run(data, run_dir=tmp_path / "run", resume=True, **copy.deepcopy(settings))
    pd.testing.assert_frame_equal(resumed.table, whole.table)
    pd.testing.assert_frame_equal(resumed.history, whole.history)
    model = sweeps.load_model(tmp_path / "run")
    best = whole.best()
    assert model.trial == int(best["number"])


# test_checkpoints' SIGKILL script trains these by name ("test_fused_shapes:halving") on synthetic("binary", rows=400)
KILLABLE = {"halving": {"checkpoint_every": 1, "plots": False, **FUSED_SWEEPS["halving"]}}


def test_a_fused_sweep_killed_with_sigkill_while_saving_resumes_to_the_same_run(tmp_path, monkeypatch):
    data = synthetic("binary", rows=400)
    whole = sweeps.run(data, **copy.deepcopy(KILLABLE["halving"]))
    run_dir = kill(tmp_path, "test_fused_shapes:halving", 2, 2, "during_write")
    monkeypatch.setenv("SWEEPS_LANES", "1")
    resumed = sweeps.run(data, run_dir=run_dir, resume=True, **copy.deepcopy(KILLABLE["halving"]))
    pd.testing.assert_frame_equal(resumed.table, whole.table)
    pd.testing.assert_frame_equal(resumed.history, whole.history)

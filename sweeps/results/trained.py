"""The trained models a user keeps: the best trials' best-epoch parameters, saved and loaded again.

During a sweep the scheduler holds them (`sweeps.driver.kept_models.KeptModels`); at the end they are
written into RUN_DIR/models/ with orbax, beside a JSON file that says how to apply them: the model's
structure and the preprocessing fitted on the training split. Nothing is pickled, so loading a run
folder someone else made cannot run code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
from flax import nnx

from models import MLP
from sweeps.data import Preprocessing
from sweeps.data.encoding import TransformReport
from sweeps.data.reading import read_csv
from sweeps.driver import run_folder
from sweeps.driver.checkpoints import close_orbax, quiet_abandoned_reads
from sweeps.driver.evidence import DamagedRunFolder, checksum, reason
from sweeps.driver.kept_models import KeptModels
from sweeps.engine import Network, Structure, class_path, model_record, network_of, param_shapes, structure_of
from sweeps.engine.metrics import METRICS, OwnMetrics, evaluate
from sweeps.results.ensemble import Ensemble
from sweeps.results.models_index import FORMAT, damaged_index, read_index

FOLDER = "models"
INDEX = "models.json"
ENSEMBLE_TOP = 5  # the ensemble a run scores at its end: the top 5 saved trials (fewer when fewer are saved)
# The engine's metrics as one compiled program per task and split shape: eagerly each operation compiles alone (on
# churn's validation split 3.8 s the first time, 0.7 s as one program); the task, the user's loss and metrics static
EVALUATE = jax.jit(evaluate, static_argnums=(0, 4, 5))


def _structure_json(structure: Structure) -> dict[str, Any]:
    sizes = {"n_features": structure.n_features, "n_outputs": structure.n_outputs, "task": structure.task}
    if structure.module is None:
        return {"hidden": list(structure.hidden), "activation": structure.activation, **sizes}
    return {**model_record(structure.module), "input_shape": list(structure.input_shape), **sizes}


def _network(info: Mapping[str, Any], module: Any = None) -> Network:
    """The network a saved trial was trained as: the built-in MLP from its widths, or the user's model (`module`,
    else rebuilt from its recorded class and arguments: `_rebuilt`)."""
    s = info["structure"]
    if "class" not in s:
        mlp = MLP(hidden=tuple(s["hidden"]), activation=s["activation"], outputs=s["n_outputs"])
        return Network(mlp, (s["n_features"],))
    return network_of(module if module is not None else _rebuilt(s), tuple(s["input_shape"]))


def _rebuilt(record: Mapping[str, Any]) -> Any:
    """A user's model rebuilt from models.json's record of it (`model_record`): its class, found only among the
    modules this process has already imported (a run folder never makes Python import anything: design item 11),
    called with the recorded arguments (for NNX: `functools.partial` of them; a Linen module's lists as tuples),
    and used only where it records the same again."""
    name, _, qualname = str(record["class"]).partition(":")
    ask = (
        f"pass the model: sweeps.load_model(run_dir, model=...) with {qualname.rpartition('.')[2]} and the "
        "arguments it was trained with"
    )
    owner = sys.modules.get(name)
    cls = functools.reduce(lambda obj, part: getattr(obj, part, None), qualname.split("."), owner)
    if owner is None:
        raise ModelNotImported(
            f"the saved model is {name}.{qualname}, which this process has not imported (a run folder never makes "
            f"sweeps import code): import {name} first, or {ask}",
            f"{name}:{qualname}",
        )
    if not (isinstance(cls, type) and issubclass(cls, nn.Module | nnx.Module)):
        raise ValueError(f"the saved model is {name}.{qualname}, but module {name} has no such Flax module; {ask}")
    nnx_api = record.get("api") == "nnx"
    if nnx_api and record.get("positional") is None:
        raise ValueError(f"{name}.{qualname} was built by a function no record can rebuild; {ask}")
    try:
        if nnx_api:
            module = (
                functools.partial(cls, *record["positional"], **record["args"])
                if record["args"] or record["positional"]
                else cls
            )
        else:
            module = cls(**{k: _tuples(v) for k, v in record["args"].items()})
    except Exception as e:  # noqa: BLE001 - the user's constructor may raise anything
        raise ValueError(f"{name}.{qualname}(**{record['args']}) failed ({e}); {ask}") from e
    again = model_record(module)
    if again != {k: record.get(k) for k in again}:
        raise ValueError(f"{name}.{qualname} cannot be rebuilt exactly from its recorded arguments; {ask}")
    return module


class ModelNotImported(ValueError):
    """A saved model of the user's own class, whose module this process has not imported (`class_path`:
    `package.module:Class`); sweeps never imports it for a run folder's sake."""

    def __init__(self, message: str, class_path: str):
        super().__init__(message)
        self.class_path = class_path


def _tuples(value: Any) -> Any:
    """A recorded attribute as the module had it: JSON's lists back into tuples (a module is hashed)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _tree(structure: Structure, flat: np.ndarray):
    """A member's flat parameter vector (`flat_params`) as the flax parameter tree (what the module's apply takes)."""
    shapes, treedef = jax.tree.flatten(param_shapes(structure))
    ends = np.cumsum([math.prod(leaf.shape) for leaf in shapes])[:-1]
    parts = np.split(np.asarray(flat), ends)
    return treedef.unflatten([part.reshape(leaf.shape) for part, leaf in zip(parts, shapes)])


def save_models(
    folder: Path, kept: KeptModels, trials: list, data, result, module: nn.Module | None = None
) -> list[dict[str, Any]]:
    """Writes the kept trials' best-epoch parameters (orbax) and how to apply them (JSON) into `folder`;
    `module`: the user's model the sweep trained (None: the built-in MLP).

    Returns one entry per saved trial, best first (what config.json records under "models").
    """
    by_number = {t.number: t for t in trials}
    rows = result.table.set_index("number")
    entries, trees = [], {}
    for rank, number in enumerate(kept.ranked()):
        trial = by_number[number]
        structure = structure_of(trial.hparams, data, module)
        trees[f"trial_{number}"] = _tree(structure, kept.params(number))
        row = rows.loc[number]
        entries.append(
            {
                "trial": number,
                "rank": rank,
                "hparams": {k: list(v) if isinstance(v, tuple) else v for k, v in trial.hparams.items()},
                "structure": _structure_json(structure),
                "best_epoch": int(row["best_epoch"]),
                "value": float(row["value"]),
                "metrics": {c: float(row[c]) for c in rows.columns if c.startswith("best_") and c != "best_epoch"},
                "checksum": checksum(trees[f"trial_{number}"]),  # load_model compares it
            }
        )
    if not entries:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    try:
        for name, tree in trees.items():  # one orbax folder per trial: a model loads alone
            checkpointer.save((folder / name).absolute(), tree, force=True)
    finally:
        close_orbax(checkpointer)  # waits for the saves; closed on an error too (else the command hangs at exit)
    fit = getattr(data, "preprocessing_fit", None)
    index = {
        "format": FORMAT,
        "objective": result.objective,
        "direction": result.direction,
        **({"metrics": result.config["metrics"]} if "metrics" in result.config else {}),  # the user's, if any
        "task": data.task,
        "target": data.target,
        "class_names": list(data.class_names),
        "y_mean": float(data.y_mean),
        "y_std": float(data.y_std),
        "preprocessing": fit.to_json() if fit is not None else None,
        "trials": entries,
    }
    if jax.process_index() == 0:  # several processes: orbax wrote the arrays from process 0, and so is the index
        run_folder.write_json(folder / INDEX, index)
    return [{"trial": e["trial"], "rank": e["rank"], "value": e["value"]} for e in entries]


def test_metrics(
    folder: Path, data, module: nn.Module | None = None, loss: Callable | None = None, own: OwnMetrics = ()
) -> dict[str, float] | None:
    """The best saved model's metrics on the test split, computed once at the end; None without a test split.
    `loss` and `own`: the user's loss (`test_loss`) and metrics (`test_<name>`), as the sweep validated with.

    Never used to pick anything: the best trial is chosen on validation before this runs.
    """
    if data.x_test.shape[0] == 0 or not (folder / INDEX).is_file():
        return None
    model = load_model(folder.parent, model=module)
    return {"trial": model.trial, **scores(model, "test", data, loss, own)}


def ensemble_metrics(
    folder: Path, data, module: nn.Module | None = None, loss: Callable | None = None, own: OwnMetrics = ()
) -> dict[str, Any] | None:
    """The top saved trials as an ensemble (`load_model(..., top=k)`, k = min(`ENSEMBLE_TOP`, saved)), scored at
    the end of a run beside the best saved model; None when fewer than 2 models are saved.

    Returns config.json's "ensemble" entry: `trials` (best first), the ensemble's `val_<metric>` and, with a test
    split, `test_<metric>` (the task's metrics, then the user's `loss` and `own`, as `test_metrics`), and
    `best_trial`: the best saved model's number and `val_<metric>`, computed the same way (like for like). The
    validation split chose the trials, so its numbers flatter the ensemble; the test split's do not.
    """
    if not (folder / INDEX).is_file():
        return None
    saved = len(read_index(folder / INDEX)["trials"])
    if saved < 2:
        return None
    ensemble = load_model(folder.parent, top=min(ENSEMBLE_TOP, saved), model=module)
    record = {"trials": ensemble.trials, **scores(ensemble, "val", data, loss, own)}
    if data.x_test.shape[0] > 0:
        record.update(scores(ensemble, "test", data, loss, own))
    best = ensemble.members[0]
    record["best_trial"] = {"trial": best.trial, **scores(best, "val", data, loss, own)}
    return record


def scores(
    model: TrainedModel | Ensemble, split: str, data, loss: Callable | None = None, own: OwnMetrics = ()
) -> dict[str, float]:
    """A model's metrics on the data's `split` ("val" or "test"), named `<split>_<metric>`: the task's
    (`evaluate`, compiled), the user's `loss` in place of the task's, and the user's metrics `own`."""
    x, y = {"val": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}[split]
    outputs = model.outputs(np.asarray(x))
    values = EVALUATE(data.task, jnp.asarray(outputs), jnp.asarray(y), jnp.float32(data.y_std), loss, own)
    order = [*METRICS[data.task], *(name for name, *_ in own)]  # evaluate's order (a compiled dict comes sorted)
    return {f"{split}_{name}": float(values[name]) for name in order}


@dataclasses.dataclass
class TrainedModel:
    """One saved trial's model at its best epoch, with the preprocessing fitted on the training split.

    Attributes:
      trial: the trial number.
      hparams: its hyperparameters.
      info: its entry in models.json (best epoch, objective value, metrics).
      params: the flax parameter tree (the module's own layout).
      network: the network it applies them with (the built-in MLP, or the user's module).
      preprocessing: the fitted `sweeps.data.Preprocessing` (None for a `Dataset.from_arrays` sweep:
        then `predict` takes feature arrays as the sweep had them).
    """

    trial: int
    hparams: dict[str, Any]
    info: dict[str, Any]
    params: Any
    network: Network
    preprocessing: Preprocessing | None
    task: str
    class_names: tuple[str, ...]
    y_mean: float
    y_std: float
    last_report: TransformReport | None = None

    def __repr__(self) -> str:
        """One short line: the trial, the network, the task and the sizes (not the weights or categories)."""
        structure = self.info["structure"]
        if self.network.builtin:
            network = f"MLP(hidden={list(structure['hidden'])}, activation={structure['activation']!r})"
            inputs = f"features={structure['n_features']}"
        else:
            network, inputs = self.network.label(), f"input_shape={tuple(structure['input_shape'])}"
        classes = "" if self.task == "regression" else f", classes={len(self.class_names)}"
        count = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(self.params))
        return (
            f"TrainedModel(trial={self.trial}, {network}, task={self.task!r}, {inputs}{classes}, parameters={count:,})"
        )

    def features(self, rows) -> np.ndarray:
        """(rows, features) float32 from a DataFrame, a CSV path, or an array already preprocessed: one row
        as (features,), or rows as (rows, features)."""
        if isinstance(rows, np.ndarray):
            return self._checked_array(rows)
        if isinstance(rows, str | Path):
            rows = read_csv(rows, str(rows))
        if not isinstance(rows, pd.DataFrame):
            raise TypeError(
                f"predict takes a pandas DataFrame, a CSV path or a feature array, not {type(rows).__name__}"
            )
        if self.preprocessing is None:
            raise ValueError(
                "this run was trained on arrays (Dataset.from_arrays), so it keeps no preprocessing: "
                "pass a feature array shaped like the sweep's x arrays"
            )
        x, self.last_report = self.preprocessing.transform_with_report(rows)
        return x

    def _checked_array(self, rows: np.ndarray) -> np.ndarray:
        """An array of model inputs as (rows, features) float32, its width checked against the model."""
        shape = self.network.input_shape
        if len(shape) > 1:  # a user's model of images or sequences: one row (*shape), or rows (rows, *shape)
            if rows.shape not in (shape,) and rows.shape[1:] != shape:
                raise ValueError(
                    f"this model takes rows of shape {shape}: pass one row {shape} or rows (rows, *{shape}), but got "
                    f"an array of shape {rows.shape}"
                )
            return rows.reshape(-1, *shape).astype(np.float32)
        expected = self.info["structure"]["n_features"]
        what = f"this model takes {expected} features per row" + (
            " (the columns after preprocessing)" if self.preprocessing is not None else ""
        )
        raw = (
            "; pass a DataFrame or a CSV path with the original columns to have them preprocessed"
            if self.preprocessing is not None
            else ""
        )
        if rows.ndim not in (1, 2):
            raise ValueError(
                f"{what}: pass one row (features,) or rows (rows, features), but got an array of shape {rows.shape}"
            )
        if rows.shape[-1] != expected:
            given = f"{rows.shape[0]} values" if rows.ndim == 1 else f"{rows.shape[1]} columns"
            raise ValueError(f"{what}, but the array has {given} (shape {rows.shape}){raw}")
        return rows.reshape(-1, expected).astype(np.float32)

    def outputs(self, rows) -> np.ndarray:
        """The model's raw outputs: logits (rows, outputs), or standardized regression values."""
        x = self.features(rows)
        hp = {k: jnp.float32(v) for k, v in self.hparams.items() if k in self.network.call_hparams}
        params = self.network.stored(jax.tree.map(jnp.asarray, self.params))
        return np.asarray(self.network.apply(params, jnp.asarray(x), hp, train=False))

    def predict_proba(self, rows) -> np.ndarray:
        """Class probabilities (rows, classes), columns in `class_names` order (classification only)."""
        if self.task == "regression":
            raise ValueError("predict_proba is for classification; this model predicts a number: use predict")
        out = self.outputs(rows)
        if self.task == "binary":
            p = np.asarray(jax.nn.sigmoid(out[:, 0]), np.float64)
            return np.stack([1.0 - p, p], axis=1)
        return np.asarray(jax.nn.softmax(out, axis=-1), np.float64)

    def predict(self, rows) -> np.ndarray:
        """Labels (classification, as the target's own values) or values in the target's units (regression)."""
        if self.task == "regression":
            return self.outputs(rows)[:, 0].astype(np.float64) * self.y_std + self.y_mean
        index = self.predict_proba(rows).argmax(axis=1)
        if self.preprocessing is not None:
            return self.preprocessing.decode_labels(index)
        return np.asarray(self.class_names, dtype=object)[index]


def load_model(
    run_dir: str | Path, trial: int | None = None, model: Any = None, top: int | None = None
) -> TrainedModel | Ensemble:
    """A saved model of a run folder: the best trial's (or the named trial's), at its best epoch; or with `top=k`,
    the k best saved trials as one `Ensemble` that averages their predictions.

    The arrays are compared with the checksum written with them: a model file changed on disk is
    refused, never used. A sweep of your own model recorded its class (`package.module:Class`) and
    attributes: it is rebuilt from them when this process has imported that module (a run folder never
    makes sweeps import code), else pass `model=` (the module with the attributes it was trained with).

    Args:
      run_dir: a folder written by `sweeps run` / `sweeps.run(..., run_dir=...)`.
      trial: a trial number among the saved ones (`keep_models` best), as an int or its digits ("10");
        None for the best.
      model: your own Flax model as `sweeps.run` took it (a Linen module, or what builds an NNX module), for a
        sweep that trained one (None: rebuilt from the record, as above); with `top`, every member's.
      top: None for one model; k (an int >= 1, or its digits) for the ensemble of the k best saved trials, ranked
        as models.json lists them (`Ensemble`: the mean of their probabilities, or of their values for
        regression); `top=1` predicts as the best model does. Not with `trial`.

    Raises:
      ValueError: no saved models there, the trial is not among them, `top` exceeds the saved trials, or both
        `trial` and `top` are given; `DamagedRunFolder` (a ValueError) when models.json or the trial's arrays
        are damaged: it names the file and the saved trials that still load.
      TypeError: `trial` is not a trial number, or `top` not a count.

    Examples:
      >>> model = sweeps.load_model("runs/churn_lr")  # doctest: +SKIP
      >>> model.predict("data/telco_customer_churn.csv")[:3]  # doctest: +SKIP
      array(['No', 'No', 'Yes'], dtype=object)
      >>> sweeps.load_model("runs/churn_lr", top=5)  # doctest: +SKIP
      Ensemble(top=5, trials=[6, 7, 5, 4, 9], task='binary', classes=2)
    """
    trial, top = _trial_number(trial), _top_count(top)
    if trial is not None and top is not None:
        raise ValueError(
            f"pass trial= (one saved model) or top= (an ensemble of the best saved ones), not both: got trial={trial}, "
            f"top={top}"
        )
    folder = Path(run_dir) / FOLDER
    if not (folder / INDEX).is_file():
        raise ValueError(
            f"{run_dir} has no saved models ({FOLDER}/{INDEX} is missing): pass a run folder that finished with "
            f"keep_models >= 1 (the default keeps 5)"
        )
    index = read_index(folder / INDEX)
    saved = {e["trial"]: e for e in index["trials"]}
    if top is not None:
        if top > len(saved):
            raise ValueError(
                f"top={top}, but {folder} holds {len(saved)} saved trial{'s' * (len(saved) != 1)} (the best by "
                f"{index['objective']}: {list(saved)}): pass top <= {len(saved)}, or run the sweep with a larger "
                "keep_models (it keeps that many)"
            )
        ranked = [e["trial"] for e in index["trials"]][:top]
        return Ensemble(tuple(load_model(run_dir, trial=number, model=model) for number in ranked))
    if trial is None:
        trial = index["trials"][0]["trial"]
    if trial not in saved:
        raise ValueError(
            f"trial {trial} was not saved in {folder}: it holds trials {sorted(saved)} (the best by "
            f"{index['objective']}); raise keep_models to keep more"
        )
    info = saved[trial]
    network = _network(info, model)
    if model is not None and not network.builtin:
        recorded = info["structure"]["class"]
        try:
            given = model_record(model)["class"]
        except Exception as e:  # noqa: BLE001 - building the user's model may raise anything
            raise ValueError(
                f"model={model!r:.80} cannot build the model trial {trial} was trained as ({recorded}): "
                f"{type(e).__name__}: {e}; pass it as sweeps.run took it (for NNX, functools.partial(Class, "
                "<its arguments but rngs>))"
            ) from e
        if given != recorded:
            raise ValueError(
                f"model={class_path(model)}(...) is not the model trial {trial} was trained as ({recorded}): pass "
                "that class's module"
            )
    try:
        restored = _params(folder, info, network)
    except DamagedRunFolder as e:
        still = [n for n in sorted(saved) if n != trial and _loads(folder, saved[n], network)]
        way = (
            f"trials {still} still load (sweeps.load_model(run_dir, trial={still[0]}), or `sweeps predict "
            f"{run_dir} ROWS.csv --trial {still[0]}`)"
            if still
            else "no other saved trial loads either"
        )
        raise DamagedRunFolder(f"{e}; {way}; the table and history are not affected") from e
    fit = index["preprocessing"]
    try:
        preprocessing = Preprocessing.from_json(fit) if fit is not None else None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise damaged_index(folder / INDEX, f"its preprocessing entry cannot be read ({e})") from e
    return TrainedModel(
        trial=trial,
        hparams=info["hparams"],
        info=info,
        params=restored,
        network=network,
        preprocessing=preprocessing,
        task=index["task"],
        class_names=tuple(index["class_names"]),
        y_mean=index["y_mean"],
        y_std=index["y_std"],
    )


def _trial_number(trial: Any) -> int | None:
    """`trial` as load_model takes it: None, an int, or an int's digits ("10", as a command line gives it)."""
    if isinstance(trial, str) and trial.strip().isdigit():
        return int(trial)
    if trial is None or (isinstance(trial, int | np.integer) and not isinstance(trial, bool)):
        return None if trial is None else int(trial)
    raise TypeError(f"trial must be a saved trial's number (an int, e.g. trial=3) or None for the best, not {trial!r}")


def _top_count(top: Any) -> int | None:
    """`top` as load_model takes it: None, an int >= 1, or its digits ("5", as a command line gives it)."""
    if isinstance(top, str) and top.strip().isdigit():
        top = int(top)
    if top is None:
        return None
    if isinstance(top, bool) or not isinstance(top, int | np.integer):
        raise TypeError(f"top must be how many of the best saved trials to ensemble (an int, e.g. top=5), not {top!r}")
    if top < 1:
        raise ValueError(f"top must be >= 1 (the number of best saved trials to ensemble), but got top={top}")
    return int(top)


def _params(folder: Path, info: Mapping[str, Any], network: Network) -> Any:
    """A saved trial's flax parameter tree (numpy), checked against the checksum written with it.

    Raises:
      DamagedRunFolder: the arrays cannot be read, or they do not match their checksum.
    """
    path = folder / f"trial_{info['trial']}"
    shapes = network.param_shapes()
    quiet_abandoned_reads()
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(path.absolute(), shapes)
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many kinds for a damaged file
        raise DamagedRunFolder(
            f"the saved model of trial {info['trial']} ({path}) is damaged and cannot be read ({reason(e)})"
        ) from e
    restored = jax.tree.map(np.asarray, restored)
    written = info.get("checksum")  # absent in run folders written before checksums
    if written is not None and checksum(restored) != written:
        raise DamagedRunFolder(
            f"the saved model of trial {info['trial']} ({path}) is damaged: its arrays do not match the checksum "
            f"written with them ({checksum(restored)}, not {written}), so they changed on disk since"
        )
    return restored


def _loads(folder: Path, info: Mapping[str, Any], network: Network) -> bool:
    try:
        _params(folder, info, network)
    except DamagedRunFolder:
        return False
    return True

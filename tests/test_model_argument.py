"""The model argument (issue 20, item 2): only the built-in MLP trains; nothing else is silently replaced by it."""

import flax.linen as nn
import pytest

import sweeps
from models import MLP


class Exploding(MLP):
    """A user's own network: never called by the engine, which rebuilds `MLP(hidden, activation)`."""

    def __call__(self, x, dropout_rate=0.0, deterministic=True):
        raise RuntimeError("Exploding.__call__ ran")


REFUSED = [
    (Exploding(hidden=(8,)), r"test_model_argument\.Exploding\(\.\.\.\) is a subclass of models\.MLP"),
    (nn.Dense(4), r"flax\.linen\.linear\.Dense\(\.\.\.\) is not the built-in models\.MLP"),
    (MLP(hidden=(8,), outputs=3), r"outputs=3\): outputs is set from the task"),
    (MLP(hidden=(8,), name="mine"), r"name='mine'\): name is not used"),
]
CALLS = {
    "plan": lambda data, model: sweeps.dry_run(data, model=model, space={"learning_rate": [1e-3]}, epochs=1),
    "run": lambda data, model: sweeps.run(data, model=model, space={"learning_rate": [1e-3]}, epochs=1),
    "lr_find": lambda data, model: sweeps.lr_find(data, model=model, points=4, min_lr=1e-3, max_lr=1e-1),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize(("model", "message"), REFUSED, ids=["subclass", "other-module", "outputs", "name"])
def test_a_model_that_is_not_the_built_in_mlp_is_refused_before_training(binary_data, call, model, message):
    with pytest.raises(ValueError, match=message) as refused:
        CALLS[call](binary_data, model)
    assert "pass model=MLP(hidden=..., activation=...)" in str(refused.value)
    assert "your own modules are not supported yet" in str(refused.value)


def test_the_built_in_mlp_with_its_own_fields_is_accepted(binary_data):
    plan = sweeps.dry_run(binary_data, model=MLP(hidden=(8, 4), activation="tanh"), space={"learning_rate": [1e-3]})
    assert plan.groups[0].structure.hidden == (8, 4) and plan.groups[0].structure.activation == "tanh"

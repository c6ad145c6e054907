"""The learning rate applied at step t equals optax's own schedule built with the member's values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweeps.engine.schedules import learning_rate_at

from helpers import optax_schedule

STEPS_PER_EPOCH = 7
# (learning_rate, warmup_fraction, decay_rate, final_lr_fraction, epochs): one row per member
MEMBERS = [(1e-2, 0.1, 0.5, 0.0, 5), (3e-3, 0.3, 0.9, 0.1, 3), (0.1, 0.0, 0.2, 0.5, 8)]


@pytest.mark.parametrize("name", ["constant", "cosine", "warmup_cosine", "exponential", "onecycle"])
def test_traced_schedule_matches_optax(name):
    columns = np.array(MEMBERS, np.float32).T
    hp = {
        "learning_rate": jnp.asarray(columns[0]),
        "warmup_fraction": jnp.asarray(columns[1]),
        "decay_rate": jnp.asarray(columns[2]),
        "final_lr_fraction": jnp.asarray(columns[3]),
    }
    epochs = jnp.asarray([m[4] for m in MEMBERS], jnp.int32)
    steps = jnp.arange(0, 9 * STEPS_PER_EPOCH)

    @jax.jit
    def rates(hp, epochs):  # (members, steps), one compiled program for all members
        def per_member(h, e):
            return jax.vmap(lambda t: learning_rate_at(name, t, h, STEPS_PER_EPOCH, e * STEPS_PER_EPOCH))(steps)

        return jax.vmap(per_member)(hp, epochs)

    ours = np.asarray(rates(hp, epochs))
    for i, member in enumerate(MEMBERS):
        reference = np.array([optax_schedule(name, *member, STEPS_PER_EPOCH)(int(t)) for t in steps])
        np.testing.assert_allclose(
            ours[i], reference, rtol=2e-5, atol=1e-6 * member[0], err_msg=f"{name} member {member}"
        )

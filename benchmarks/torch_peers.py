"""The strongest PyTorch peer of the engine: a `torch.func` ensemble of N copies of one MLP.

`torch.func.stack_module_state` stacks the N members' parameters (members, ...);
`torch.func.functional_call` inside `torch.func.vmap` runs every member's forward
on one shared minibatch; the gradients come from one backward over the summed
member losses (`grad="backward"`) or from `vmap(grad(member_loss))`
(`grad="vmap-grad"`); a vectorized Adam (optax's defaults, each member its own
learning rate) updates the stacked tensors in place. Every epoch ends with every
member's validation loss and accuracy, as the engine's does.

Imported by `throughput.py` (`--mode torch-vmap`, `--end-to-end`); never by the library.

Examples:
  >>> import numpy as np
  >>> x, y = np.ones((10, 3), np.float32), np.ones(10, np.float32)
  >>> record = train_ensemble(x, y, x, y, widths=[3, 4, 1], batch_size=4, learning_rates=[1e-3, 1e-2], epochs=2)
  >>> len(record["epoch_times"]), record["val_loss"].shape
  (2, (2,))
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

B1, B2, EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults (eps outside the square root, eps_root 0)
GRADS = ("backward", "vmap-grad")


def mlp(widths: list[int]) -> torch.nn.Sequential:
    """Linear + ReLU for each hidden width, then a linear output: widths [in, *hidden, out]."""
    layers: list[torch.nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(widths[-2], widths[-1]))


class Ensemble:
    """N copies of one MLP as stacked parameters (members, ...), each member with its own Adam learning rate.

    Every member starts from the same weights (torch's default initialisation under `seed`), as the
    engine's members do with `init="shared"`: members differ only by their learning rates.
    """

    def __init__(self, widths: list[int], learning_rates, seed: int = 0, grad: str = "backward"):
        if grad not in GRADS:
            raise ValueError(f"grad must be one of {GRADS}, but got {grad!r}")
        torch.manual_seed(seed)
        model = mlp(widths)
        members = len(learning_rates)
        self.params, _ = torch.func.stack_module_state([model] * members)  # name -> (members, ...)
        for p in self.params.values():
            p.requires_grad_(grad == "backward")
        self.skeleton = model.to("meta")  # the structure only; functional_call supplies the weights
        lrs = torch.tensor(np.asarray(learning_rates), dtype=torch.float32)
        self.lr = {name: lrs.view(members, *[1] * (p.dim() - 1)) for name, p in self.params.items()}
        self.m = {name: torch.zeros_like(p) for name, p in self.params.items()}
        self.v = {name: torch.zeros_like(p) for name, p in self.params.items()}
        self.count = 0
        self.step = self._step_backward if grad == "backward" else self._step_vmap_grad

    def member_logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One member's logits: x (rows, features) -> (rows,)."""
        return torch.func.functional_call(self.skeleton, params, (x,)).squeeze(-1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits on shared rows: x (rows, features) -> (members, rows)."""
        return torch.func.vmap(self.member_logits, in_dims=(0, None))(self.params, x)

    def _step_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = member_losses(self.logits(x), y)  # (members,)
        grads = torch.autograd.grad(losses.sum(), list(self.params.values()))  # members are independent
        self.adam(dict(zip(self.params, grads)))
        return losses.detach()

    def _step_vmap_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def member_loss(params, x, y):
            loss = F.binary_cross_entropy_with_logits(self.member_logits(params, x), y)
            return loss, loss

        grad = torch.func.grad(member_loss, has_aux=True)
        grads, losses = torch.func.vmap(grad, in_dims=(0, None, None))(self.params, x, y)
        self.adam(grads)
        return losses

    @torch.no_grad()
    def adam(self, grads: dict[str, torch.Tensor]) -> None:
        """optax.adam in place on the stacked tensors: p -= lr * m_hat / (sqrt(v_hat) + eps), lr per member."""
        self.count += 1
        correction1, correction2 = 1 - B1**self.count, 1 - B2**self.count
        for name, p in self.params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            m.mul_(B1).add_(g, alpha=1 - B1)
            v.mul_(B2).addcmul_(g, g, value=1 - B2)
            denominator = (v / correction2).sqrt_().add_(EPS)
            p.addcdiv_(m * (self.lr[name] / correction1), denominator, value=-1)


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of each member: logits (members, rows), y (rows,) -> (members,)."""
    return F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none").mean(-1)


def train_epoch(ensemble: Ensemble, x, y, x_val, y_val, batch_size: int, generator: torch.Generator):
    """One epoch of shared shuffled minibatches, then validation.

    Returns:
      (train loss, val loss, val accuracy), each (members,).
    """
    order = torch.randperm(x.shape[0], generator=generator)
    loss_sum, steps = 0.0, 0
    for start in range(0, order.shape[0], batch_size):
        rows = order[start : start + batch_size]
        loss_sum = loss_sum + ensemble.step(x[rows], y[rows])
        steps += 1
    with torch.no_grad():
        logits = ensemble.logits(x_val)
        accuracy = ((logits > 0).float() == y_val).float().mean(-1)
        return loss_sum / steps, member_losses(logits, y_val), accuracy


def train_ensemble(
    x_train, y_train, x_val, y_val, widths, batch_size: int, learning_rates, epochs: int, seed: int = 0, grad="backward"
) -> dict[str, Any]:
    """Builds the ensemble and trains it `epochs` epochs, validating after each; times every part.

    Args:
      x_train, y_train, x_val, y_val: numpy float32 arrays, (rows, features) and (rows,).
      widths: [features, *hidden, 1]; learning_rates: one per member; grad: one of GRADS.

    Returns:
      init_s (tensors and the stacked ensemble built), epoch_times (one per epoch), total_s
      (everything, end to end), val_loss (members,) numpy of the last epoch.
    """
    start = time.perf_counter()
    x, y, xv, yv = (torch.tensor(np.asarray(a)) for a in (x_train, y_train, x_val, y_val))
    ensemble = Ensemble(widths, learning_rates, seed, grad)
    generator = torch.Generator().manual_seed(seed)
    init_s = time.perf_counter() - start
    epoch_times, history = [], []
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        history.append(train_epoch(ensemble, x, y, xv, yv, batch_size, generator))
        epoch_times.append(time.perf_counter() - epoch_start)
    return {
        "init_s": init_s,
        "epoch_times": epoch_times,
        "total_s": time.perf_counter() - start,
        "val_loss": history[-1][1].numpy(),
    }


def seconds_per_steps(x, y, widths, batch_size: int, learning_rates, grad: str, steps: int = 20) -> float:
    """Seconds for `steps` minibatch steps of a fresh ensemble, after as many untimed ones."""
    ensemble = Ensemble(widths, learning_rates, grad=grad)
    x, y = torch.tensor(np.asarray(x[: steps * batch_size])), torch.tensor(np.asarray(y[: steps * batch_size]))
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    for xb, yb in batches:
        ensemble.step(xb, yb)
    start = time.perf_counter()
    for xb, yb in batches:
        ensemble.step(xb, yb)
    return time.perf_counter() - start

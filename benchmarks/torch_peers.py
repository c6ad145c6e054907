"""The strongest PyTorch peer of the engine: a `torch.func` ensemble of N copies of one model.

The model is an MLP of given widths (`mlp`: the lesson and wide workloads), or any torch
module a factory builds (`cnn`: models.cnn.CNN's twin, the digits-cnn workload).
`torch.func.stack_module_state` stacks the N members' parameters (members, ...);
`torch.func.functional_call` inside `torch.func.vmap` runs every member's forward
on one shared minibatch; the gradients come from one backward over the summed
member losses (`grad="backward"`) or from `vmap(grad(member_loss))`
(`grad="vmap-grad"`); a vectorized Adam (optax's defaults, each member its own
learning rate) updates the stacked tensors in place. Every epoch ends with every
member's validation loss and accuracy, as the engine's does. The loss is the
task's, as the engine's (`models/losses.py`): sigmoid cross-entropy on one logit
("binary"), softmax cross-entropy on K logits ("multiclass").

Imported by `throughput.py` (`--mode torch-vmap`, `--end-to-end`); never by the library.

Examples:
  >>> import numpy as np
  >>> x, y = np.ones((10, 3), np.float32), np.ones(10, np.float32)
  >>> record = train_ensemble(x, y, x, y, model=[3, 4, 1], batch_size=4, learning_rates=[1e-3, 1e-2], epochs=2)
  >>> len(record["epoch_times"]), record["val_loss"].shape
  (2, (2,))

  Images as the engine holds them, (rows, H, W, C), for a CNN (moved to torch's (rows, C, H, W) once):

  >>> images, labels = np.zeros((10, 8, 8, 1), np.float32), np.arange(10) % 3
  >>> record = train_ensemble(images, labels, images, labels, model=lambda: cnn((8, 8, 1), (4, 8), 16, 3),
  ...                         batch_size=4, learning_rates=[1e-3, 1e-2, 1e-1], epochs=1, task="multiclass")
  >>> record["val_loss"].shape
  (3,)

  A member of the ensemble trains as the same model alone with `torch.optim.Adam` does (`difference_from_alone`):

  >>> rng = np.random.default_rng(0)
  >>> x, y = rng.random((96, 8, 8, 1), np.float32), rng.integers(0, 10, 96)
  >>> rates = [1e-4, 1e-3, 1e-2]
  >>> for grad in GRADS:
  ...     worst = difference_from_alone(lambda: cnn((8, 8, 1)), x, y, rates, 16, 6, "multiclass", grad)
  ...     print(grad, worst < 1e-6)
  backward True
  vmap-grad True
  >>> x, y = rng.normal(size=(96, 45)).astype(np.float32), (rng.random(96) > 0.5).astype(np.float32)
  >>> difference_from_alone([45, 64, 1], x, y, rates, 32, 3) < 1e-6
  True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

B1, B2, EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults (eps outside the square root, eps_root 0)
GRADS = ("backward", "vmap-grad")
TASKS = ("binary", "multiclass")

# What the ensemble trains: an MLP's widths [in, *hidden, out], or a function that builds a torch module.
Model = Sequence[int] | Callable[[], torch.nn.Module]


def mlp(widths: list[int]) -> torch.nn.Sequential:
    """Linear + ReLU for each hidden width, then a linear output: widths [in, *hidden, out]."""
    layers: list[torch.nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(widths[-2], widths[-1]))


def cnn(
    input_shape: Sequence[int], channels: Sequence[int] = (16, 32), dense: int = 64, classes: int = 10
) -> torch.nn.Sequential:
    """models.cnn.CNN in torch: 3x3 convolutions (padding 1: Flax's 'SAME') with ReLU, one 2x2 max pool, a dense
    layer with ReLU and a linear head, (rows, C, H, W) -> (rows, classes).

    `input_shape` is one image as the engine holds it, (H, W, C); the module takes torch's layout, channels first
    (`tensors` moves them once). Flattening (C, H, W) instead of Flax's (H, W, C) orders the dense layer's inputs
    differently: the same functions, the same work.
    """
    height, width, depth = input_shape
    layers: list[torch.nn.Module] = []
    for out in channels:
        layers += [torch.nn.Conv2d(depth, out, 3, padding=1), torch.nn.ReLU()]
        depth = out
    flat = depth * (height // 2) * (width // 2)
    layers += [torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(flat, dense), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(dense, classes))


def builder(model: Model) -> Callable[[], torch.nn.Module]:
    """The function that builds one member: `mlp(widths)` for a list of widths, else `model` itself."""
    if callable(model):
        return model
    widths = list(model)
    return lambda: mlp(widths)


class Ensemble:
    """N copies of one model as stacked parameters (members, ...), each member with its own Adam learning rate.

    `model`: an MLP's widths [in, *hidden, out], or a function that builds the torch module (`cnn`, say). Every
    member starts from the same weights (torch's default initialisation under `seed`), as the engine's members
    do with `init="shared"`: members differ only by their learning rates. `task`: the loss (`member_losses`).
    """

    def __init__(self, model: Model, learning_rates, seed: int = 0, grad: str = "backward", task: str = "binary"):
        if grad not in GRADS:
            raise ValueError(f"grad must be one of {GRADS}, but got {grad!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, but got {task!r}")
        self.task = task
        torch.manual_seed(seed)
        model = builder(model)()
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
        """One member's outputs: x (rows, *input) -> (rows, outputs)."""
        return torch.func.functional_call(self.skeleton, params, (x,))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's outputs on shared rows: x (rows, *input) -> (members, rows, outputs)."""
        return torch.func.vmap(self.member_logits, in_dims=(0, None))(self.params, x)

    def _step_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = member_losses(self.logits(x), y, self.task)  # (members,)
        grads = torch.autograd.grad(losses.sum(), list(self.params.values()))  # members are independent
        self.adam(dict(zip(self.params, grads)))
        return losses.detach()

    def _step_vmap_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        def member_loss(params, x, y):
            loss = example_losses(self.member_logits(params, x), y, self.task).mean()
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


def example_losses(outputs: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Each row's loss: outputs (..., rows, outputs), y (rows,) -> (..., rows). "binary": sigmoid cross-entropy on
    one logit, y float 0/1; "multiclass": softmax cross-entropy on K logits, y int64 classes."""
    if task == "binary":
        logits = outputs[..., 0]
        return F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none")
    return F.cross_entropy(outputs.movedim(-1, 1), y.expand(outputs.shape[:-1]), reduction="none")


def member_losses(outputs: torch.Tensor, y: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Mean loss of each member: outputs (members, rows, outputs), y (rows,) -> (members,)."""
    return example_losses(outputs, y, task).mean(-1)


def member_accuracy(outputs: torch.Tensor, y: torch.Tensor, task: str = "binary") -> torch.Tensor:
    """Each member's accuracy: outputs (members, rows, outputs), y (rows,) -> (members,)."""
    right = ((outputs[..., 0] > 0).float() == y) if task == "binary" else (outputs.argmax(-1) == y)
    return right.float().mean(-1)


def tensors(x, y, task: str = "binary") -> tuple[torch.Tensor, torch.Tensor]:
    """numpy rows as the engine holds them -> torch's: images (rows, H, W, C) moved channels first, (rows, C, H,
    W), contiguous (once, not per step); y float32 ("binary") or int64 classes ("multiclass")."""
    x = torch.tensor(np.asarray(x, np.float32))
    if x.dim() == 4:
        x = x.permute(0, 3, 1, 2).contiguous()
    y = torch.tensor(np.asarray(y, np.float32 if task == "binary" else np.int64))
    return x, y


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
        accuracy = member_accuracy(logits, y_val, ensemble.task)
        return loss_sum / steps, member_losses(logits, y_val, ensemble.task), accuracy


def train_ensemble(
    x_train,
    y_train,
    x_val,
    y_val,
    model: Model,
    batch_size: int,
    learning_rates,
    epochs: int,
    seed: int = 0,
    grad="backward",
    task: str = "binary",
) -> dict[str, Any]:
    """Builds the ensemble and trains it `epochs` epochs, validating after each; times every part.

    Args:
      x_train, y_train, x_val, y_val: numpy arrays as the engine holds them, (rows, features) or images
        (rows, H, W, C), and (rows,) labels (`tensors` converts them).
      model: [features, *hidden, 1] (an MLP), or a function that builds a torch module (`cnn`);
        learning_rates: one per member; grad: one of GRADS; task: one of TASKS.

    Returns:
      init_s (tensors and the stacked ensemble built), epoch_times (one per epoch), total_s
      (everything, end to end), val_loss (members,) numpy of the last epoch.
    """
    start = time.perf_counter()
    x, y = tensors(x_train, y_train, task)
    xv, yv = tensors(x_val, y_val, task)
    ensemble = Ensemble(model, learning_rates, seed, grad, task)
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


def seconds_per_steps(
    x, y, model: Model, batch_size: int, learning_rates, grad: str, steps: int = 20, task: str = "binary"
) -> float:
    """Seconds for `steps` minibatch steps of a fresh ensemble, after as many untimed ones."""
    ensemble = Ensemble(model, learning_rates, grad=grad, task=task)
    x, y = tensors(x[: steps * batch_size], y[: steps * batch_size], task)
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    for xb, yb in batches:
        ensemble.step(xb, yb)
    start = time.perf_counter()
    for xb, yb in batches:
        ensemble.step(xb, yb)
    return time.perf_counter() - start


def difference_from_alone(
    model: Model,
    x,
    y,
    learning_rates,
    batch_size: int,
    steps: int,
    task: str = "binary",
    grad: str = "backward",
    seed: int = 0,
) -> float:
    """The largest absolute difference, over every member and parameter, between the ensemble after `steps`
    minibatch steps and the same model trained alone on the same minibatches with `torch.optim.Adam` (optax's
    defaults, the member's learning rate), from the same initial weights.

    Args:
      model: as `Ensemble` takes it; x, y: numpy rows as the engine holds them, at least steps x batch_size.
    """
    ensemble = Ensemble(model, learning_rates, seed, grad, task)
    x, y = tensors(x[: steps * batch_size], y[: steps * batch_size], task)
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    for xb, yb in batches:
        ensemble.step(xb, yb)
    worst = 0.0
    for member, lr in enumerate(learning_rates):
        torch.manual_seed(seed)
        alone = builder(model)()
        optimizer = torch.optim.Adam(alone.parameters(), lr=float(lr), betas=(B1, B2), eps=EPS)
        for xb, yb in batches:
            optimizer.zero_grad(set_to_none=True)
            example_losses(alone(xb), yb, task).mean().backward()
            optimizer.step()
        for name, p in alone.named_parameters():
            worst = max(worst, (ensemble.params[name][member].detach() - p.detach()).abs().max().item())
    return worst

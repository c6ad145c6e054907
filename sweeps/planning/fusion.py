"""Which structures train in one compiled program: fusion where a cost model says it pays (`fuse=True`).

Members whose built-in MLPs differ only in hidden widths and depth, or whose batch sizes differ, can share one
program (`sweeps.engine.fuse`): padded to the widest network and masked, stepping through micro-batches of the
batch sizes' greatest common divisor, each member computes exactly what it would alone. What that costs is
the padding (every member computes the padded network) and the micro-steps (every member's optimizer runs at
every micro-step, masked); what it saves is a compilation per structure and a population too small to fill
the device. `groups` weighs the two with `cost`, a model of the seconds a group's population takes:

    compile + epochs x (steps x (STEP_S + members x (UPDATE_WORDS x params / WORD_RATE + 6 x batch x MACs
    / FLOP_RATE + deeper layers x LAYER_S)) + members x validation rows x 2 x MACs / FLOP_RATE)

MACs: the network's multiply-adds per row; params: its parameters (padded, for a fused group); steps:
ceil(rows / batch), the micro-batch for a fused group (whose optimizer passes cost half again: the summed
gradient); epochs: the group's longest trial's (a population trains until its last member is done, the others
masked); deeper layers: hidden layers past the first, whose products are one small matrix product per member
(the first layer's input is the minibatch every member shares: one large product for the population), which a
CPU runs far below its FLOP rate, whatever the width (LAYER_S). The constants were measured on the 2-core
development CPU: the lesson's model at populations of 18 and 72 and batch sizes 16 to 256, widths 16 to 256 and
depths 1 to 3 at populations of 16 and 64 (benchmarks/README.md, "Fused shapes"); a device that is faster per
FLOP makes the compile term weigh more, so the model fuses at least as much there as it should. Groups are
merged greedily: of every pair of groups that can share a program, the merge that saves the most seconds is
made, until none saves any.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from sweeps.engine import Structure, fuse, n_params

# Measured on the development machine (2-core AMD EPYC, jax 0.10.2 CPU; benchmarks/README.md, "Fused shapes").
COMPILE_S = 2.5  # seconds to compile one more structure's epoch and initialisation (cold: 1.6-4.6 s measured)
STEP_S = 1.1e-4  # seconds a step of the epoch's scan costs whatever its population (the loop's own work)
LAYER_S = 8e-6  # seconds per member and step of a hidden layer past the first (16 wide: 7-9 us measured)
FLOP_RATE = 8.8e10  # float32 operations per second in the members' forward and backward passes
WORD_RATE = 1.6e10  # parameter words per second through the optimizer's update passes
UPDATE_WORDS = 12  # words read and written per parameter per update (Adam: parameter, gradient, two moments)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """Structures that may train as one group: their fused structure and each one's members' epoch budgets."""

    structure: Structure
    parts: tuple[tuple[Structure, tuple[int, ...]], ...]  # (a trial's own structure, its members' epochs)

    @property
    def members(self) -> int:
        return sum(len(epochs) for _, epochs in self.parts)

    @property
    def epochs(self) -> int:
        """Epochs its population trains: its longest member's (the others masked meanwhile)."""
        return max(max(epochs) for _, epochs in self.parts)


def epoch_seconds(structure: Structure, members: int, n_train: int, n_val: int) -> float:
    """The cost model's seconds for one epoch of a population of `members` members of `structure`."""
    macs = multiply_adds(structure)
    steps = math.ceil(n_train / structure.batch_size)
    words = UPDATE_WORDS * n_params(structure) * (1.5 if structure.accumulate > 1 else 1.0)  # + the gradient sum
    deeper = max(len(structure.hidden) - 1, 0) if structure.module is None else 0
    member_step = words / WORD_RATE + 6 * structure.batch_size * macs / FLOP_RATE + deeper * LAYER_S
    return steps * (STEP_S + members * member_step) + members * 2 * n_val * macs / FLOP_RATE


def multiply_adds(structure: Structure) -> int:
    """Multiply-adds of one row's forward: the built-in MLP's from its widths, a user's model's from its parameters
    (a dense layer's count; a convolution's is larger, which only makes fusing its batch sizes look dearer)."""
    if structure.module is not None:
        return n_params(structure)
    sizes = (structure.n_features, *structure.hidden, structure.n_outputs)
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def cost(candidate: Candidate, n_train: int, n_val: int) -> float:
    """Seconds the cost model gives a group: one compilation and its population's epochs."""
    return COMPILE_S + candidate.epochs * epoch_seconds(candidate.structure, candidate.members, n_train, n_val)


def merged(a: Candidate, b: Candidate, shapes: bool = True) -> Candidate | None:
    """The group of `a`'s and `b`'s members in one program, or None where no program holds them both (or, with
    `shapes` False, where they differ in hidden widths or depth)."""
    if not shapes and len({s.hidden for s, _ in a.parts + b.parts}) > 1:
        return None
    structure = fuse([a.structure, b.structure])
    return None if structure is None else Candidate(structure, a.parts + b.parts)


def groups(
    parts: Sequence[tuple[Structure, Sequence[int]]],
    n_train: int,
    n_val: int,
    enabled: bool = True,
    shapes: bool = True,
) -> list[Candidate]:
    """The structure groups a round trains: `parts` are the trials' own structures (in order of first appearance)
    with their members' epoch budgets; each returned group is one compiled program, in that order. `enabled`
    False (`fuse=False`): one group per structure; `shapes` False (a strategy that copies members between them,
    `Strategy.copies_members`): widths and depths are never padded together, batch sizes still fuse.

    Examples:
      >>> s = Structure(hidden=(64,), activation="relu", batch_size=32, optimizer="adam", schedule="constant",
      ...               clip=False, dropout=False, task="binary", n_features=45, n_outputs=1)
      >>> wider = dataclasses.replace(s, batch_size=64)
      >>> [g.structure.label() for g in groups([(s, [20] * 6), (wider, [20] * 6)], 5634, 1409)]
      ['hidden=[64] relu, batch 32 (x1-2 accumulated), adam/constant']
    """
    found = [Candidate(s, ((s, tuple(epochs)),)) for s, epochs in parts]
    if not enabled:
        return found
    costs = [cost(c, n_train, n_val) for c in found]
    while True:
        best = None  # (saving, i, j, merged candidate, its cost)
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                both = merged(found[i], found[j], shapes)
                if both is None:
                    continue
                together = cost(both, n_train, n_val)
                saving = costs[i] + costs[j] - together
                if saving > 0 and (best is None or saving > best[0]):
                    best = (saving, i, j, both, together)
        if best is None:
            return found
        _, i, j, both, together = best
        found[i], costs[i] = both, together
        del found[j], costs[j]

"""The loss curve a page draws, in at most a few hundred points however long the run: what a run
writes to live.json as it trains (the whole record stays in steps.csv)."""
from __future__ import annotations

import numpy as np

CURVE_POINTS = 500         # the drawn loss curve's most points, whatever the run's length


class LossCurve:
    """The loss per step in at most `points` buckets of equal width (a power of two steps), each
    holding its mean: when the buckets run out, neighbours merge and the width doubles. What a page
    draws stays this size however long the run; the full record stays in steps.csv."""

    def __init__(self, points: int = CURVE_POINTS):
        self.points, self.width = points, 1
        self.steps: list[int] = []    # each bucket's last step
        self.sums: list[float] = []
        self.counts: list[int] = []

    def add(self, step: int, loss: float) -> None:
        if self.counts and self.counts[-1] < self.width and step > self.steps[-1]:
            self.steps[-1], self.sums[-1], self.counts[-1] = step, self.sums[-1] + loss, self.counts[-1] + 1
        else:
            self.steps.append(step), self.sums.append(loss), self.counts.append(1)
        if len(self.steps) > self.points:
            self.width *= 2
            pairs = range(0, len(self.steps) - 1, 2)
            last = [] if len(self.steps) % 2 == 0 else [len(self.steps) - 1]
            self.steps = [self.steps[i + 1] for i in pairs] + [self.steps[i] for i in last]
            self.sums = [self.sums[i] + self.sums[i + 1] for i in pairs] + [self.sums[i] for i in last]
            self.counts = [self.counts[i] + self.counts[i + 1] for i in pairs] + [self.counts[i] for i in last]

    @classmethod
    def of(cls, steps, losses, points: int = CURVE_POINTS) -> LossCurve:
        curve = cls(points)
        for s, v in zip(np.asarray(steps).tolist(), np.asarray(losses).tolist()):
            curve.add(s, v)
        return curve

    def to_dict(self) -> dict:
        return {"step": self.steps, "loss": [s / c for s, c in zip(self.sums, self.counts)], "width": self.width}

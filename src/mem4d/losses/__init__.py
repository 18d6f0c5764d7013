"""The training objective of Mem4D (paper §3.3, Eq. 7–10) plus the motion-head loss.

`objective.Mem4DObjective` composes the terms; each term lives in its own file and is tested
on hand-built cases.
"""

from mem4d.losses.objective import LossWeights, Mem4DObjective, Targets

__all__ = ["LossWeights", "Mem4DObjective", "Targets"]

"""Helpers of `mem4d demo`: scoring a reconstruction against the synthetic ground truth
(:mod:`.evaluate`) and the self-contained HTML report (:mod:`.report`)."""

"""Data: the `Sample` every source produces, the synthetic generator and dataset readers."""

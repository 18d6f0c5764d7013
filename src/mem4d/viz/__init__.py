"""mem4d.viz."""

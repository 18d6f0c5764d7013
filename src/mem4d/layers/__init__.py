"""mem4d.layers."""

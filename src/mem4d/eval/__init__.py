"""mem4d.eval."""

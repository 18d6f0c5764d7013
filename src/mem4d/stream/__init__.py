"""mem4d.stream."""

"""mem4d.model."""

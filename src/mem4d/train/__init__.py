"""mem4d.train."""

"""mem4d.scene."""

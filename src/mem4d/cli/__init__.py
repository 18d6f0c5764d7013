"""Command-line interface: `mem4d COMMAND ...` (see `mem4d --help`)."""

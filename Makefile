# Two commands set everything up on a fresh machine:
#   make demo   -> .venv with the main job's dependencies (video input, the 3D viewer and scene.glb: the
#                  demo's outputs and the README's next step, `mem4d view`), then `mem4d demo`
#   make test   -> .venv with the dev extras, then the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# extras of the main target: what `mem4d demo` writes (scene.glb: export) and opens next (mem4d view: viewer)
MAIN_EXTRAS := video,viewer,export

.PHONY: demo test venv venv-dev browser clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	bash scripts/install_torch.sh $(PY)
	touch $@

$(VENV)/.main: $(VENV)/.created pyproject.toml Makefile
	$(PIP) install --quiet -e ".[$(MAIN_EXTRAS)]"
	touch $@

$(VENV)/.dev: $(VENV)/.main pyproject.toml
	$(PIP) install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.main
venv-dev: $(VENV)/.dev

demo: $(VENV)/.main
	$(VENV)/bin/mem4d demo

# the viewer's tests drive a real headless Chromium (Debian package)
browser:
	bash scripts/install_browser.sh

test: $(VENV)/.dev browser
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo_out .pytest_cache

# The two commands of the README. Each does all set-up from a fresh clone: the virtualenv, the
# package with its test extras, and the system packages the tests use (nginx, from Debian).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp

.PHONY: demo test lint bench system-deps venv clean

# The demo needs the package, the dev Vault (devvault/) and moto; the tests need the test extra too.
$(DEMO_STAMP): pyproject.toml devvault/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./devvault -e '.[demo]'
	touch $(DEMO_STAMP)

$(STAMP): $(DEMO_STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e ./devvault -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# nginx proves the end-to-end reload story; podman, runc and mmdebstrap build and run the image
# (tests/test_image.py). Installed when missing and we are root on Debian; otherwise those tests skip.
system-deps:
	@command -v nginx >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing nginx-light (Debian) for the end-to-end test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; \
	  else echo "nginx is not installed and cannot be installed here: the nginx test will skip"; fi; }
	@PATH="$$PATH:/usr/sbin:/sbin"; missing=""; \
	for tool in podman runc mmdebstrap; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (Debian) for the image test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      $$missing >/dev/null; \
	  else echo "not installed and cannot be installed here:$$missing; the image test will skip"; fi; fi

demo: $(DEMO_STAMP)
	$(BIN)/injector demo

lint: venv
	$(BIN)/ruff check injector devvault tests bench
	$(BIN)/mypy

test: venv system-deps lint
	$(BIN)/pytest

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist *.egg-info

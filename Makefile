# The two commands a newcomer needs are `make demo` and `make test`; both create .venv themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The gateway's suite runs in a venv of its own: an edge install, the [test] extra and the tools
# without [train].
EDGE_VENV ?= .venv-edge
EDGE_STAMP := $(EDGE_VENV)/.installed
DEBS := mosquitto socat systemd openssl gcc g++ python3-dev

.PHONY: setup debs demo test test-edge lint bench

setup: $(STAMP)

$(STAMP): pyproject.toml tools/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -e './tools[train]'
	touch $@

$(EDGE_STAMP): pyproject.toml tools/pyproject.toml
	python3 -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EDGE_VENV)/bin/python -m pip install --quiet -e '.[test]' -e ./tools
	touch $@

# Real brokers and serial ports for the tests, C and C++ compilers and headers for the native kernels:
# install them when we may, say so when we may not.
debs:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:" $$missing; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing Debian packages:" $$missing "(run 'make test' as root, or install them)" >&2; exit 1; \
		fi; \
	fi

demo: setup
	$(VENV)/bin/edgewatch demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy -p edgewatch.kernels -p edgewatch.agent

test: setup debs lint
	$(VENV)/bin/pytest -q

# What a gateway can run on itself: every test but those of tests/train/, which need [train].
test-edge: $(EDGE_STAMP) debs
	$(EDGE_VENV)/bin/pytest -q --ignore=tests/train --ignore=edgewatch/export tests edgewatch

bench: setup
	$(VENV)/bin/edgewatch bench kernels

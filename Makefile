# SPDX-License-Identifier: GPL-2.0
#
# dm-fleece: build the module and the tool, install what they need, test.
#
#   make            module (drivers/md/dm-fleece.ko) + userspace/fleecectl
#   make deps       install the Debian packages everything needs (root)
#   make check      unit tests on the host + integration tests in the VM
#   make demo       show dm-fleece at work in the VM
#   make check-612  the kernel-facing integration tests on Debian 12's 6.12 (CI)
#   make check-kernels   make check on Debian 12's 6.1 and 6.12 kernels
#   make crash      5000 crash points replayed, then 20 power cuts under load
#   make lint       checkpatch --strict, sparse and W=1 on the module; docutils, groff on the docs
#   make fuzz       hostile input: libFuzzer on the parsers, 10000 cases in the VM
#   make stress     model-based random operations in the VM (STRESS_SECONDS=600)
#   make bench      fio in the VM: dm-fleece vs dm-linear, dm-snapshot, dm-era (PROFILE=cpu|io);
#                   PROFILE=scale: a sparse 16 TiB origin next to dm-era (activation,
#                   status, memory, change lists, view creation and the suspend)
#   make install    module, fleecectl, man pages, docs, bash completion, the
#                   fleecetab systemd generator (DESTDIR=, PREFIX=/usr)
#   make uninstall  remove what make install put (same DESTDIR/PREFIX/KVER)
#   make check-install   build the .debs, test them and make install in a VM
#   make debug-kernel    build the VM's debug kernel (KASAN, lockdep, kmemleak...)
#   make check-debug     the integration suite on it (also: make check KERNEL=debug)
#
# KVER picks the kernel (default: tests/vm/default-kver); KDIR its build tree.

TOP := $(CURDIR)

ifneq ($(origin KDIR),undefined)
KVER ?= $(shell cat $(KDIR)/include/config/kernel.release 2>/dev/null)
endif
KVER ?= $(shell $(TOP)/tests/vm/default-kver)
KDIR ?= /lib/modules/$(KVER)/build
W ?= 1
export KVER

# Second kernel series shipped in Debian 12.
KVER_SERIES ?= 6.1 6.12

DEB_PKGS := build-essential linux-headers-amd64 linux-image-amd64 \
	qemu-system-x86 qemu-utils libnbd-bin busybox-static cpio kmod udev dmsetup lvm2 \
	libdevmapper-dev libblkid-dev libssl-dev pkg-config fio e2fsprogs xfsprogs libcmocka-dev sparse cryptsetup-bin \
	python3 python3-docutils groff-base xz-utils zstd util-linux linux-source-6.1 openssl \
	clang-14 libclang-rt-14-dev
DEB_PKGS_612 := linux-image-6.12-amd64 linux-headers-6.12-amd64
# Only for building and testing the Debian packages (make check-install).
DEB_PKGS_PKG := dkms dh-dkms debhelper dpkg-dev fakeroot

# make install: the module goes to /lib/modules/$(KVER)/updates (depmod runs
# unless DESTDIR is set), the rest under PREFIX.
PREFIX ?= /usr
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/dm-fleece
MODDIR ?= /lib/modules/$(KVER)/updates
# bash-completion's directory for completions loaded on demand.
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
# systemd looks for generators here whatever PREFIX is.
GENDIR ?= /lib/systemd/system-generators
DOCS := $(notdir $(wildcard Documentation/*.rst)) fleecetab.example

.PHONY: all module tools faults deps deps-6.12 check check-unit check-integration \
	check-kernels crash demo lint fuzz clean help install uninstall deps-pkg check-install

all: module tools

help:
	@sed -n '3,/^# KVER picks/p' Makefile | sed 's/^# \{0,1\}//'

# The .ko in drivers/md/ is for one kernel; .kver says which. Building for
# another kernel cleans first so a stale object is never tested.
module:
	@test -e "$(KDIR)/Makefile" || { echo "make: no kernel build tree at $(KDIR) (run 'make deps', or set KVER/KDIR)" >&2; exit 1; }
	@if [ -f drivers/md/.kver ] && [ "$$(cat drivers/md/.kver)" != "$(KVER)" ]; then \
		$(MAKE) -C "$(KDIR)" M="$(TOP)" clean >/dev/null; fi
	$(MAKE) -C "$(KDIR)" M="$(TOP)" W=$(W) modules
	@echo "$(KVER)" > drivers/md/.kver

tools:
	$(MAKE) -C userspace

deps:
	@tests/deps-install $(DEB_PKGS)

deps-6.12:
	@tests/deps-install $(DEB_PKGS_612)

ifeq ($(KERNEL),debug)
check: check-debug
else
check: deps
	@$(MAKE) --no-print-directory all faults
	@tests/run-all
endif

lint: module
	@tests/lint

check-unit:
	@$(MAKE) --no-print-directory -C tests/unit run

check-integration: all faults
	@tests/integration/run $(TESTS)

# The second kernel series in CI: the module and the test devices built for
# the newest installed 6.12 kernel, and the kernel-facing integration tests
# booted on it: targets and views (00x, 01x), bitmaps and gaps (05x), faults
# (06x), activation at scale, view starts, the copy buffer and torn
# metadata copies (08x). fleecectl's tests (04x, 068, 07x) drive the same
# kernel paths and run on 6.1 only (make check), and so do those whose kernel calls others here make
# too, where what they vary is our own logic, not the kernel's: status
# formatting (003), a file system on the origin or a view (005, 013: 011
# and 012 read and write the same paths), refusals of view tables (010:
# 004 opens and refuses devices the same way), the low-water event (015),
# table fuzzing (019: the parsers), a chain of incrementals (051), the
# volatile bitmaps' messages (053: 050's, without metadata), the model
# stress (056) and module autoloading (067: udev and modprobe). CI must
# stay under an hour; make check-kernels runs everything on both.
TESTS_612_SKIP := 003-origin-status.sh 005-origin-ext4.sh 010-view-bad-input.sh \
	013-view-ext4.sh 015-view-low-water.sh 019-fuzz-tables.sh \
	051-bitmap-incremental-chain.sh 053-bitmap-messages-volatile.sh \
	056-model-stress.sh 067-autoload.sh
TESTS_612 ?= $(filter-out $(TESTS_612_SKIP),$(sort $(notdir $(wildcard \
	tests/integration/0[01]*.sh tests/integration/05*.sh tests/integration/06[0-7]*.sh \
	tests/integration/069*.sh tests/integration/08[0-4]*.sh))))
.PHONY: check-612
check-612: deps deps-6.12
	@v=$$(ls /boot/vmlinuz-6.12.* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -n1); \
	[ -n "$$v" ] || { echo "check-612: no installed 6.12 kernel (make deps-6.12)" >&2; exit 1; }; \
	echo "=== kernel $$v: $(words $(TESTS_612)) integration tests"; \
	$(MAKE) --no-print-directory check-integration KVER=$$v KDIR=/lib/modules/$$v/build \
		TESTS="$(TESTS_612)"

# Test devices the VM's kernel lacks (dm-dust, dm-failnth): tests/faults.
faults:
	@$(MAKE) --no-print-directory -C tests/faults KVER=$(KVER) KDIR=$(KDIR)

# Crash safety at length (Documentation/testing.rst, "Crash safety"): the
# log replay to FLEECE_REPLAY_POINTS crash points (make check: 200), then
# FLEECE_POWERCUT_LOOPS VMs killed under load.
crash: deps
	@$(MAKE) --no-print-directory all
	@FLEECE_REPLAY_POINTS=$${FLEECE_REPLAY_POINTS:-5000} tests/crash/replay
	@FLEECE_POWERCUT_LOOPS=$${FLEECE_POWERCUT_LOOPS:-20} \
		FLEECE_POWERCUT_BUDGET=$${FLEECE_POWERCUT_BUDGET:-3600} tests/crash/powercut.sh

# Each kernel series: its own build, its own VM boots, one summary line each.
check-kernels: deps deps-6.12
	@set -e; for s in $(KVER_SERIES); do \
		v=$$(ls /boot/vmlinuz-$$s.* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -n1); \
		[ -n "$$v" ] || { echo "no installed $$s kernel" >&2; exit 1; }; \
		echo "=== kernel $$v ==="; \
		$(MAKE) --no-print-directory check KVER=$$v KDIR=/lib/modules/$$v/build; \
	done

# Every file install puts is listed in uninstall too. fleecectl is built
# without its test hooks (Documentation/testing.rst, "Test hooks").
install: module
	$(MAKE) -C userspace TEST_HOOKS=0
	install -D -m 0644 drivers/md/dm-fleece.ko "$(DESTDIR)$(MODDIR)/dm-fleece.ko"
	install -D -m 0755 userspace/fleecectl "$(DESTDIR)$(SBINDIR)/fleecectl"
	install -D -m 0644 Documentation/fleecectl.8 "$(DESTDIR)$(MANDIR)/man8/fleecectl.8"
	install -D -m 0644 Documentation/fleecetab.5 "$(DESTDIR)$(MANDIR)/man5/fleecetab.5"
	install -D -m 0644 userspace/fleecectl.bash-completion "$(DESTDIR)$(BASHCOMPDIR)/fleecectl"
	install -d "$(DESTDIR)$(DOCDIR)"
	install -m 0644 $(addprefix Documentation/,$(DOCS)) "$(DESTDIR)$(DOCDIR)/"
	install -d "$(DESTDIR)$(GENDIR)"
	sed 's|^fleecectl=/usr/sbin/fleecectl$$|fleecectl=$(SBINDIR)/fleecectl|' \
		systemd/fleecetab-generator > "$(DESTDIR)$(GENDIR)/fleecetab-generator"
	chmod 0755 "$(DESTDIR)$(GENDIR)/fleecetab-generator"
	@echo "/etc/fleecetab is yours to write (example: $(DOCDIR)/fleecetab.example);"
	@echo "then 'systemctl daemon-reload' runs the generator (man 5 fleecetab)."
	@if [ -z "$(DESTDIR)" ]; then echo "depmod -a $(KVER)"; depmod -a "$(KVER)"; fi

# With DESTDIR, also the directories install made there, now empty.
uninstall:
	@test -n "$(KVER)" || { echo "make uninstall: no KVER (give the one make install used)" >&2; exit 1; }
	rm -f "$(DESTDIR)$(MODDIR)/dm-fleece.ko" "$(DESTDIR)$(SBINDIR)/fleecectl" \
		"$(DESTDIR)$(MANDIR)/man8/fleecectl.8" "$(DESTDIR)$(MANDIR)/man5/fleecetab.5" \
		"$(DESTDIR)$(BASHCOMPDIR)/fleecectl" "$(DESTDIR)$(GENDIR)/fleecetab-generator" \
		$(foreach d,$(DOCS),"$(DESTDIR)$(DOCDIR)/$(d)")
	@if [ -d "$(DESTDIR)$(DOCDIR)" ]; then rmdir --ignore-fail-on-non-empty "$(DESTDIR)$(DOCDIR)"; fi
	@if [ -z "$(DESTDIR)" ]; then echo "depmod -a $(KVER)"; depmod -a "$(KVER)"; \
	else for d in "$(MODDIR)" "$(SBINDIR)" "$(MANDIR)/man8" "$(MANDIR)/man5" "$(DOCDIR)" \
			"$(BASHCOMPDIR)" "$(GENDIR)"; do \
		while [ "$$d" != / ] && [ "$$d" != . ] && \
			{ [ ! -d "$(DESTDIR)$$d" ] || rmdir "$(DESTDIR)$$d" 2>/dev/null; }; do \
			d=$$(dirname "$$d"); done; \
	done; fi

deps-pkg:
	@tests/deps-install $(DEB_PKGS_PKG)

# Slow (a VM per kernel series, DKMS builds under TCG): not part of make check.
check-install: deps deps-6.12 deps-pkg
	@FLEECE_PKG_SERIES="$(KVER_SERIES)" tests/pkg/check

# Fuzzing, longer than 'make check' does it: FUZZ_RUNS inputs per libFuzzer
# target on the host, then FUZZ_CASES tables and messages and FUZZ_FLIPS
# damaged metadata images in the VM (tests/integration/019-fuzz-tables.sh).
# FUZZ_SEED seeds both (0: a new libFuzzer seed each run, printed).
FUZZ_RUNS ?= 2000000
FUZZ_CASES ?= 10000
FUZZ_FLIPS ?= 600
FUZZ_SEED ?= 1
fuzz: deps
	@$(MAKE) --no-print-directory module
	@$(MAKE) --no-print-directory -C tests/fuzz run RUNS=$(FUZZ_RUNS) SEED=$(FUZZ_SEED)
	@FLEECE_FUZZ_CASES=$(FUZZ_CASES) FLEECE_FUZZ_CLI=$$(($(FUZZ_CASES) / 50)) \
		FLEECE_FUZZ_FLIPS=$(FUZZ_FLIPS) FLEECE_FUZZ_SEED=$(FUZZ_SEED) \
		FLEECE_TEST_TIMEOUT=$${FLEECE_TEST_TIMEOUT:-3000} \
		tests/integration/run 019-fuzz-tables.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/vm/run -- tests/demo/demo.sh

# The model-based stress test at length (Documentation/testing.rst, "Stress"):
# fresh seeds one after another in one VM for STRESS_SECONDS; STRESS_ARGS go
# to tests/stress/run (--seed N, --legacy-txn...). make check runs a short
# one with fixed seeds (tests/integration/056-model-stress.sh).
STRESS_SECONDS ?= 600
STRESS_ARGS ?=
.PHONY: stress
stress:
	@$(MAKE) --no-print-directory all
	@tests/stress/run --seconds "$(STRESS_SECONDS)" $(STRESS_ARGS)

# fio over dm-fleece and its rivals in the VM: one markdown table, also in
# build/bench/results.md (Documentation/testing.rst, "Benchmarks").
# PROFILE=cpu|io (unthrottled or throttled disks), BENCH_RUNTIME seconds per
# workload (2 for a quick smoke run); PROFILE=scale runs tests/perf/bench-scale.sh
# instead (sparse 16 TiB origin, BENCH_SCALE_TIB and BENCH_SCALE_MEM; results in
# build/bench/scale/), about 12 minutes.
PROFILE ?= cpu
BENCH_RUNTIME ?= 4
.PHONY: bench
bench: deps
	@$(MAKE) --no-print-directory all
	@tests/perf/bench --profile "$(PROFILE)" --runtime "$(BENCH_RUNTIME)"

# The debug kernel lane (Documentation/testing.rst, "Debug kernel"): Debian's
# linux-source-6.1 with KASAN, lockdep, kmemleak, debugobjects and list
# debugging, built once into $(FLEECE_CACHE)/debug-kernel (rebuilt only when
# tests/vm/debug-kernel.config changes); then the harness's checks on it and
# the integration suite with dm-fleece built against it. Slow: not in make
# check. Per-test and whole-suite time limits are raised to match.
FLEECE_CACHE ?= /var/cache/dm-fleece
export FLEECE_CACHE
DEB_PKGS_DEBUG := linux-source-6.1 bc flex bison libelf-dev libssl-dev
.PHONY: debug-kernel check-debug
debug-kernel: deps
	@tests/deps-install $(DEB_PKGS_DEBUG)
	@tests/vm/debug-kernel build

check-debug: debug-kernel
	@$(MAKE) --no-print-directory tools
	@tests/vm/debug-selftest
	@ko=$$(tests/vm/debug-kernel module) && \
		FLEECE_KERNEL=debug FLEECE_MODULE=$$ko \
		FLEECE_TEST_TIMEOUT=$${FLEECE_TEST_TIMEOUT:-1500} \
		FLEECE_SUITE_TIMEOUT=$${FLEECE_SUITE_TIMEOUT:-21600} \
		tests/integration/run $(TESTS)

clean:
	@if [ -e "$(KDIR)/Makefile" ]; then $(MAKE) -C "$(KDIR)" M="$(TOP)" clean; fi
	rm -f drivers/md/.kver
	$(MAKE) -C userspace clean
	$(MAKE) -C tests/unit clean
	$(MAKE) -C tests/fuzz clean
	$(MAKE) -C tests/faults clean
	rm -rf build

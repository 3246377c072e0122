#!/bin/bash
# Model-based randomized stress (tests/stress/model.py; issue 12, item 5): a
# few fixed seeds, each a fixed number of random operations on a fleece-origin
# of random geometry and its views: origin writes, discards and write-zeroes
# of random sizes; views of every kind (full, writable, incremental, full
# backups of bitmaps, shorter ones, small scratch) created, read, released,
# written, committed, reloaded and removed; bitmap messages; reloads of the
# fleece-origin and its removal under its views; concurrent writers and
# readers. Every answer is checked against a model of what the documentation
# promises: every byte read (views return their point in time, never later
# data), every bitmap, frozen set and status line, every refusal's errno, and
# the kernel log. A failure prints its seed, operation and the last
# operations; "tests/stress/model.py --seed S --ops N" in the VM replays it.
#
# Operation counts, not time limits: the outcome never depends on the
# machine's speed. FLEECE_STRESS_SEEDS and FLEECE_STRESS_OPS override the
# seeds and the count; FLEECE_STRESS_ARGS adds model.py options (e.g.
# --single-backup or --legacy-txn, for a module with the old semantics of a
# second backup of a bitmap).
. "$(dirname "$0")/lib.sh"

SEEDS=${FLEECE_STRESS_SEEDS:-"4 5 23"}
OPS=${FLEECE_STRESS_OPS:-500}
read -r -a EXTRA <<< "${FLEECE_STRESS_ARGS:-}"

# model.py removes what it made; if it was killed, views first, then the
# fleece-origin, then the slices under them.
cleanup() {
	local d
	for d in $(dmsetup ls 2>/dev/null | awk '$1 ~ /^fst-v/ { print $1 }') fst-o \
		 $(dmsetup ls 2>/dev/null | awk '$1 ~ /^fst-s/ { print $1 }') fst-os; do
		dmsetup remove "$d" >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT

load_module
for seed in $SEEDS; do
	python3 "$TOP/tests/stress/model.py" --seed "$seed" --ops "$OPS" \
		--workdir "$WORK/nodes" "${EXTRA[@]}" ||
		fail "seed $seed: the kernel's answers differ from the model's (see above)"
done
left=$(dmsetup ls | awk '$1 ~ /^fst-/ { print $1 }')
[ -z "$left" ] || fail "devices left behind: $left"
info "seeds $SEEDS: $OPS operations each, every answer as the model expected"

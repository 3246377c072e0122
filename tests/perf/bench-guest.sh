#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/perf/bench-guest.sh: the benchmark matrix, run inside the test VM by
# tests/perf/bench (see there, and Documentation/testing.rst, "Benchmarks").
#
# Disks (/dev/disk/by-id/virtio-NAME): origin, scratch and scratch2 (views'
# scratch, dm-snapshot's COW; a little larger than the origin, so that no
# session or snapshot ever fills up), meta (fleece-origin metadata), erameta
# (dm-era metadata), results (raw: gets a tar of everything in $OUT),
# slowscratch (a scratch throttled to a quarter of the others' IOPS and
# bandwidth by the host: the slowscratch scenario).
#
# Measurements are fio (libaio, direct=1, time_based). The workloads of a
# configuration that need no reset between them run as stonewalled jobs of
# one fio process (one JSON, one job per workload, named after it): a fio
# start costs seconds in this VM. Each workload gets a line in
# $OUT/cells.tsv:
#   CONFIG <tab> WORKLOAD <tab> ok|error <tab> JSON file <tab> NOTE
# Paired baselines, for the targets that compare with dm-linear or the raw
# disk. W.raw1 and W.raw2: W on the raw disk for half the runtime, just
# before (1) and just after (2) the cell. W.c: three times, for half the
# runtime each, W on dm-linear (jobs W.c1l, W.c2l, W.c3l) and on the device
# under test (W.c1x ...) at the same time, each with its own queue depth:
# both see the same host load at the same moment, so W.cNx / W.cNl is the
# ratio of their costs even on a busy host where runs seconds apart differ
# by tens of percent; the report takes the median of the three, since a
# vCPU stalled by the host skews one short run now and then. "+W" in
# CONFIGS stands for "W W.c" (W alone, then with dm-linear).
# The backup-window scenario writes $OUT/window.tsv, the backup throughput
# one $OUT/backup.tsv, the slow-scratch and sequential-writer ones
# $OUT/slow.tsv, and the memory
# measurement $OUT/memory.tsv (SCENARIO <tab> KEY <tab> VALUE);
# tests/perf/report makes the tables. A failure is recorded as an error and
# the run goes on.
#
# Environment (tests/vm/run passes FLEECE_*):
#   FLEECE_BENCH_RUNTIME  seconds per workload (default 4)
#   FLEECE_BENCH_PROFILE  cpu or io: only recorded, the host throttles disks
#   FLEECE_BENCH_ONLY     only these configs/scenarios (space separated)
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# tests/perf/bench passes copies taken when the run started: the tree may
# be rebuilt while the benchmark runs.
MODULE=${FLEECE_BENCH_MODULE:-$top/drivers/md/dm-fleece.ko}
FLEECECTL=${FLEECE_BENCH_FLEECECTL:-$top/userspace/fleecectl}
RT=${FLEECE_BENCH_RUNTIME:-4}
PROFILE=${FLEECE_BENCH_PROFILE:-cpu}
ONLY=${FLEECE_BENCH_ONLY:-}

ORIGIN=/dev/disk/by-id/virtio-origin
SCRATCH=/dev/disk/by-id/virtio-scratch
SCRATCH2=/dev/disk/by-id/virtio-scratch2
SLOW=/dev/disk/by-id/virtio-slowscratch
META=/dev/disk/by-id/virtio-meta
ERAMETA=/dev/disk/by-id/virtio-erameta
RESULTS=/dev/disk/by-id/virtio-results

OUT=/tmp/bench
MANIFEST=$OUT/cells.tsv
rm -rf "$OUT"
mkdir -p "$OUT/fio" "$OUT/log"
: > "$MANIFEST"
: > "$OUT/window.tsv"
: > "$OUT/backup.tsv"
: > "$OUT/memory.tsv"
: > "$OUT/slow.tsv"
: > "$OUT/coldset.tsv"
T0=$SECONDS
SZ=
ERA_BLOCK=128	# dm-era's block size in sectors; scenario_coldpairs sets its own

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }

# Everything so far onto the results disk, as a tar (the host extracts it).
# Done after every configuration, so a run that dies halfway still reports.
save_results() { tar -C "$OUT" -cf "$RESULTS" . 2>/dev/null && sync; }

# ---------------------------------------------------------------------------
# fio

# fio_job WORKLOAD DEV: the options of one job. Random workloads cover the
# whole device; sequential ones wrap around it while the job runs. Paired
# baselines (W.raw1, W.raw2) and concurrent pairs (W.cNl, W.cNx) run W for
# half the runtime.
fio_job() {
	local rw rt=$RT sw=--stonewall
	case $1 in
	*.raw[12]|*.c[123]l) rt=$(((RT + 1) / 2)) ;;
	*.c[123]x) rt=$(((RT + 1) / 2)) sw= ;;	# with W.cNl, just before it
	*.a[123]f) sw= ;;	# coldpairs: at once with W.aNe, just before it
	esac
	case ${1%.*} in
	randwrite) rw="--rw=randwrite --bs=4k --iodepth=16" ;;
	seqwrite4k) rw="--rw=write --bs=4k --iodepth=16" ;;
	seqwrite) rw="--rw=write --bs=1M --iodepth=4" ;;
	randread) rw="--rw=randread --bs=4k --iodepth=16" ;;
	seqread|viewread) rw="--rw=read --bs=1M --iodepth=4" ;;
	*) return 1 ;;
	esac
	echo "--name=$1 --filename=$2 $sw --runtime=$rt $rw"
}

# fio_group FILE DEV VIEW WORKLOAD...: the workloads one after the other
# (stonewall) in one fio, WORKLOAD viewread on VIEW, the others on DEV;
# coldpairs' W.aNf runs on VIEW at once with W.aNe on DEV (fio_job).
# FIO_LOG, when set, is where fio writes a 0.5 s IOPS log (FIO_LOG_iops.1.log).
fio_group() {
	local file=$1 dev=$2 view=$3 jobs='' wl d k
	shift 3
	for wl; do
		case $wl in
		viewread|*.a[123]f) d=$view ;;
		*.raw[12]) d=$ORIGIN ;;
		*) d=$dev ;;
		esac
		[ -n "$d" ] || return 1
		if [ "${wl##*.}" = c ]; then
			for k in 1 2 3; do
				jobs+=" $(fio_job "$wl${k}l" /dev/mapper/lin) $(fio_job "$wl${k}x" "$d")" || return 1
			done
			continue
		fi
		jobs+=" $(fio_job "$wl" "$d")" || return 1
	done
	# shellcheck disable=SC2086
	timeout -k 10 $(($# * (RT + 30) + 60)) fio --ioengine=libaio --direct=1 \
		--size=100% --io_size=1T --time_based --runtime="$RT" \
		${FIO_LOG:+--write_iops_log="$FIO_LOG" --log_avg_msec=500} \
		--output-format=json --output="$OUT/fio/$file" $jobs \
		2> "$OUT/log/${file%.json}.err" < /dev/null
}

# fill DEV: write the whole device once, 1 MiB sequential.
fill() {
	timeout -k 10 900 fio --name=fill --filename="$1" --ioengine=libaio --direct=1 \
		--rw=write --bs=1M --iodepth=16 --size=100% --output-format=terse \
		> /dev/null 2>> "$OUT/log/fill.err" < /dev/null
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >> "$MANIFEST"; }

# ---------------------------------------------------------------------------
# device-mapper helpers

dm_cleanup() {
	local d
	dmsetup remove_all > /dev/null 2>&1
	for _ in 1 2 3; do
		d=$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }')
		[ -z "$d" ] && return 0
		for d in $d; do
			dmsetup resume "$d" > /dev/null 2>&1
			dmsetup remove --retry "$d" > /dev/null 2>&1
		done
	done
}

# zero_head DEV: zero the first 4 MiB (more than any metadata here), so
# that dm-era and fleece-origin format it afresh.
zero_head() { dd if=/dev/zero of="$1" bs=1M count=4 oflag=direct conv=fsync status=none; }

fctl() { "$FLEECECTL" "$@" > /dev/null; }

# dm-snapshot the way LVM stacks it: base (dm-linear over the origin disk),
# so (snapshot-origin over base: all application IO goes here), snap (the
# snapshot: transient, COW on $SCRATCH, made while so is suspended).
snap_base() {
	dmsetup create base --table "0 $SZ linear $ORIGIN 0" &&
	dmsetup create so --table "0 $SZ snapshot-origin /dev/mapper/base"
}
snap_new() {	# snap_new CHUNK_SECTORS
	local r=0
	if dmsetup info snap > /dev/null 2>&1; then dmsetup remove --retry snap || return 1; fi
	dmsetup suspend so || return 1
	dmsetup create snap --table "0 $SZ snapshot /dev/mapper/base $SCRATCH N $1" || r=1
	dmsetup resume so || r=1
	return $r
}

# fleece-origin "fo" over the origin: fo_new [--meta DEV] [--chunk-size S]
fo_new() { fctl create fo "$ORIGIN" "$@"; }

view_new() {	# view_new NAME SCRATCH [fleecectl snapshot option...]
	local v=$1 s=$2
	shift 2
	if dmsetup info "$v" > /dev/null 2>&1; then fctl release "$v" || return 1; fi
	fctl snapshot fo --scratch "$s" --view "$v" "$@"
}

# ---------------------------------------------------------------------------
# Configurations: setup_NAME sets $DEV (where the workloads run) and $VIEW
# (for viewread); reset_NAME, if there is one, runs before each group of
# workloads (see CONFIGS) and makes the state cold again.

setup_raw() { DEV=$ORIGIN; }

# Its solo runs are on lin2; its pairs with lin ("+W") are an A/A control:
# two dm-linear devices at once, whose ratio is 1 but for the host's noise.
setup_linear() {
	dmsetup create lin2 --table "0 $SZ linear $ORIGIN 0" && DEV=/dev/mapper/lin2
}

# dm-linear "lin" over the origin disk, next to the configuration under
# test, for its paired baselines (device-mapper lets both map the disk).
lin_add() { dmsetup create lin --table "0 $SZ linear $ORIGIN 0"; }

setup_snap4k() { snap_base && DEV=/dev/mapper/so VIEW=/dev/mapper/snap; }
reset_snap4k() { snap_new 8; }
setup_snap64k() { setup_snap4k; }
reset_snap64k() { snap_new 128; }

setup_era() { DEV=/dev/mapper/era; }
reset_era() {
	if dmsetup info era > /dev/null 2>&1; then dmsetup remove --retry era || return 1; fi
	zero_head "$ERAMETA" &&
	dmsetup create era --table "0 $SZ era $ERAMETA $ORIGIN $ERA_BLOCK"
}

setup_fo() { fo_new && DEV=/dev/mapper/fo; }

setup_bmcold() {	# setup_bmcold [fleecectl create option...]
	zero_head "$META" && fo_new --meta "$META" "$@" && fctl bitmap add fo b &&
	DEV=/dev/mapper/fo
}
reset_bmcold() { fctl bitmap clear fo b; }

setup_bmwarm() {
	setup_bmcold && fill /dev/mapper/fo || return 1
	NOTE="$(dmsetup status fo | awk '{ print $9 }') chunks set"
}

setup_sess4k() { fo_new --chunk-size 4K && DEV=/dev/mapper/fo VIEW=/dev/mapper/v; }
reset_sess4k() { view_new v "$SCRATCH"; }
setup_sess64k() { fo_new && DEV=/dev/mapper/fo VIEW=/dev/mapper/v; }
reset_sess64k() { view_new v "$SCRATCH"; }

setup_sesswarm() {
	fo_new && view_new v "$SCRATCH" && fill /dev/mapper/fo || return 1
	DEV=/dev/mapper/fo VIEW=/dev/mapper/v
	NOTE="$(dmsetup status v | awk '{ print $8 }') chunks copied"
}

# An incremental view: bitmap b holds every 10th chunk (64 KiB written every
# 640 KiB) and the view freezes it; origin writes copy only those chunks.
# Persistent, like a real incremental backup: writes also set b's bits
# again (cold) while the view exists.
setup_incr() {
	zero_head "$META" && fo_new --meta "$META" && fctl bitmap add fo b &&
	DEV=/dev/mapper/fo VIEW=/dev/mapper/v
}
reset_incr() {
	if dmsetup info v > /dev/null 2>&1; then
		fctl release v --commit || fctl release v || return 1
	fi
	fctl bitmap clear fo b &&
	timeout -k 10 300 fio --name=stamp --filename=/dev/mapper/fo --ioengine=libaio \
		--direct=1 --rw=write:576k --bs=64k --iodepth=64 --size=100% \
		--number_ios=$((SZ / 1280)) --output-format=terse \
		> /dev/null 2>> "$OUT/log/stamp.err" < /dev/null &&
	NOTE="frozen: $(dmsetup status fo | awk '{ print $9 }') of $((SZ / 128)) chunks" &&
	view_new v "$SCRATCH" --bitmap b
}

setup_two() { fo_new && DEV=/dev/mapper/fo; }
reset_two() { view_new v "$SCRATCH" && view_new v2 "$SCRATCH2"; }

# NAME, then its workloads; "|" separates groups (a reset before each one).
# A view read changes nothing in a session, so it shares a group with the
# cold writes that follow it; reads never wait for copies or bits, so they
# follow the last write group. The targets against dm-linear and the raw
# disk compare with paired baselines (+W, W.raw1/2) run in the same fio,
# seconds apart; configurations compared with each other (era and bmcold,
# snapNk and sessNk) run next to each other. The host's load drifts over
# minutes: the closer, the less it shows in a ratio.
CONFIGS=(
	"raw randwrite seqwrite randread seqread"
	"linear +randwrite +seqwrite +randread +seqread"
	"fo +randwrite +seqwrite +randread +seqread"
	"bmwarm +randwrite +seqwrite +randread +seqread"
	"sesswarm seqread.raw1 viewread seqread.raw2 +randwrite +seqwrite +randread +seqread"
	"era randwrite | seqwrite randread seqread"
	"bmcold randwrite | seqwrite randread seqread"
	"snap4k randwrite | seqwrite randread seqread"
	"sess4k randwrite | seqwrite randread seqread"
	"snap64k randwrite | seqwrite randread seqread viewread"
	"sess64k seqread.raw1 viewread seqread.raw2 randwrite | seqwrite randread seqread"
	"incr randwrite | seqwrite randread seqread"
	"two randwrite | seqwrite randread seqread"
)

wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# run_group CFG N WORKLOAD...: reset, then one fio for the workloads.
run_group() {
	local cfg=$1 file=$1.g$2.json wl t=$SECONDS
	shift 2
	if declare -F "reset_$cfg" > /dev/null &&
	   ! "reset_$cfg" >> "$OUT/log/$cfg.setup" 2>&1; then
		log "$cfg: reset failed: $(tail -n 2 "$OUT/log/$cfg.setup" | tr '\n' ' ')"
		for wl; do record "$cfg" "$wl" error "" "reset failed"; done
		return
	fi
	if fio_group "$file" "$DEV" "$VIEW" "$@"; then
		for wl; do
			case $wl in
			*.c) for k in 1 2 3; do
				record "$cfg" "$wl${k}l" ok "$file" "$NOTE"
				record "$cfg" "$wl${k}x" ok "$file" "$NOTE"
			     done ;;
			*) record "$cfg" "$wl" ok "$file" "$NOTE" ;;
			esac
		done
		log "$cfg $*: done in $((SECONDS - t)) s${NOTE:+ ($NOTE)}"
	else
		for wl; do record "$cfg" "$wl" error "$file" "$NOTE"; done
		log "$cfg $*: fio failed: $(tail -n 2 "$OUT/log/${file%.json}.err" | tr '\n' ' ')"
	fi
}

# expand WORKLOAD...: the workloads with "+W" as "W W.c".
expand() {
	local wl
	for wl; do
		case $wl in
		+*) echo "${wl#+} ${wl#+}.c" ;;
		*) echo "$wl" ;;
		esac
	done
}

run_config() {
	local cfg=$1 g=0 wl group=() all=() paired=0
	shift
	[[ " $* " == *" +"* ]] && paired=1
	# shellcheck disable=SC2046
	set -- $(expand "$@")
	DEV='' VIEW='' NOTE=''
	log "== $cfg"
	for wl; do [ "$wl" = "|" ] || all+=("$wl"); done
	if ! { "setup_$cfg" && { [ $paired = 0 ] || lin_add; }; } > "$OUT/log/$cfg.setup" 2>&1; then
		log "$cfg: setup failed: $(tail -n 2 "$OUT/log/$cfg.setup" | tr '\n' ' ')"
		for wl in "${all[@]}"; do record "$cfg" "$wl" error "" "setup failed"; done
		dm_cleanup
		return
	fi
	for wl in "$@" "|"; do
		if [ "$wl" != "|" ]; then
			group+=("$wl")
			continue
		fi
		g=$((g + 1))
		run_group "$cfg" "$g" "${group[@]}"
		group=()
	done
	dm_cleanup
	save_results
	return 0
}

# Cold tracking against dm-era (the target "bitmap tracking cold >= 1.0x
# dm-era"), run in turn: the single cold runs of era and bmcold above,
# minutes apart, gave ratios from 0.33x to 1.87x on this host over the
# stops. Here both devices sit over the origin disk at once, each is made
# cold again (dm-era recreated on zeroed metadata, the bitmap cleared) just
# before its own run, and they take turns four times, the order swapped
# every turn: era, bmcold; bmcold, era; era, bmcold; bmcold, era. The
# second run of a pair loses, whichever side it is (stop 27, 64 KiB:
# 0.87x with era first in every pair, 1.05x with bmcold first), so each
# side goes second as often as first. The report takes the median
# of the four ratios (the mean of the middle two). Then three turns at
# once: both made cold, one fio runs a job on each, as the warm targets'
# pairs with dm-linear do; the report takes the median of those three.
#
# Twice: with 64 KiB chunks (dm-era's 64 KiB blocks), where the random
# writes set every chunk of a small origin within the first seconds and
# the rest of the run is warm, and with 4 KiB chunks and blocks (cfg
# bmcold4k), where fio's random map writes no block twice in a pass, so
# every write of the run is a chunk's first. After each fleece-origin run
# coldset.tsv gets the bitmap's count of set chunks, which the report
# puts next to fio's count of writes: how many of them were first writes.
# fio's 0.5 s IOPS log of each run gives the report the first 2 s, the
# cold phase of the 64 KiB runs (most of their first writes fall in it).
scenario_coldpairs() {	# scenario_coldpairs CFG CHUNK
	local cfg=$1 chunk=$2 k side sides d file reset wl wls
	log "== cold tracking, in turn with dm-era, $chunk chunks"
	ERA_BLOCK=$(($(numfmt --from=iec "$chunk") / 512))
	if ! { setup_bmcold --chunk-size "$chunk" && reset_era; } \
			> "$OUT/log/coldpairs.setup" 2>&1; then
		log "coldpairs: setup failed: $(tail -n 2 "$OUT/log/coldpairs.setup" | tr '\n' ' ')"
		for k in 1 2 3 4; do
			record "$cfg" "randwrite.e$k" error "" "setup failed"
			record "$cfg" "randwrite.f$k" error "" "setup failed"
		done
		dm_cleanup
		return 0
	fi
	for k in 1 2 3 4; do
		sides="e f"
		[ $((k % 2)) = 0 ] && sides="f e"
		for side in $sides; do
			file=coldpairs.$cfg.$side$k.json
			case $side in
			e) d=/dev/mapper/era reset=reset_era ;;
			f) d=/dev/mapper/fo reset=reset_bmcold ;;
			esac
			if ! "$reset" >> "$OUT/log/coldpairs.setup" 2>&1; then
				record "$cfg" "randwrite.$side$k" error "" "reset failed"
				continue
			fi
			if FIO_LOG=$OUT/log/coldpairs.$cfg.$side$k \
					fio_group "$file" "$d" "" "randwrite.$side$k"; then
				record "$cfg" "randwrite.$side$k" ok "$file" ""
			else
				record "$cfg" "randwrite.$side$k" error "$file" ""
			fi
			[ "$side" = f ] && printf '%s\t%s\t%s\n' "$cfg" "randwrite.f$k" \
				"$(dmsetup status fo | awk '{ print $9 }')" >> "$OUT/coldset.tsv"
		done
	done
	# At once: both made cold, then one fio with a job on each, so that
	# both see the same host at the same moment (jobs WL.aNe on dm-era,
	# WL.aNf on fleece-origin; FIO_LOG_iops.1.log is era's, .2 fleece's).
	# With 64 KiB chunks also a sequential 4 KiB writer, which writes
	# each chunk 16 times in a row while its first write's round runs.
	wls=randwrite
	[ "$chunk" = 64K ] && wls="randwrite seqwrite4k"
	for wl in $wls; do
		for k in 1 2 3; do
			file=coldpairs.$cfg.$wl.a$k.json
			if ! { reset_era && reset_bmcold; } >> "$OUT/log/coldpairs.setup" 2>&1; then
				record "$cfg" "$wl.a${k}e" error "" "reset failed"
				record "$cfg" "$wl.a${k}f" error "" "reset failed"
				continue
			fi
			if FIO_LOG=$OUT/log/${file%.json} fio_group "$file" /dev/mapper/era \
					/dev/mapper/fo "$wl.a${k}e" "$wl.a${k}f"; then
				record "$cfg" "$wl.a${k}e" ok "$file" ""
				record "$cfg" "$wl.a${k}f" ok "$file" ""
			else
				record "$cfg" "$wl.a${k}e" error "$file" ""
				record "$cfg" "$wl.a${k}f" error "$file" ""
			fi
			printf '%s\t%s\t%s\n' "$cfg" "$wl.a${k}f" \
				"$(dmsetup status fo | awk '{ print $9 }')" >> "$OUT/coldset.tsv"
		done
	done
	log "coldpairs $chunk done"
	dm_cleanup
	save_results
	return 0
}

# ---------------------------------------------------------------------------
# Backup window: fio randwrite 4k qd16 on the origin while the whole view is
# backed up to /dev/nullb0 (null_blk: a block device that drops writes).

wset() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$OUT/window.tsv"; }

# poll_status DEV FIELD OUTFILE: field FIELD of DEV's status every 0.5 s.
poll_status() {
	while :; do
		dmsetup status "$1" 2>/dev/null | awk -v f="$2" '{ print $f }'
		sleep 0.5
	done > "$3"
}

# peak FILE: the highest "used/total" in a poll file, as "used total".
peak() {
	awk -F/ '$1 ~ /^[0-9]+$/ { if ($1 + 0 > m) m = $1 + 0; t = $2 } END { print m + 0, t + 0 }' "$1"
}

# window_run NAME DEV CMD...: fio randwrite on DEV; 1 s later CMD (the
# backup); when it ends, stop fio (SIGINT: fio still writes its JSON).
# fio's IOPS log (0.5 s averages) gives the IOPS during the backup.
window_run() {
	local name=$1 dev=$2 fpid r t_start t_end
	shift 2
	wset "$name" fio_launch "$(date +%s.%N)"
	fio --name=randwrite --filename="$dev" --ioengine=libaio --direct=1 \
		--rw=randwrite --bs=4k --iodepth=16 --size=100% --io_size=1T \
		--time_based --runtime=900 --write_iops_log="$OUT/log/$name" \
		--log_avg_msec=500 --output-format=json \
		--output="$OUT/fio/window.$name.json" 2> "$OUT/log/window.$name.err" < /dev/null &
	fpid=$!
	sleep 1
	t_start=$(date +%s.%N)
	timeout -k 10 600 "$@" > "$OUT/log/window.$name.backup" 2>&1
	r=$?
	t_end=$(date +%s.%N)
	kill -INT "$fpid" 2>/dev/null
	wait "$fpid"
	wset "$name" backup_rc "$r"
	wset "$name" backup_start "$t_start"
	wset "$name" backup_end "$t_end"
	return $r
}

window_base() {	# window_base NAME DEV: no backup, RT seconds
	if fio_group "window.$1.json" "$2" "" randwrite; then
		wset "$1" fio ok
	else
		wset "$1" fio error
	fi
}

window_fleece() {	# window_fleece NAME [--no-release]
	local name=$1 ppid used total
	shift
	view_new v "$SCRATCH" || { wset "$name" error "snapshot failed"; return; }
	wset "$name" chunk_bytes $(( $(dmsetup status v | awk '{ print $5 }') * 512 ))
	poll_status v 6 "$OUT/log/window.$name.poll" &
	ppid=$!
	window_run "$name" /dev/mapper/fo "$FLEECECTL" backup v --to /dev/nullb0 --quiet "$@"
	kill "$ppid" 2>/dev/null
	wait "$ppid" 2>/dev/null
	read -r used total <<< "$(peak "$OUT/log/window.$name.poll")"
	wset "$name" peak_used "$used"
	wset "$name" total "$total"
	wset "$name" status_end "$(dmsetup status v)"
	wset "$name" fio ok
	fctl release v
}

window_snap() {	# window_snap NAME
	local name=$1 ppid used total
	snap_new 128 || { wset "$name" error "snapshot failed"; return; }
	wset "$name" chunk_bytes 512	# dm-snapshot counts sectors
	poll_status snap 4 "$OUT/log/window.$name.poll" &
	ppid=$!
	window_run "$name" /dev/mapper/so dd if=/dev/mapper/snap of=/dev/nullb0 \
		bs=1M iflag=direct oflag=direct
	kill "$ppid" 2>/dev/null
	wait "$ppid" 2>/dev/null
	read -r used total <<< "$(peak "$OUT/log/window.$name.poll")"
	wset "$name" peak_used "$used"
	wset "$name" total "$total"
	wset "$name" status_end "$(dmsetup status snap)"
	wset "$name" fio ok
	dmsetup remove snap
}

# The origin disk's I/O scheduler for the window: one with priorities
# (BFQ, else mq-deadline), as on a host where the backup's idle priority
# (fleecectl backup --ioprio, idle by default) is meant to count.
window_sched() {
	local q=/sys/block/$(basename "$(readlink -f "$ORIGIN")")/queue/scheduler s
	modprobe bfq 2>/dev/null
	for s in bfq mq-deadline; do
		echo $s > "$q" 2>/dev/null && break
	done
	wset all scheduler "$(sed 's/.*\[\(.*\)\].*/\1/' "$q")"
}

scenario_window() {
	log "== backup window"
	wset all size_bytes $((SZ * 512))
	window_sched
	if fo_new > "$OUT/log/window.setup" 2>&1; then
		window_base fleece-nobackup /dev/mapper/fo
		# The backup's read load alone: the origin disk read whole
		# next to the same fio, no view, nothing copied.
		window_run fleece-readload /dev/mapper/fo dd if="$ORIGIN" \
			of=/dev/nullb0 bs=1M iflag=direct oflag=direct
		wset fleece-readload fio ok
		window_fleece fleece-release
		log "window: fleece with release done"
		# The same at the applications' priority: what idle saves.
		window_fleece fleece-release-be --ioprio best-effort
		log "window: fleece with release, --ioprio best-effort done"
		window_fleece fleece-norelease --no-release
		log "window: fleece --no-release done"
		# A backup paced at a fifth of the io profile's 100 MiB/s:
		# less read load, but a longer window for copies.
		window_fleece fleece-release-rl --rate-limit 20M
		log "window: fleece with release, --rate-limit 20M done"
		# Release in 8 MiB batches: 1/64 of this small origin, as
		# the default 64 MiB is of a 4 GiB one. Only in the cpu
		# profile: the io one needs the time to stay under 15 min.
		if [ "$PROFILE" = cpu ]; then
			window_fleece fleece-release-b8 --batch 8M
			log "window: fleece with release, 8 MiB batches done"
		fi
	else
		wset fleece-nobackup error "setup failed"
	fi
	dm_cleanup
	if snap_base > "$OUT/log/window.snap.setup" 2>&1; then
		window_base snap-nobackup /dev/mapper/so
		window_snap snap-dd
		log "window: dm-snapshot done"
	else
		wset snap-nobackup error "setup failed"
	fi
	dm_cleanup
	save_results
	return 0
}

# ---------------------------------------------------------------------------
# Backup throughput: how fast fleecectl backup reads a quiet view, against
# fio's sequential read of the raw origin (1M, qd4: as many reads in flight
# as backup's default --jobs) just before and just after; and what --verify
# costs, both writing to a memory-backed null_blk (it reads back what was
# written: /dev/nullb0 does not).

bset() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$OUT/backup.tsv"; }

# timed NAME CMD...: CMD's wall time in seconds, into backup.tsv.
timed() {
	local name=$1 t0 r
	shift
	t0=$(date +%s.%N)
	"$@" > "$OUT/log/backup.$name" 2>&1
	r=$?
	bset "$name" rc "$r"
	bset "$name" secs "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
	# The copy's own rate, from its summary line ("... in 5.2 s, 98.1
	# MiB/s"): without the command's start (the view's status, opening and
	# probing the output), as fio's rate is without its own.
	bset "$name" copy_mibs "$(sed -n 's/^backup .* s, \([0-9.]*\) MiB\/s$/\1/p' \
		"$OUT/log/backup.$name" | head -n1)"
	return $r
}

raw_read() {	# raw_read NAME: fio read 1M qd4 of the raw origin, RT seconds
	fio --name=seqread --filename="$ORIGIN" --ioengine=libaio --direct=1 --rw=read \
		--bs=1M --iodepth=4 --time_based --runtime="$RT" --output-format=json \
		--output="$OUT/fio/backup.$1.json" > /dev/null 2>&1 < /dev/null
	bset "$1" fio "$?"
}

membacked_nullb() {	# a null_blk that keeps what is written: /dev/nullb1
	local c=/sys/kernel/config/nullb/nullb1
	mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
	mkdir -p $c && echo $((SZ / 2048 + 1)) > $c/size && echo 1 > $c/memory_backed &&
		echo 1 > $c/power && [ -b /dev/nullb1 ]
}

scenario_backup() {
	log "== backup throughput"
	bset all size_bytes $((SZ * 512))
	# Data everywhere: no shortcut for zeroes on either side.
	fio --name=fill --filename="$ORIGIN" --ioengine=libaio --direct=1 --rw=write \
		--bs=1M --iodepth=4 --refill_buffers > /dev/null 2>&1 < /dev/null
	fo_new > "$OUT/log/backup.setup" 2>&1 && view_new v "$SCRATCH" ||
		{ bset all error "setup failed"; dm_cleanup; return 0; }
	raw_read raw1
	timed jobs4 "$FLEECECTL" backup v --to /dev/nullb0 --no-release --quiet
	timed jobs1 "$FLEECECTL" backup v --to /dev/nullb0 --no-release --quiet --jobs 1
	raw_read raw2
	if membacked_nullb; then
		timed mem "$FLEECECTL" backup v --to /dev/nullb1 --no-release --force --quiet
		timed memverify "$FLEECECTL" backup v --to /dev/nullb1 --no-release --force \
			--quiet --verify
		timed mem2 "$FLEECECTL" backup v --to /dev/nullb1 --no-release --force --quiet
		timed memverify2 "$FLEECECTL" backup v --to /dev/nullb1 --no-release --force \
			--quiet --verify
	else
		bset mem error "no memory-backed null_blk"
	fi
	dm_cleanup
	rmdir /sys/kernel/config/nullb/nullb1 2>/dev/null
	log "backup throughput done"
	save_results
	return 0
}

# ---------------------------------------------------------------------------
# Cold writes behind a copy (issue 16 items 5 and 6): slowscratch and
# seqwrite. Each row: a fresh target over an origin full of data, fio on
# the origin side for RT seconds, one fio per row. 64 KiB chunks (fleecectl's
# default, as in sess64k, snap64k and the backup window) for fleece and
# dm-snapshot alike. Around each fio the block layer's counters of the
# origin and scratch disks (/sys/block/X/stat), and the view's status, are
# recorded: $OUT/slow.tsv (ROW <tab> KEY <tab> VALUE), fio JSON in
# $OUT/fio/ROW.json and its IOPS log (1 s averages) in $OUT/log/ROW_iops.1.log.
# Rows: slow.fleece-buf ..., seq.BS.qdN.KIND.

sset() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$OUT/slow.tsv"; }

CBUF=/sys/module/dm_fleece/parameters/copy_buffer_kb
SLOW_BURST=800
SLOW_BURST_KB=65536

disk_stat() { cat "/sys/block/$(basename "$(readlink -f "$1")")/stat"; }

# slow_fill: data in every origin block (no zeroes), once per run.
slow_fill() {
	[ -e "$OUT/log/slow.filled" ] && return 0
	fio --name=fill --filename="$ORIGIN" --ioengine=libaio --direct=1 --rw=write \
		--bs=1M --iodepth=4 --refill_buffers > /dev/null 2>> "$OUT/log/slow.err" < /dev/null &&
		: > "$OUT/log/slow.filled"
}

# slow_target ROW KIND SCRATCH CHUNK_SECTORS: make the device under test
# and print its path. KIND: fleece (view v on SCRATCH, with the copy buffer
# as it is), snap (dm-snapshot N on SCRATCH), linear.
slow_target() {
	local row=$1 kind=$2 s=$3 cs=$4
	case $kind in
	fleece)
		fo_new --chunk-size $((cs / 2))K && view_new v "$s" || return 1
		sset "$row" copy_buffer_kb "$(cat "$CBUF")"
		sset "$row" status_start "$(dmsetup status v)"
		echo /dev/mapper/fo ;;
	snap)
		snap_base && dmsetup suspend so &&
		dmsetup create snap --table "0 $SZ snapshot /dev/mapper/base $s N $cs" &&
		dmsetup resume so || return 1
		echo /dev/mapper/so ;;
	linear)
		dmsetup create lin2 --table "0 $SZ linear $ORIGIN 0" || return 1
		echo /dev/mapper/lin2 ;;
	*) return 1 ;;
	esac
}

# slow_row ROW KIND SCRATCH CHUNK_SECTORS FIO_ARG...: one row, from a fresh
# target to dm_cleanup. fio runs for RT seconds, or as SLOW_TIME says
# (fio options, e.g. a number of IOs).
slow_row() {
	local row=$1 kind=$2 s=$3 cs=$4 dev r t
	shift 4
	dm_cleanup
	dev=$(slow_target "$row" "$kind" "$s" "$cs" 2>> "$OUT/log/slow.setup") ||
		{ sset "$row" error "setup failed"; dm_cleanup; return 1; }
	sset "$row" kind "$kind"
	sset "$row" origin_stat_start "$(disk_stat "$ORIGIN")"
	sset "$row" scratch_stat_start "$(disk_stat "$s")"
	sset "$row" scratch_nr_requests "$(cat "/sys/block/$(basename "$(readlink -f "$s")")/queue/nr_requests")"
	# shellcheck disable=SC2086
	timeout -k 10 $((RT + 120)) fio --name=w --filename="$dev" --ioengine=libaio \
		--direct=1 --size=100% ${SLOW_TIME:---io_size=1T --time_based --runtime=$RT} \
		--write_iops_log="$OUT/log/$row" --log_avg_msec=1000 \
		--output-format=json --output="$OUT/fio/$row.json" "$@" \
		2> "$OUT/log/$row.err" < /dev/null
	r=$?
	sset "$row" fio_rc "$r"
	case $kind in
	fleece)
		# The copies still in flight when fio ended (behind the copy
		# buffer) are counted in "copied" once they land: wait.
		sset "$row" status_fio_end "$(dmsetup status v)"
		t=$(date +%s.%N)
		for _ in $(seq 300); do
			[ "$(dmsetup status v | awk '{ print $13 }')" = 0 ] && break
			sleep 0.2
		done
		sset "$row" drain_secs "$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
		sset "$row" status_end "$(dmsetup status v)" ;;
	snap) sset "$row" status_end "$(dmsetup status snap)" ;;
	esac
	# Removing the devices waits for the copies still in flight: the
	# counters then hold every copy the writes caused.
	dm_cleanup
	sset "$row" origin_stat_end "$(disk_stat "$ORIGIN")"
	sset "$row" scratch_stat_end "$(disk_stat "$s")"
	return $r
}

# slowscratch: cold randwrite 4k qd16 with the view's scratch (or the
# snapshot's COW) on slowscratch; fleece with the copy buffer (default)
# and without (copy_buffer_kb=0, read when fleece-origin is created),
# dm-snapshot, and dm-linear with no snapshot as the reference; 64K chunks
# (the other scenarios'). Then, for the copy buffer's other bound (2048
# chunks in flight rather than 128), fleece with the buffer and dm-snapshot
# with 4K chunks.
scenario_slowscratch() {
	local kb row cs
	log "== slow scratch"
	slow_fill || { sset all error "fill failed"; return 0; }
	kb=$(cat "$CBUF") || { sset all error "no $CBUF"; return 0; }
	sset all size_bytes $((SZ * 512))
	sset all copy_buffer_kb_default "$kb"
	for row in fleece-buf snap fleece-nobuf linear fleece-buf-4k snap-4k; do
		case $row in
		fleece-nobuf) echo 0 > "$CBUF" ;;
		*) echo "$kb" > "$CBUF" ;;
		esac
		cs=128
		[ "${row%-4k}" != "$row" ] && cs=8
		slow_row "slow.$row" "${row%%-*}" "$SLOW" $cs --rw=randwrite --bs=4k --iodepth=16
		log "slowscratch $row done"
	done
	# A burst that fits in the buffer: SLOW_BURST random 4K writes (800:
	# about 760 chunks of 64 KiB) with a buffer of SLOW_BURST_KB (64 MiB,
	# 1024 chunks), against dm-snapshot with the same writes (fio's seed).
	# In steady state above, every copy must reach the slow scratch and the
	# buffer cannot raise the rate; this is what it is for.
	sset all burst_ios "$SLOW_BURST"
	for row in fleece-burst snap-burst; do
		echo "$SLOW_BURST_KB" > "$CBUF"
		SLOW_TIME="--number_ios=$SLOW_BURST" \
			slow_row "slow.$row" "${row%%-*}" "$SLOW" 128 --rw=randwrite --bs=4k --iodepth=16
		log "slowscratch $row done"
	done
	echo "$kb" > "$CBUF"
	save_results
	return 0
}

# seqwrite: a sequential writer from offset 0 (bs 4k and 64k, qd 1 and 16)
# with a cold view on the ordinary scratch (throttled like the origin),
# against dm-snapshot (64K chunks, same COW disk) and dm-linear, the three
# one right after the other for each workload.
scenario_seqwrite() {
	local bs qd kind
	log "== sequential writer"
	slow_fill || { sset all error "fill failed"; return 0; }
	sset all size_bytes $((SZ * 512))
	for bs in 4k 64k; do
		for qd in 1 16; do
			for kind in fleece snap linear; do
				slow_row "seq.$bs.qd$qd.$kind" "$kind" "$SCRATCH" 128 \
					--rw=write --bs="$bs" --iodepth="$qd"
			done
			log "seqwrite bs=$bs qd$qd done"
		done
	done
	save_results
	return 0
}

# ---------------------------------------------------------------------------
# Kernel memory per session: slab growth while chunks are preserved.

mset() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$OUT/memory.tsv"; }

# mem_snap: "slab_kib radix_tree_node_kib vmalloc_kib", the page cache
# dropped (not dentries and inodes: every command would then walk the 9p
# root again, and that takes long here).
mem_snap() {
	sync
	echo 1 > /proc/sys/vm/drop_caches
	awk '/^Slab:/ { s = $2 } /^VmallocUsed:/ { v = $2 }
	     $1 == "radix_tree_node" { r = int($3 * $4 / 1024) }
	     END { print s + 0, r + 0, v + 0 }' /proc/meminfo /proc/slabinfo
}

# mem_case NAME FIO_ARG...: a fresh session on a fleece-origin with 4 KiB
# chunks, then preserve chunks by writing the origin as the fio args say.
mem_case() {
	local name=$1 b c a
	shift
	fo_new --chunk-size 4K && b=$(mem_snap) && view_new v "$SCRATCH" &&
	c=$(mem_snap) &&
	timeout -k 10 300 fio --name=mem --filename=/dev/mapper/fo --ioengine=libaio \
		--direct=1 --iodepth=16 "$@" --output-format=terse \
		> /dev/null 2>> "$OUT/log/memory.err" < /dev/null &&
	a=$(mem_snap) || { mset "$name" error failed; dm_cleanup; return; }
	mset "$name" chunk_bytes $(( $(dmsetup status v | awk '{ print $5 }') * 512 ))
	mset "$name" preserved "$(dmsetup status v | awk '{ print $7 }')"
	mset "$name" before "$b"
	mset "$name" created "$c"
	mset "$name" after "$a"
	dm_cleanup
	log "memory: $name done"
}

scenario_memory() {
	log "== kernel memory per session"
	# dense: 128 MiB in a row; sparse: one 4 KiB chunk in every 256 KiB
	# (each alone in its xarray node of 64 chunks: the worst case)
	mem_case dense-4k --rw=write --bs=1M --size=128M
	mem_case sparse-4k --rw=write:252k --bs=4k --size=100% --number_ios=$((SZ / 512))
	log "memory done"
	save_results
	return 0
}

# ---------------------------------------------------------------------------

modprobe dm-mod && modprobe dm-snapshot && modprobe dm-era &&
modprobe null_blk nr_devices=1 gb=4 && insmod "$MODULE" || {
	log "cannot load the modules"
	save_results
	exit 1
}
SZ=$(blockdev --getsz "$ORIGIN")
{
	echo "profile $PROFILE"
	echo "runtime $RT"
	echo "kernel $(uname -r)"
	echo "cpus $(nproc)"
	echo "mem_kib $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
	echo "origin_bytes $((SZ * 512))"
	echo "fio $(fio --version)"
} > "$OUT/info.txt"
log "profile $PROFILE, $RT s per workload, origin $((SZ / 2048)) MiB"

# Each in a subshell: a configuration that dies (a bug here, set -u) loses
# its own cells, recorded as errors, and the run goes on.
for c in "${CONFIGS[@]}"; do
	# shellcheck disable=SC2086
	set -- $c
	wanted "$1" || continue
	( run_config "$@" ) && continue
	log "$1: aborted"
	cfg=$1
	shift
	# shellcheck disable=SC2046
	for wl in $(expand "$@"); do
		[ "$wl" = "|" ] && continue
		grep -q "^$cfg	$wl	" "$MANIFEST" || record "$cfg" "$wl" error "" "aborted"
	done
	dm_cleanup
done
for c in "bmcold 64K" "bmcold4k 4K"; do
	# shellcheck disable=SC2086
	if wanted coldpairs && ! ( scenario_coldpairs $c ); then
		log "cold tracking in turn, $c: aborted"
		dm_cleanup
	fi
done
if wanted window && ! ( scenario_window ); then
	log "backup window: aborted"
	dm_cleanup
fi
if wanted backup && ! ( scenario_backup ); then
	log "backup throughput: aborted"
	dm_cleanup
fi
if wanted slowscratch && ! ( scenario_slowscratch ); then
	log "slow scratch: aborted"
	dm_cleanup
fi
if wanted seqwrite && ! ( scenario_seqwrite ); then
	log "sequential writer: aborted"
	dm_cleanup
fi
if wanted memory && ! ( scenario_memory ); then
	log "memory: aborted"
	dm_cleanup
fi
echo "elapsed $((SECONDS - T0))" >> "$OUT/info.txt"
save_results
log "done"

#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# tests/perf/bench-scale.sh: the scale profile (make bench PROFILE=scale),
# run inside the test VM by tests/perf/bench (see there, and
# Documentation/testing.rst, "Scale profile").
#
# What does not grow with IO but with the origin's size: activation, status,
# bitmap memory, change lists, view creation and removal, on a sparse origin
# of FLEECE_SCALE_TIB TiB (default 16) with 64 KiB chunks, next to dm-era
# (64 KiB blocks) on the same disk in the same run; then the same
# fleece-origin operations on a FLEECE_SCALE_TIB/2 TiB origin with 4 KiB
# chunks (2^31 chunks at 8 TiB), when the VM has the memory for it.
#
# Disks (/dev/disk/by-id/virtio-NAME; all sparse files on the host):
#   big1, big2  half of the origin each (a host ext4 file stops short of
#               16 TiB): dm-linear "big" joins them; big1 alone is the
#               4 KiB-chunk origin, and dm-linear "small" the first GiB of
#               big2 (the 1 GiB origin the status is compared with)
#   meta        fleece-origin metadata of the big origin (64 KiB chunks)
#   meta4k      fleece-origin metadata of big1 with 4 KiB chunks
#   metas       fleece-origin metadata of the 1 GiB origin
#   erameta     dm-era metadata
#   scratch     the views' scratch device
#   results     raw: gets a tar of everything in $OUT
#
# Every figure is one line of $OUT/scale.tsv: KEY <tab> VALUE (times in
# microseconds, memory in KiB); tests/perf/report makes the table. A step
# that fails is logged and recorded as "error", and the run goes on.
#
# Environment (tests/vm/run passes FLEECE_*):
#   FLEECE_SCALE_TIB      the origin's size in TiB (default 16; a power of two)
#   FLEECE_SCALE_WRITES   random 4 KiB writes spread over it (default 4000)
#   FLEECE_SCALE_FRAG     chunks set, every other one, for the change list
#                         (default 65536)
#   FLEECE_SCALE_N        dmsetup calls per status latency median (default
#                         11; the ioctl alone: 20 times as many)
#   FLEECE_SCALE_VIEWS    views made in turn with dm-era's, for the medians
#                         of the view rows (default 5)
#   FLEECE_BENCH_ONLY     "64k", "4k" or both (default both)
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
MODULE=${FLEECE_BENCH_MODULE:-$top/drivers/md/dm-fleece.ko}
FLEECECTL=${FLEECE_BENCH_FLEECECTL:-$top/userspace/fleecectl}
TIB=${FLEECE_SCALE_TIB:-16}
WRITES=${FLEECE_SCALE_WRITES:-4000}
FRAG=${FLEECE_SCALE_FRAG:-65536}
N=${FLEECE_SCALE_N:-11}
VIEWS=${FLEECE_SCALE_VIEWS:-5}
ONLY=${FLEECE_BENCH_ONLY:-}
PY=/usr/bin/python3

id=/dev/disk/by-id/virtio
BIG1=$id-big1
BIG2=$id-big2
META=$id-meta
META4K=$id-meta4k
METAS=$id-metas
ERAMETA=$id-erameta
SCRATCH=$id-scratch
RESULTS=$id-results
BIG=/dev/mapper/big
SMALL=/dev/mapper/small

OUT=/tmp/bench
rm -rf "$OUT"
mkdir -p "$OUT/log"
: > "$OUT/cells.tsv"
: > "$OUT/scale.tsv"
T0=$SECONDS

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }
save_results() { tar -C "$OUT" -cf "$RESULTS" . 2>/dev/null && sync; }
sset() { printf '%s\t%s\n' "$1" "$2" >> "$OUT/scale.tsv"; }
wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# Microseconds since the epoch, with no fork ($EPOCHREALTIME: 6 decimals).
us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# timed KEY CMD...: CMD's wall time in microseconds as KEY ("error" if it
# fails; its output in log/KEY).
timed() {
	local key=$1 t0 t1 r
	shift
	t0=$EPOCHREALTIME
	"$@" > "$OUT/log/$key" 2>&1
	r=$?
	t1=$EPOCHREALTIME
	if [ $r = 0 ]; then
		sset "$key" $(( ${t1/./} - ${t0/./} ))
	else
		sset "$key" error
		log "$key failed: $(tail -n 2 "$OUT/log/$key" | tr '\n' ' ')"
	fi
	return $r
}

# mem_snap: "vmalloc_kib slab_kib", the page cache dropped first.
mem_snap() {
	sync
	echo 1 > /proc/sys/vm/drop_caches
	awk '/^VmallocUsed:/ { v = $2 } /^Slab:/ { s = $2 } END { print v + 0, s + 0 }' /proc/meminfo
}
# mem_delta KEY BEFORE AFTER [DIV]: the growth of vmalloc and slab, KiB.
mem_delta() {
	local b a d=${4:-1}
	read -r -a b <<< "$2"
	read -r -a a <<< "$3"
	sset "$1" "$(( (a[0] - b[0]) / d )) $(( (a[1] - b[1]) / d ))"
}

dm_cleanup() {
	local d
	for _ in 1 2 3; do
		d=$(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }')
		[ -z "$d" ] && return 0
		# views first, then origins and dm-era, the linear devices last
		for d in $(printf '%s\n' $d | grep -v -x -e big -e small) big small; do
			dmsetup info "$d" > /dev/null 2>&1 || continue
			dmsetup resume "$d" > /dev/null 2>&1
			dmsetup remove --retry "$d" > /dev/null 2>&1
		done
	done
}

# The O_DIRECT writer (or reader: r): 4 KiB writes at one offset in a
# loop, as fast as they complete; every gap between two completions over
# 2 ms goes to FILE ("end_time gap", seconds). What an application feels of
# a suspend: the writer also waits for copies and bits, the reader (reads
# never do) for the suspend alone.
cat > "$OUT/writer.py" <<'EOF'
import mmap, os, signal, sys, time
dev, off, out, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
fd = os.open(dev, (os.O_RDONLY if mode == "r" else os.O_WRONLY) | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
buf.write(b"w" * 4096)
io = os.preadv if mode == "r" else os.pwritev
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
gaps, n = [], 0
io(fd, [buf], off)
last = time.time()
open(out + ".ready", "w").close()
while not stop:
    io(fd, [buf], off)
    now = time.time()
    if now - last > 0.002:
        gaps.append((now, now - last))
    last = now
    n += 1
with open(out, "w") as f:
    f.write("n %d\n" % n)
    for t, g in gaps:
        f.write("%.6f %.6f\n" % (t, g))
EOF

# The DM_TABLE_STATUS ioctl, as dmsetup status makes it, N times in a row
# for each device named, interleaved; prints each one's median in us.
cat > "$OUT/status.py" <<'EOF'
import fcntl, os, struct, sys, time
n, names = int(sys.argv[1]), sys.argv[2:]
SIZE = 16384
REQ = (3 << 30) | (312 << 16) | (0xfd << 8) | 12     # DM_TABLE_STATUS
fd = os.open("/dev/mapper/control", os.O_RDWR)
def call(name):
    b = bytearray(SIZE)
    struct.pack_into("=3III", b, 0, 4, 0, 0, SIZE, 312)
    b[48:48 + len(name)] = name.encode()
    t = time.perf_counter()
    fcntl.ioctl(fd, REQ, b, True)
    return (time.perf_counter() - t) * 1e6
res = {m: [] for m in names}
for _ in range(n):
    for m in names:
        res[m].append(call(m))
for m in names:
    v = sorted(res[m])
    print(m, "%.0f" % v[len(v) // 2])
EOF

# writer_start DEV NAME; writer_stop: the writer above on DEV at offset 0,
# and the reader at 1 MiB (another chunk).
writer_start() {
	WFILE=$OUT/log/writer.$2
	RFILE=$OUT/log/reader.$2
	rm -f "$WFILE" "$WFILE.ready" "$RFILE" "$RFILE.ready"
	"$PY" "$OUT/writer.py" "$1" 0 "$WFILE" w &
	WPID=$!
	"$PY" "$OUT/writer.py" "$1" 1048576 "$RFILE" r &
	RPID=$!
	for _ in $(seq 300); do
		[ -e "$WFILE.ready" ] && [ -e "$RFILE.ready" ] && break
		sleep 0.1
	done
	[ -e "$WFILE.ready" ] && [ -e "$RFILE.ready" ] ||
		{ log "writer on $1 did not start"; writer_stop; return 1; }
}
writer_stop() {
	kill -TERM "$WPID" "$RPID" 2>/dev/null
	wait "$WPID" "$RPID" 2>/dev/null
}
# max_gap FILE FROM_US TO_US: the longest gap (us) of the writer whose end
# falls between FROM and TO (microseconds since the epoch).
max_gap() {
	awk -v a="$2" -v b="$3" '$1 != "n" { t = $1 * 1e6
		if (t >= a && t <= b && $2 > m) m = $2 } END { printf "%d\n", m * 1e6 }' "$1"
}

# gap_around KEY DEV CMD...: CMD timed as KEY while the writer writes DEV
# and the reader reads it; KEY_gap: the writer's longest gap from CMD's
# start to 0.5 s after its end; KEY_base: its longest gap in the 2 s before
# CMD (no CMD: the noise); KEY_rgap, KEY_rbase: the reader's.
gap_around() {
	local key=$1 dev=$2 t0 t1 r
	shift 2
	writer_start "$dev" "$key" || { sset "$key" error; return 1; }
	sleep 2.5
	t0=$(us)
	timed "$key" "$@"
	r=$?
	t1=$(us)
	sleep 1
	writer_stop
	sset "${key}_base" "$(max_gap "$WFILE" $((t0 - 2000000)) "$t0")"
	sset "${key}_gap" "$(max_gap "$WFILE" "$t0" $((t1 + 500000)))"
	sset "${key}_writes" "$(awk '$1 == "n" { print $2 }' "$WFILE")"
	sset "${key}_rbase" "$(max_gap "$RFILE" $((t0 - 2000000)) "$t0")"
	sset "${key}_rgap" "$(max_gap "$RFILE" "$t0" $((t1 + 500000)))"
	sset "${key}_reads" "$(awk '$1 == "n" { print $2 }' "$RFILE")"
	return $r
}

# suspended_for KEY: KEY_susp, how long fleecectl snapshot -v (logged in
# log/KEY) says the origin was suspended, in us.
suspended_for() {
	local ms
	ms=$(sed -n 's/.*suspended for \([0-9.]*\) ms.*/\1/p' "$OUT/log/$1" | head -n 1)
	sset "${1}_susp" "$(awk -v m="${ms:-x}" 'BEGIN { if (m == "x") print "error"; else printf "%d\n", m * 1000 }')"
}

# status_dmsetup KEY DEV...: median over N calls of `dmsetup status DEV`,
# the devices interleaved (the same host load for each).
status_dmsetup() {
	local key=$1 i d t0 t1
	shift
	for d; do : > "$OUT/log/st.$d"; done
	for i in $(seq "$N"); do
		for d; do
			t0=$EPOCHREALTIME
			dmsetup status "$d" > /dev/null
			t1=$EPOCHREALTIME
			echo $(( ${t1/./} - ${t0/./} )) >> "$OUT/log/st.$d"
		done
	done
	for d; do
		sset "${key}_$d" "$(sort -n "$OUT/log/st.$d" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
	done
}
status_ioctl() {	# status_ioctl KEY DEV...: the same, the ioctl alone, 20N calls
	local key=$1 m v
	shift
	"$PY" "$OUT/status.py" $((20 * N)) "$@" > "$OUT/log/$key.ioctl" 2>&1 || {
		sset "$key" error; return 1; }
	while read -r m v; do sset "${key}_$m" "$v"; done < "$OUT/log/$key.ioctl"
}

# spread DEV COUNT SEED: COUNT random 4 KiB writes over all of DEV.
spread() {
	fio --name=spread --filename="$1" --ioengine=libaio --direct=1 --rw=randwrite \
		--bs=4k --iodepth=32 --size=100% --number_ios="$2" --norandommap \
		--randrepeat=0 --randseed="$3" --output-format=terse < /dev/null
}

# frag DEV CHUNK_BYTES COUNT: COUNT chunks set, every other one, from 0.
frag() {
	fio --name=frag --filename="$1" --ioengine=libaio --direct=1 \
		--rw=write:$(($2 * 2 - 4096)) --bs=4k --iodepth=32 \
		--size=$(($2 * 2 * $3)) --output-format=terse < /dev/null
}

# fo_table DEV META CHUNK_SECTORS [FEATURE...]: a fleece-origin's whole table
fo_table() {
	local dev=$1 meta=$2 cs=$3
	shift 3
	echo "0 $(blockdev --getsz "$dev") fleece-origin $dev $meta $cs${1:+ $# $*}"
}

# ---------------------------------------------------------------------------
# 64 KiB chunks, the whole origin, dm-era next to it.

scale_64k() {
	local sz m0 m1 i b
	log "== ${TIB} TiB origin, 64 KiB chunks, and dm-era"
	sz=$(blockdev --getsz "$BIG")
	sset big_bytes $((sz * 512))
	# The random writes below, once on the bare device: a first write to a
	# hole of the host's sparse file allocates, a cost that would fall on
	# whichever target wrote there first.
	spread "$BIG" "$WRITES" 1 > /dev/null && spread "$BIG" "$WRITES" 2 > /dev/null &&
	spread "$BIG" "$WRITES" 3 > /dev/null || log "warming the random writes' blocks failed"

	# Activation on fresh (all-zero) metadata: fleece-origin checks that
	# its whole area reads as zeroes; dm-era formats its metadata.
	m0=$(mem_snap)
	timed fo_act_first dmsetup create fo --table "$(fo_table "$BIG" "$META" 128)" ||
		return 1
	m1=$(mem_snap)
	mem_delta fo_mem_origin "$m0" "$m1"
	timed era_act_first dmsetup create era --table "0 $sz era $ERAMETA $BIG 128"
	mem_delta era_mem "$m1" "$(mem_snap)"
	log "activation on fresh metadata done"

	# Eight persistent bitmaps: first one, and the cold tracking of one
	# bitmap against dm-era's one writeset, the same writes all over the
	# device on both; then seven more, and other writes in all eight.
	m0=$(mem_snap)
	timed fo_bitmap_add_0 dmsetup message fo 0 bitmap_add b0
	# The first random writes after the activations are slow whoever makes
	# them: 6.1-6.4 s for fleece-origin, for dm-era and for the bare
	# device alike when each was first (stop 23), 1.4-2.8 s for any run
	# after; waiting 40 s first does not help. So a warm-up on the bare
	# device (other chunks) takes that cost, then the pairs: twice, one
	# after the other.
	timed big_warm spread "$BIG" "$WRITES" 4
	timed fo_spread1 spread /dev/mapper/fo "$WRITES" 1
	timed era_spread spread /dev/mapper/era "$WRITES" 1
	timed fo_spread1b spread /dev/mapper/fo "$WRITES" 3
	timed era_spreadb spread /dev/mapper/era "$WRITES" 3
	for i in 1 2 3 4 5 6 7; do
		timed fo_bitmap_add_$i dmsetup message fo 0 bitmap_add b$i
	done
	mem_delta fo_mem_bitmap "$m0" "$(mem_snap)" 8
	sset fo_bitmaps "$(dmsetup status fo | awk '{ print $7 }')"
	timed fo_spread spread /dev/mapper/fo "$WRITES" 2
	timed fo_frag frag /dev/mapper/fo 65536 "$FRAG"
	sset fo_dirty "$(dmsetup status fo | awk '{ print $9 }')"
	log "writes done: $(dmsetup status fo | cut -c1-60)"

	# The 1 GiB origin with eight bitmaps, for the status.
	dmsetup create fs --table "$(fo_table "$SMALL" "$METAS" 128)" &&
	for i in 0 1 2 3 4 5 6 7; do dmsetup message fs 0 bitmap_add b$i || break; done &&
	spread /dev/mapper/fs "$WRITES" 1 > /dev/null ||
		log "the 1 GiB origin: setup failed"
	status_dmsetup status fo fs era
	status_ioctl status_ioctl fo fs era
	log "status done"

	# The change list of a fragmented bitmap: FRAG ranges.
	timed fo_changes "$FLEECECTL" changes fo b1
	sset fo_changes_ranges "$(grep -c . "$OUT/log/fo_changes")"
	sed -n '1,3p' "$OUT/log/fo_changes" > "$OUT/log/fo_changes.head"
	: > "$OUT/log/fo_changes"	# not kept: megabytes
	timed fo_changes_page dmsetup message fo 0 bitmap_changes b1
	sset fo_changes_page_ranges "$(awk '{ print NF - 1 }' "$OUT/log/fo_changes_page")"
	log "change list done"

	# A view, as fleecectl snapshot makes it (suspend, create, resume),
	# with an incremental backup of b0; dm-era's counterpart, a
	# checkpoint and a metadata snapshot.
	# VIEWS times in turn, each made, committed and removed: the stall
	# rows are single longest gaps, noisy on a TCG guest; the report
	# gives their medians. The first view freezes the spread's bits, the
	# next ones only what the writer wrote since.
	m0=$(mem_snap)
	for i in $(seq "$VIEWS"); do
		gap_around fo_view_$i /dev/mapper/fo "$FLEECECTL" snapshot -v fo \
			--scratch "$SCRATCH" --view v --bitmap b0
		suspended_for fo_view_$i
		[ "$i" = 1 ] && mem_delta fo_mem_session "$m0" "$(mem_snap)"
		timed fo_commit_$i dmsetup message v 0 commit
		timed fo_view_remove_$i dmsetup remove v
		gap_around era_view_$i /dev/mapper/era sh -c \
			'dmsetup message era 0 checkpoint && dmsetup message era 0 take_metadata_snap'
		timed era_view_remove_$i dmsetup message era 0 drop_metadata_snap
	done
	sset views "$VIEWS"
	log "views done"

	# Activation on existing metadata (eight bitmaps, written all over),
	# as after a reboot: clean_detach before the removal, no_gap in the
	# table, as the boot units do (without either, every bitmap is marked
	# untrusted: fleece-origin.rst, "Attach, detach and gaps").
	dmsetup message fo 0 clean_detach
	timed fo_remove dmsetup remove fo
	timed era_remove dmsetup remove era
	timed fo_act_existing dmsetup create fo --table "$(fo_table "$BIG" "$META" 128 no_gap)"
	timed era_act_existing dmsetup create era --table "0 $sz era $ERAMETA $BIG 128"
	sset fo_status_reloaded "$(dmsetup status fo | cut -d' ' -f4-)"
	log "activation on existing metadata done"
	return 0
}

# ---------------------------------------------------------------------------
# 4 KiB chunks on big1 (half the origin: 2^31 chunks at 8 TiB). dm-era
# cannot: it takes fewer than 2^31 blocks.

scale_4k() {
	local sz chunks need avail m0
	sz=$(blockdev --getsz "$BIG1")
	chunks=$((sz / 8))
	sset k4_bytes $((sz * 512))
	log "== $((sz >> 21)) GiB origin, 4 KiB chunks"
	# A persistent bitmap (2 bits per chunk), then a view of it: its
	# frozen set, the new bitmap (2 bits), the settled bitmap and the
	# one of chunks outside the frozen set: 7 bits per chunk, and 1 GiB
	# for the rest of the guest.
	need=$(( (chunks * 7 / 8 >> 10) + (1 << 20) ))
	avail=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
	sset k4_need_kib "$need"
	sset k4_avail_kib "$avail"
	if [ "$avail" -lt "$need" ]; then
		sset k4_skipped "needs $(( (need + (1 << 20) - 1) >> 20 )) GiB available, has $((avail >> 20))"
		log "4 KiB chunks skipped: needs $need KiB available, $avail KiB there"
		return 0
	fi
	m0=$(mem_snap)
	timed k4_act_first dmsetup create fo --table "$(fo_table "$BIG1" "$META4K" 8)" || return 1
	log "activation on fresh metadata done"
	m0=$(mem_snap)
	timed k4_bitmap_add dmsetup message fo 0 bitmap_add b0
	mem_delta k4_mem_bitmap "$m0" "$(mem_snap)"
	timed k4_spread spread /dev/mapper/fo "$WRITES" 1
	timed k4_frag frag /dev/mapper/fo 4096 "$FRAG"
	status_dmsetup k4_status fo
	status_ioctl k4_status_ioctl fo
	timed k4_changes "$FLEECECTL" changes fo b0
	sset k4_changes_ranges "$(grep -c . "$OUT/log/k4_changes")"
	: > "$OUT/log/k4_changes"
	m0=$(mem_snap)
	gap_around k4_view /dev/mapper/fo "$FLEECECTL" snapshot -v fo --scratch "$SCRATCH" \
		--view v --bitmap b0
	suspended_for k4_view
	mem_delta k4_mem_session "$m0" "$(mem_snap)"
	timed k4_commit dmsetup message v 0 commit
	timed k4_view_remove dmsetup remove v
	dmsetup message fo 0 clean_detach
	timed k4_remove dmsetup remove fo
	timed k4_act_existing dmsetup create fo --table "$(fo_table "$BIG1" "$META4K" 8 no_gap)"
	log "4 KiB chunks done"
	return 0
}

# ---------------------------------------------------------------------------

modprobe dm-mod && modprobe dm-era && insmod "$MODULE" || {
	log "cannot load the modules"
	save_results
	exit 1
}
s1=$(blockdev --getsz "$BIG1")
s2=$(blockdev --getsz "$BIG2")
dmsetup create big --table "0 $s1 linear $BIG1 0
$s1 $s2 linear $BIG2 0" &&
dmsetup create small --table "0 2097152 linear $BIG2 0" || {
	log "cannot create the linear devices"
	save_results
	exit 1
}
# What dmsetup costs by itself (exec from the 9p root, libdevmapper's
# setup): the median of N `dmsetup version`, which makes one ioctl.
for _ in $(seq "$N"); do
	t0=$EPOCHREALTIME
	dmsetup version > /dev/null
	t1=$EPOCHREALTIME
	echo $(( ${t1/./} - ${t0/./} ))
done | sort -n | awk '{ v[NR] = $1 } END { print "dmsetup_us", v[int((NR + 1) / 2)] }' > "$OUT/dmsetup.txt"
{
	cat "$OUT/dmsetup.txt"
	echo "profile scale"
	echo "kernel $(uname -r)"
	echo "cpus $(nproc)"
	echo "mem_kib $(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
	echo "origin_bytes $(($(blockdev --getsz "$BIG") * 512))"
	echo "writes $WRITES"
	echo "frag $FRAG"
	echo "status_n $N"
	echo "fio $(fio --version)"
} > "$OUT/info.txt"
log "scale: origin $(($(blockdev --getsz "$BIG") >> 21)) GiB, $WRITES spread writes, $FRAG fragments"

if wanted 64k && ! ( scale_64k ); then
	log "64 KiB chunks: aborted"
fi
dm_cleanup
save_results
if wanted 4k && ! ( scale_4k ); then
	log "4 KiB chunks: aborted"
fi
dm_cleanup
echo "elapsed $((SECONDS - T0))" >> "$OUT/info.txt"
save_results
log "done"
# The last drop_caches dropped sleep(1) from the page cache too: the VM's
# init runs it while the kernel powers off, when 9p may be gone already (an
# init that cannot exec it exits, and the kernel panics). Read it back now.
sleep 0.1

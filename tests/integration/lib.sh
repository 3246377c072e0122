# SPDX-License-Identifier: GPL-2.0
#
# Helpers for integration tests. Sourced by each test, which runs as root in
# the test VM (tests/vm/run) with the default disks:
#   $ORIGIN  1 GiB   /dev/disk/by-id/virtio-origin
#   $SCRATCH 512 MiB /dev/disk/by-id/virtio-scratch
#   $META    64 MiB  /dev/disk/by-id/virtio-meta
# A test prints what it does, calls fail() on the first wrong byte, and
# leaves no device-mapper device behind (the suite removes leftovers anyway).
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODULE=${FLEECE_MODULE:-$TOP/drivers/md/dm-fleece.ko}
FLEECECTL=$TOP/userspace/fleecectl
ORIGIN=/dev/disk/by-id/virtio-origin
SCRATCH=/dev/disk/by-id/virtio-scratch
META=/dev/disk/by-id/virtio-meta
TESTNAME=$(basename "$0" .sh)
WORK=/tmp/$TESTNAME
mkdir -p "$WORK"

# udev watches device-mapper devices: a close after a write makes it probe
# the device (blkid holds it open a moment), and so does a resume's uevent.
# A remove in that moment fails with EBUSY: dmsetup --retry tries again for
# a few seconds (an open of ours that never ends still fails the remove).
# Seen in 019 on CI's machine, after dmsetup --noudevsync create.
dmsetup() { command dmsetup --retry "$@"; }

fail() {
	echo "FAIL: $TESTNAME: $*" >&2
	exit 1
}

info() { echo "  $TESTNAME: $*"; }

# Sectors of a block device.
dev_sectors() { blockdev --getsz "$1"; }

# sha256 of a whole device, or of LEN bytes at OFFSET (bytes, 4 KiB aligned).
dev_sha() {
	local dev=$1 off=${2:-} len=${3:-}
	if [ -z "$off" ]; then
		dd if="$dev" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1
	else
		dd if="$dev" bs=4096 skip=$((off / 4096)) count=$((len / 4096)) \
			iflag=direct status=none | sha256sum | cut -d' ' -f1
	fi
}

# Fill LEN bytes at OFFSET of DEV with a deterministic pattern from SEED.
# Prints the pattern's sha256.
stamp() {
	local dev=$1 off=$2 len=$3 seed=$4
	local f=$WORK/stamp.$seed
	pattern "$seed" "$len" > "$f"
	dd if="$f" of="$dev" bs=4096 seek=$((off / 4096)) oflag=direct conv=notrunc,fsync status=none
	sha256sum < "$f" | cut -d' ' -f1
	rm -f "$f"
}

# pattern SEED LEN: LEN deterministic bytes; every 4 KiB block differs
# (a counter hashed with the seed), so a block read from the wrong place or
# the wrong time never matches by accident.
pattern() {
	local seed=$1 len=$2
	python3 -c '
import hashlib, sys
seed, n = sys.argv[1].encode(), int(sys.argv[2])
out = sys.stdout.buffer
block = 0
while n > 0:
    h = hashlib.sha256(seed + block.to_bytes(8, "little")).digest()
    chunk = (h * 128)[:min(4096, n)]
    out.write(chunk)
    n -= len(chunk)
    block += 1
' "$seed" "$len"
}

# Number of kernel log lines so far; new_dmesg N prints what came after.
dmesg_mark() { dmesg | wc -l; }
new_dmesg() { dmesg | tail -n +$(($1 + 1)); }

# expect_ctr_fail NAME "TABLE" "ERROR": creating NAME with TABLE must fail,
# the kernel must log ERROR (the target's ti->error), NAME must not exist.
expect_ctr_fail() {
	local name=$1 table=$2 err=$3 mark
	mark=$(dmesg_mark)
	if dmsetup create "$name" --table "$table" 2>/dev/null; then
		dmsetup remove "$name" 2>/dev/null || true
		fail "table '$table' was accepted"
	fi
	if ! new_dmesg "$mark" | grep -qF -- "$err"; then
		new_dmesg "$mark" >&2
		fail "table '$table': kernel did not say '$err'"
	fi
	if dmsetup info "$name" >/dev/null 2>&1; then
		dmsetup remove "$name" 2>/dev/null || true
		fail "table '$table': device $name left behind"
	fi
	info "refused as expected: $err"
}

load_module() {
	modprobe dm-mod
	lsmod | grep -q '^dm_fleece ' || insmod "$MODULE"
}

# load_fault_module NAME: a test device the kernel lacks, built by 'make
# faults' (tests/faults): dust (bad sectors) or failnth (counted failures).
load_fault_module() {
	local ko=$TOP/build/faults/$(uname -r)/dm-$1.ko
	lsmod | grep -q "^dm_$1 " && return 0
	[ -f "$ko" ] || fail "no $ko: run 'make faults' for kernel $(uname -r)"
	insmod "$ko" || fail "cannot load $ko"
}

# Remove every device-mapper device this test may have left.
dm_cleanup() {
	local d
	for _ in 1 2 3; do
		for d in $(dmsetup ls 2>/dev/null | awk '$1 != "No" { print $1 }'); do
			dmsetup remove "$d" >/dev/null 2>&1 || true
		done
	done
}

# ---- Helpers for the fleece view tests (010-039) ----

# view_create VIEW ORIGIN_DM TABLE: create the view VIEW with TABLE while the
# fleece-origin device ORIGIN_DM is suspended, so the point in time is exact.
# ORIGIN_DM is resumed whatever happens; returns dmsetup create's status.
view_create() {
	local view=$1 odm=$2 table=$3 r=0
	dmsetup suspend "$odm"
	dmsetup create "$view" --table "$table" || r=$?
	dmsetup resume "$odm"
	udevadm settle 2>/dev/null || true
	return $r
}

# view_stat VIEW FIELD: one field of a fleece view's INFO status. FIELD is
# state, chunk, used, total, preserved, copied, released, skipped,
# reads_scratch, reads_origin or inflight. Fails on a short status line.
view_stat() {
	dmsetup status "$1" | awk -v f="$2" '
		$3 != "fleece" || NF < 13 { exit 3 }
		{
			split($6, u, "/")
			v["state"] = $4; v["chunk"] = $5; v["used"] = u[1]; v["total"] = u[2]
			v["preserved"] = $7; v["copied"] = $8; v["released"] = $9
			v["skipped"] = $10; v["reads_scratch"] = $11; v["reads_origin"] = $12
			v["inflight"] = $13
			if (!(f in v)) exit 2
			print v[f]
		}' || fail "status of $1 ('$(dmsetup status "$1" 2>&1)') has no field '$2'"
}

# origin_sessions ORIGIN_DM: the #sessions field of a fleece-origin status.
origin_sessions() { dmsetup status "$1" | awk '$3 == "fleece-origin" { print $5 }'; }

# dm_events NAME: the device's dm event counter.
dm_events() { dmsetup info -c --noheadings -o events "$1" | tr -d ' '; }

# file_sha FILE OFFSET LEN: sha256 of LEN bytes at OFFSET of a regular file.
file_sha() {
	dd if="$1" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none |
		sha256sum | cut -d' ' -f1
}

# range_sha DEV OFFSET LEN: sha256 of LEN bytes at OFFSET (bytes, 512-byte
# aligned) of a block device, read with O_DIRECT in 1 MiB requests.
# (Through a temporary file: pipes are very slow in the test VM.)
range_sha() {
	local tmp=$WORK/.range.$BASHPID
	dd if="$1" of=$tmp bs=1M iflag=direct,skip_bytes,count_bytes skip="$2" count="$3" status=none
	sha256sum < $tmp | cut -d' ' -f1
	rm -f $tmp
}

# dev_cmp DEV OFFSET LEN FILE [FILE_OFFSET]: LEN bytes of DEV at OFFSET (read
# with O_DIRECT, 512-byte aligned) equal FILE's at FILE_OFFSET (default
# OFFSET). On a difference or a short read, says where and returns 1.
dev_cmp() {
	local dev=$1 off=$2 len=$3 file=$4 foff=${5:-$2} out tmp=$WORK/.cmp.$BASHPID
	if ! dd if="$dev" of=$tmp bs=1M iflag=direct,skip_bytes,count_bytes skip="$off" count="$len" status=none; then
		rm -f $tmp
		echo "$dev bytes [$off, +$len): read failed" >&2
		return 1
	fi
	out=$(cmp -n "$len" -i "0:$foff" $tmp "$file" 2>&1) || {
		rm -f $tmp
		echo "$dev bytes [$off, +$len) differ from $file at $foff: $out" >&2
		return 1
	}
	rm -f $tmp
}

# patch_file FILE OFFSET SRC: write SRC's bytes into FILE at OFFSET (bytes),
# to keep an expected image in step with what was written to a device.
patch_file() {
	dd if="$3" of="$1" bs=1M oflag=seek_bytes seek="$2" conv=notrunc status=none
}

# zero_file FILE OFFSET LEN: zero LEN bytes of FILE at OFFSET.
zero_file() {
	head -c "$3" /dev/zero | dd of="$1" bs=1M oflag=seek_bytes seek="$2" conv=notrunc status=none iflag=fullblock
}

# --- fleecectl tests (04x-fleecectl-*) -------------------------------------

# expect_rc RC CMD...: CMD must exit with RC. Its output is kept in
# $WORK/stdout and $WORK/stderr.
expect_rc() {
	local want=$1 rc=0
	shift
	"$@" >"$WORK/stdout" 2>"$WORK/stderr" || rc=$?
	if [ "$rc" != "$want" ]; then
		cat "$WORK/stdout" "$WORK/stderr" >&2
		fail "'$*' exited $rc, expected $want"
	fi
}

# expect_err RC REGEX CMD...: CMD must exit with RC and say REGEX (grep -E)
# on stderr.
expect_err() {
	local want=$1 re=$2
	shift 2
	expect_rc "$want" "$@"
	if ! grep -qE -- "$re" "$WORK/stderr"; then
		cat "$WORK/stderr" >&2
		fail "'$*' did not say '$re'"
	fi
	info "refused (exit $want): $(head -n1 "$WORK/stderr")"
}

# dm_state NAME: ACTIVE or SUSPENDED.
dm_state() { dmsetup info "$1" | awk '/^State:/ { print $2 }'; }

# majmin DEV: "major:minor" of a block device (path or symlink).
majmin() { printf '%d:%d' $(stat -L -c '0x%t 0x%T' "$1"); }

# json_assert FILE EXPR: the JSON in FILE parses and the Python expression
# EXPR holds for it (as d).
json_assert() {
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
if not eval(sys.argv[2]):
    sys.exit("json_assert failed: " + sys.argv[2] + "\n" + json.dumps(d, indent=1))
' "$1" "$2" || fail "JSON check failed: $2"
}

# ---- Helpers for the changed-block bitmap tests (050-059) ----

# ranges_export DEV MAX WORD...: page through the messages
# "WORD... START MAX" to DEV (e.g. "bitmap_changes daily" to a fleece-origin,
# "changes" to a view) from START=0 until the cursor says "end"; print each
# range as "first count", one per line. Fails on an error or a bad cursor.
ranges_export() {
	local dev=$1 max=$2 start=0 out next r
	shift 2
	while :; do
		out=$(dmsetup message "$dev" 0 "$@" "$start" "$max") ||
			{ echo "ranges_export: '$*' $start $max to $dev failed" >&2; return 1; }
		next=${out%% *}
		for r in ${out#"$next"}; do
			echo "${r%+*} ${r#*+}"
		done
		[ "$next" = end ] && return 0
		if ! [[ $next =~ ^[0-9]+$ ]] || [ "$next" -le "$start" ]; then
			echo "ranges_export: bad cursor '$next' after $start from $dev" >&2
			return 1
		fi
		start=$next
	done
}

# bitmap_export ORIGIN_DM NAME [MAX]: every range of a fleece-origin bitmap.
bitmap_export() { ranges_export "$1" "${3:-65536}" bitmap_changes "$2"; }

# ranges_chunks: "first count" lines on stdin -> one chunk number per line.
ranges_chunks() { awk '{ for (i = 0; i < $2; i++) print $1 + i }'; }

# Python for the helpers below: device-mapper ioctls without a process per
# call (a process costs about 0.3 s in the VM; a test makes thousands).
# Tests may run it with more code appended: python3 -c "$FLEECE_DMPY
# ...", using dm_message(name, words), dm_status(name), bitmap_state(name).
read -r -d '' FLEECE_DMPY <<'PY' || true
import fcntl, os, struct, subprocess, sys

HDR = 312

def _req(nr):
    return (3 << 30) | (HDR << 16) | (0xfd << 8) | nr

def dm_ioctl(nr, name, payload=b"", flags=0, size=1 << 16):
    buf = bytearray(size)
    struct.pack_into("<3IIIIiII", buf, 0, 4, 0, 0, size, HDR, 0, 0, flags, 0)
    nm = name.encode()
    buf[48:48 + len(nm)] = nm
    buf[HDR:HDR + len(payload)] = payload
    fd = os.open("/dev/mapper/control", os.O_RDWR)
    try:
        fcntl.ioctl(fd, _req(nr), buf, True)
    finally:
        os.close(fd)
    return buf

def dm_message(name, words):
    msg = " ".join(words).encode()
    buf = dm_ioctl(14, name, struct.pack("<Q", 0) + msg + b"\0")
    flags, = struct.unpack_from("<I", buf, 28)
    if not flags & (1 << 16):
        return ""
    return bytes(buf[HDR:buf.index(0, HDR)]).decode()

def dm_status(name):
    buf = dm_ioctl(12, name)
    count, = struct.unpack_from("<I", buf, 20)
    out, off = [], HDR
    for _ in range(count):
        start, length, _st, nxt = struct.unpack_from("<QQiI", buf, off)
        ttype = bytes(buf[off + 24:off + 40]).split(b"\0")[0].decode()
        params = bytes(buf[off + 40:buf.index(0, off + 40)]).decode()
        out.append("%d %d %s %s" % (start, length, ttype, params))
        off = HDR + nxt
    return "\n".join(out)

def bitmap_ranges(odev, name):
    """Every "first+count" range of bitmap NAME, all pages of bitmap_changes."""
    start, ranges = 0, []
    while True:
        page = dm_message(odev, ["bitmap_changes", name, str(start)]).split()
        ranges += page[1:]
        if page[0] == "end":
            return ranges
        start = int(page[0])

def bitmap_state(odev):
    st = dm_status(odev)
    lines = [st]
    lst = dm_message(odev, ["bitmap_list"])
    names = sorted(l.split()[0] for l in lst.splitlines() if l.strip())
    lines += sorted(l for l in lst.splitlines() if l.strip())
    for n in names:
        lines.append("== %s %s" % (n, " ".join(bitmap_ranges(odev, n))))
    return "\n".join(lines)

def main_state(odev):
    print(bitmap_state(odev))

def main_refused(odev, lines):
    before = bitmap_state(odev)
    for line in lines:
        dev, err, words = line.split("|", 2)
        p = subprocess.run(["dmsetup", "message", dev, "0"] + words.split(),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        said = (p.stdout + p.stderr).strip()
        if p.returncode == 0:
            sys.exit("message '%s' to %s was accepted (said '%s')" % (words, dev, said))
        if err not in said:
            sys.exit("message '%s' to %s: expected '%s', got '%s'" % (words, dev, err, said))
        after = bitmap_state(odev)
        if after != before:
            sys.exit("refused message '%s' to %s changed the bitmaps:\nbefore:\n%s\nafter:\n%s"
                     % (words, dev, before, after))
    print("%d refused" % len(lines))

if __name__ == "__main__" and sys.argv[1:2] == ["state"]:
    main_state(sys.argv[2])
elif __name__ == "__main__" and sys.argv[1:2] == ["refused"]:
    main_refused(sys.argv[2], [l for l in sys.argv[3:] if l.strip()])
PY

# bitmap_state ORIGIN_DM: everything the bitmaps of ORIGIN_DM say: the
# status INFO, bitmap_list (sorted), and every bitmap's ranges.
bitmap_state() { python3 -c "$FLEECE_DMPY" state "$1"; }

# msg_refused DEV ERRTEXT WORD...: "dmsetup message DEV 0 WORD..." must fail
# with the errno text ERRTEXT (e.g. "File exists") and leave bitmap_state
# of ORIGIN_DM (default DEV; set REFUSED_ORIGIN for view messages) as it was.
msg_refused() {
	local dev=$1 err=$2
	shift 2
	echo "$dev|$err|$*" | msgs_refused "${REFUSED_ORIGIN:-$dev}"
}

# msgs_refused ORIGIN_DM: msg_refused for every line "DEV|ERRTEXT|WORDS" on
# stdin; the state of ORIGIN_DM is compared after each message.
msgs_refused() {
	local lines out
	mapfile -t lines
	out=$(python3 -c "$FLEECE_DMPY" refused "$1" "${lines[@]}" 2>&1) || fail "$out"
}

# zero_dev DEV OFFSET LEN: write zeroes over LEN bytes of DEV at OFFSET
# (bytes, 1 MiB aligned), O_DIRECT.
zero_dev() {
	dd if=/dev/zero of="$1" bs=1M seek=$(($2 >> 20)) count=$(($3 >> 20)) \
		oflag=direct conv=fsync status=none
}

# meta_block DEV BLOCK: header fields of a 4 KiB metadata block as
# "magic=.. csum=.. seq=.. gen=.. slot=.. index=.." (bitmap block layout;
# for a superblock, seq is at another offset: see meta_sb_seq).
meta_block() {
	python3 - "$1" "$2" <<'PY'
import mmap, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
os.preadv(fd, [buf], int(sys.argv[2]) * 4096)
b = bytes(buf)
csum, magic, seq, gen, slot, index = struct.unpack_from("<IIQQII", b, 0)
print("magic=%08x csum=%08x seq=%d gen=%d slot=%d index=%d zero=%d" %
      (magic, csum, seq, gen, slot, index, b == bytes(4096)))
PY
}

# meta_sb_seq DEV COPY: seq of superblock copy COPY (0 or 1), -1 if its
# magic is not the superblock's.
meta_sb_seq() {
	python3 - "$1" "$2" <<'PY'
import mmap, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
os.preadv(fd, [buf], int(sys.argv[2]) * 4096)
magic, = struct.unpack_from("<I", buf, 4)
seq, = struct.unpack_from("<Q", buf, 16)
print(seq if magic == 0x6365656c else -1)
PY
}

# meta_flip DEV BLOCK OFFSET [LEN]: invert LEN (default 1) bytes at OFFSET of
# 4 KiB block BLOCK of DEV, with O_DIRECT so the kernel's next read sees it.
meta_flip() {
	python3 - "$1" "$2" "$3" "${4:-1}" <<'PY'
import mmap, os, sys
dev, blk, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
os.preadv(fd, [buf], blk * 4096)
for i in range(off, off + n):
    buf[i] ^= 0xff
os.pwritev(fd, [buf], blk * 4096)
os.fsync(fd)
PY
}

# ---- Helpers for the stack tests (070-079: LVM, dm-crypt) ----

# files_sha DIR OUT: the sha256 of every regular file under DIR (lost+found
# aside), sorted by path, as sha256sum lines with paths relative to DIR.
files_sha() {
	(cd "$1" && find . -type f ! -path './lost+found/*' -print0 | sort -z |
		xargs -0r sha256sum) > "$2"
}

# whole_sha DEV: sha256 of a whole block device or image file, read through
# a flushed page cache (sha256sum reads fast; a pipe from dd is slow in the
# VM).
whole_sha() {
	[ -b "$1" ] && blockdev --flushbufs "$1"
	sha256sum < "$1" | cut -d' ' -f1
}

# view_txn VIEW BITMAP: the state of VIEW's backup transaction on BITMAP
# (open, committed, ended), from its status.
view_txn() { dmsetup status "$1" | grep -o " $2 [a-z]* " | awk '{ print $2 }'; }

# image_check IMAGE LIST WHAT: IMAGE (an ext4 filesystem image) passes
# e2fsck -fn and holds exactly the files of LIST (files_sha) with those
# bytes. The files are copied out with debugfs: no loop device, no mount.
image_check() {
	local img=$1 list=$2 what=$3 m=$WORK/imgfiles
	e2fsck -fn "$img" > "$WORK/e2fsck.out" 2>&1 ||
		{ cat "$WORK/e2fsck.out" >&2; fail "$what: e2fsck -fn finds errors"; }
	rm -rf "$m"
	mkdir -p "$m"
	debugfs -R "rdump / $m" "$img" > "$WORK/debugfs.out" 2>&1 ||
		{ cat "$WORK/debugfs.out" >&2; fail "$what: debugfs cannot copy its files"; }
	files_sha "$m" "$WORK/image.sha"
	rm -rf "$m"
	diff -u "$list" "$WORK/image.sha" >&2 ||
		fail "$what: its files differ from those written before its point in time"
}

# bg_writer_start DIR TAG: in the background, write files DIR/TAG-N (64 KiB
# of pattern TAG-N each, then sync) until bg_writer_stop.
bg_writer_start() {
	rm -f "$WORK/bg.stop"
	(
		i=0
		while [ ! -e "$WORK/bg.stop" ]; do
			i=$((i + 1))
			pattern "$2-$i" 65536 > "$1/$2-$i"
			sync
		done
		echo $i > "$WORK/bg.count"
	) &
	bgpid=$!
}

# bg_writer_stop: stop it, wait for its last file; fails if it failed.
bg_writer_stop() {
	local rc=0
	touch "$WORK/bg.stop"
	wait "$bgpid" || rc=$?
	bgpid=
	[ $rc = 0 ] || fail "the background writer failed (exit $rc)"
	info "the background writer wrote $(cat "$WORK/bg.count") files"
}

# stack_backups DEV MNT T: the backup chain over a stacked device. DEV is
# attached (fleece-origin with --meta) and its ext4 is mounted on MNT. Adds
# bitmap b; takes a full backup (view Tfull to $WORK/full.img) and then an
# incremental one (view Tinc, --base full.img, to $WORK/inc.img), with
# writes between them and during each backup window. Checks that each image
# equals its view byte for byte, passes e2fsck -fn, and holds exactly the
# files (sha256) of its point in time. Leaves the files' list as of now in
# $WORK/now.sha.
stack_backups() {
	local dev=$1 mnt=$2 t=$3 ref ref0 n
	local F=$FLEECECTL
	expect_rc 0 $F bitmap add "$dev" b
	files_sha "$mnt" "$WORK/t0.sha"
	expect_rc 0 $F snapshot "$dev" --scratch $SCRATCH --bitmap b --full --view ${t}full
	# Writes after the point in time: what they overwrite is copied first.
	pattern $t-a1.new 300000 > "$mnt/a1"
	pattern $t-n1 131072 > "$mnt/n1"
	rm "$mnt/a2"
	sync
	ref=$(whole_sha /dev/mapper/${t}full)
	expect_rc 0 $F backup ${t}full --to "$WORK/full.img" --quiet
	grep -q "committed: bitmap 'b'" "$WORK/stdout" ||
		fail "the full backup did not commit: $(cat "$WORK/stdout")"
	ref0=$(whole_sha "$WORK/full.img")
	[ "$ref0" = "$ref" ] || fail "full.img differs from the full read of its view"
	expect_rc 0 $F release ${t}full
	image_check "$WORK/full.img" "$WORK/t0.sha" full.img
	info "full backup: image == view (sha256), e2fsck clean, files of its point in time"

	# More writes, then the incremental, with writes during its window.
	pattern $t-a3.new 70000 > "$mnt/a3"
	pattern $t-c1 1048576 > "$mnt/c1"
	rm "$mnt/a4"
	sync
	files_sha "$mnt" "$WORK/t1.sha"
	expect_rc 0 $F snapshot "$dev" --scratch $SCRATCH --bitmap b --view ${t}inc
	# (An incremental view reads EIO where the origin changed since: read
	# it whole before writing.)
	ref=$(whole_sha /dev/mapper/${t}inc)
	pattern $t-c1.new 1048576 > "$mnt/c1"
	pattern $t-d1 200000 > "$mnt/d1"
	sync
	expect_rc 0 $F changes ${t}inc
	n=$(awk '{ s += $2 } END { print s + 0 }' "$WORK/stdout")
	expect_rc 0 $F backup ${t}inc --changed b --base "$WORK/full.img" --to "$WORK/inc.img" --quiet
	grep -q "committed: bitmap 'b'" "$WORK/stdout" ||
		fail "the incremental backup did not commit: $(cat "$WORK/stdout")"
	[ "$(whole_sha "$WORK/inc.img")" = "$ref" ] || fail "inc.img differs from the full read of its view"
	[ "$(whole_sha "$WORK/full.img")" = "$ref0" ] || fail "--base changed full.img"
	expect_rc 0 $F release ${t}inc
	image_check "$WORK/inc.img" "$WORK/t1.sha" inc.img
	files_sha "$mnt" "$WORK/now.sha"
	info "incremental backup ($n changed bytes onto full.img): image == view, e2fsck clean, files of its point in time"
}

# ---- Helpers for the NBD export tests (047, 049) ----
# A test sets S (its unix socket) and 'trap stop_exports EXIT'; export_bg
# sets XPID, a test that starts a --daemon keeps its pid in dpid.

# merge: "offset length" lines, adjacent ranges joined (servers and the
# kernel may split a run differently; the bytes must be the same).
merge() {
	awk 'NF == 2 { if (n && $1 == o + l) { l += $2; next } if (n) print o, l; o = $1; l = $2; n = 1 }
	     END { if (n) print o, l }'
}
# dirty_map URI: the dirty ranges of the exported bitmap "nightly", as
# nbdinfo lists them (a TLS URI carries tls-certificates=DIR).
dirty_map() { nbdinfo --map=qemu:dirty-bitmap:nightly "$1" | awk '$3 == 1 { print $1, $2 }' | merge; }
# pull_changes IMAGE NBDOPTS URI [QEMU-IMG-OPTS...]: the client recipe of
# Documentation/nbd.rst: copy each dirty range into IMAGE with qemu-img
# convert (raw offset/size on both sides). NBDOPTS are the nbd driver's
# options (server, export, tls-creds); QEMU-IMG-OPTS go before them (the
# --object a tls-creds names). Prints bytes.
pull_changes() {
	local img=$1 nbd=$2 uri=$3 off len total=0
	shift 3
	dirty_map "$uri" > $WORK/pull.ranges
	while read -r off len; do
		qemu-img convert -n "$@" --image-opts --target-image-opts \
			"driver=raw,offset=$off,size=$len,file.driver=nbd,$nbd" \
			"driver=raw,offset=$off,size=$len,file.driver=file,file.filename=$img" ||
			fail "qemu-img convert of [$off, +$len) failed"
		total=$((total + len))
	done < $WORK/pull.ranges
	echo $total
}

# A failed check must not leave a server holding the view open.
XPID=
dpid=
stop_exports() {
	local p f
	for f in /run/fleecectl/*/qemu-nbd.log; do
		[ -s "$f" ] && { echo "--- $f"; cat "$f"; }
	done
	for p in $XPID $dpid; do kill -TERM "$p" 2>/dev/null || true; done
	for p in $XPID $dpid; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
}

# export_bg NAME ARGS...: start "fleecectl export ARGS" in the background,
# output in $WORK/NAME.out/.err; wait until it says it serves. Sets XPID.
export_bg() {
	local name=$1 i
	shift
	$F export "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	XPID=$!
	for i in $(seq 600); do
		grep -q '^  uri:' "$WORK/$name.out" && return 0
		kill -0 $XPID 2>/dev/null || { cat "$WORK/$name.err" >&2; fail "export $* ended before serving"; }
		sleep 0.1
	done
	fail "export $* did not serve within 60 s"
}
# export_stop PID NAME: SIGTERM; the export must end with status 0.
export_stop() {
	local rc=0
	kill -TERM "$1"
	wait "$1" || rc=$?
	[ $rc = 0 ] || { cat "$WORK/$2.err" >&2; fail "export ($2) exited $rc after SIGTERM"; }
	grep -q "stopped (signal 15" "$WORK/$2.out" || fail "export ($2) did not say it stopped"
	XPID=
}
# no_leftovers WHEN: no server, no socket, no private files after an export.
no_leftovers() {
	[ ! -e "$S" ] || fail "$S left behind ($1)"
	! pgrep -x qemu-nbd >/dev/null || fail "a qemu-nbd is still running ($1)"
	[ -z "$(ls -A /run/fleecectl 2>/dev/null)" ] || fail "/run/fleecectl not empty ($1): $(ls /run/fleecectl)"
}

# server_reads_direct DEV: the running qemu-nbd has DEV open with O_DIRECT
# (it reads the view past the page cache).
server_reads_direct() {
	local p fd flags
	p=$(pgrep -x qemu-nbd) || fail "no qemu-nbd running"
	for fd in /proc/$p/fd/*; do
		[ -b "$fd" ] && [ "$(majmin "$fd")" = "$(majmin "$1")" ] || continue
		flags=$(awk '/^flags:/ { print $2 }' /proc/$p/fdinfo/${fd##*/})
		(( 0$flags & 040000 )) || fail "qemu-nbd reads $1 without O_DIRECT (flags $flags)"
		return 0
	done
	fail "qemu-nbd ($p) does not have $1 open"
}

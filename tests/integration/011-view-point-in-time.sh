#!/bin/bash
# A view shows the origin exactly as it was when the session began, whatever
# is done to the origin afterwards through fleece-origin: chunk-aligned
# writes, the same chunk written twice, 512-byte sub-chunk writes (one across
# a chunk boundary), unaligned and large multi-chunk writes, discards (aligned
# and sub-chunk) and write-zeroes; writes outside the stamped region and to
# the last chunk. The origin holds the new data. Each chunk touched is copied
# once: preserved == copied == chunks touched, and view reads of those chunks
# come from scratch. The view refuses writes. Its table comes back exactly.
# Removing the view leaves fleece-origin and its data intact.
. "$(dirname "$0")/lib.sh"

sz=$(dev_sectors $ORIGIN)
end=$((sz * 512))
mib=$((1024 * 1024))
C=65536	# chunk bytes (128 sectors)
R=$((32 * mib))	# the stamped region
ODM=t011o
odev=/dev/mapper/$ODM
vdev=/dev/mapper/t011v

dmsetup create $ODM --table "0 $sz fleece-origin $ORIGIN - 128"
pattern t011pre $R > $WORK/pre.img
dd if=$WORK/pre.img of=$odev bs=1M oflag=direct status=none
# Ranges outside the region: whatever they hold now is their point in time.
E1=$((512 * mib)) E2=$((end - mib))
dd if=$odev of=$WORK/pre.e1 bs=1M iflag=direct,skip_bytes skip=$E1 count=1 status=none
dd if=$odev of=$WORK/pre.e2 bs=1M iflag=direct,skip_bytes skip=$E2 count=1 status=none
pre_sha=$(sha256sum < $WORK/pre.img | cut -d' ' -f1)
[ "$(range_sha $odev 0 $R)" = "$pre_sha" ] || fail "stamping the region failed"

table="0 $sz fleece $ORIGIN $SCRATCH"
view_create t011v $ODM "$table" || fail "cannot create the view"
[ "$(dmsetup table t011v)" = "$table" ] || fail "table came back as '$(dmsetup table t011v)'"
[ "$(origin_sessions $ODM)" = 1 ] || fail "fleece-origin reports $(origin_sessions $ODM) sessions, expected 1"
[ "$(view_stat t011v state)" = Active ] || fail "new view is $(view_stat t011v state)"
[ "$(view_stat t011v chunk)" = 128 ] || fail "view chunk $(view_stat t011v chunk), fleece-origin's is 128"
for f in used preserved copied released skipped inflight; do
	[ "$(view_stat t011v $f)" = 0 ] || fail "new view: $f = $(view_stat t011v $f), expected 0"
done
[ "$(view_stat t011v total)" -gt 0 ] || fail "scratch_total is $(view_stat t011v total)"

# Keep the expected origin image and the set of chunks touched in step.
cp $WORK/pre.img $WORK/new.img
cp $WORK/pre.e1 $WORK/new.e1
cp $WORK/pre.e2 $WORK/new.e2
declare -A touched
touch_chunks() {
	local c
	for ((c = $1 / C; c <= ($1 + $2 - 1) / C; c++)); do touched[$c]=1; done
}
# expect OFF LEN FILE: FILE's bytes now belong at OFF (bytes) of the origin.
expect() {
	local off=$1 len=$2 src=$3
	touch_chunks $off $len
	if [ $off -lt $R ]; then
		patch_file $WORK/new.img $off $src
	elif [ $off -ge $E2 ]; then
		patch_file $WORK/new.e2 $((off - E2)) $src
	else
		patch_file $WORK/new.e1 $((off - E1)) $src
	fi
}
# wr OFF LEN SRC [BS]: write LEN bytes of the data file from SRC at OFF with
# BS-byte O_DIRECT writes.
pattern t011data $((8 * mib)) > $WORK/data
n=0
wr() {
	local off=$1 len=$2 src=$3 bs=${4:-$((64 * 1024))}
	n=$((n + 1))
	dd if=$WORK/data of=$WORK/w.$n bs=1M iflag=skip_bytes,count_bytes skip=$src count=$len status=none
	dd if=$WORK/w.$n of=$odev bs=$bs oflag=direct,seek_bytes seek=$off conv=notrunc status=none ||
		fail "write of $len bytes at $off failed"
	expect $off $len $WORK/w.$n
}

wr $((1 * mib)) $((2 * C)) 0			# two aligned chunks
wr $((1 * mib)) $C $((1 * mib))			# the same chunk again
wr $((1 * mib + C)) 4096 $((2 * mib)) 4096	# and a 4 KiB piece of the second
wr $((2 * mib + 512)) 1536 $((2 * mib + 8192)) 512	# 3 sectors inside a chunk
wr $((3 * mib - 512)) 1024 $((2 * mib + 16384)) 512	# 2 sectors across a chunk boundary
wr $((5 * mib + 7 * 512)) 512 $((2 * mib + 20480)) 512	# one odd sector
wr $((5 * mib + 7 * 512)) 512 $((2 * mib + 24576)) 512	# the same sector again
wr $((8 * mib)) $mib $((3 * mib)) $mib		# 1 MiB aligned
wr $((12 * mib + 4096 + 512)) $mib $((4 * mib)) $mib	# 1 MiB, sector aligned only
wr $((18 * mib + 3 * 4096)) $((4 * mib)) $((4 * mib - 4096)) $((4 * mib))	# one 4 MiB write
wr $((R - C / 2)) $C $((2 * mib + 65536)) 4096	# across the end of the region
wr $E1 $C $((2 * mib + 131072))			# outside the region
wr $((end - 4096)) 4096 $((2 * mib + 196608)) 4096	# the last 4 KiB of the origin
info "writes done"

# Discards and write-zeroes through fleece-origin.
head -c $((4 * mib)) /dev/zero > $WORK/zero
zero_range() { head -c $2 $WORK/zero > $WORK/z; expect $1 $2 $WORK/z; }
blkdiscard -f -o $((14 * mib)) -l $((2 * mib)) $odev || fail "blkdiscard on fleece-origin failed"
zero_range $((14 * mib)) $((2 * mib))
blkdiscard -f -z -o $((24 * mib)) -l $mib $odev || fail "blkdiscard -z on fleece-origin failed"
zero_range $((24 * mib)) $mib
blkdiscard -f -z -o $((26 * mib + 512)) -l 3072 $odev || fail "sub-chunk blkdiscard -z failed"
zero_range $((26 * mib + 512)) 3072
blkdiscard -f -z -o $((27 * mib - 4096)) -l 8192 $odev || fail "blkdiscard -z across chunks failed"
zero_range $((27 * mib - 4096)) 8192
# A discard need not zero what it does not cover whole: a sub-chunk discard
# leaves, sector by sector, either the old data or zeroes on the origin.
sub=()
subdiscard() {
	local off=$1 len=$2
	blkdiscard -f -o $off -l $len $odev || fail "blkdiscard -o $off -l $len failed"
	touch_chunks $off $len
	dd if=$odev of=$WORK/d.$off bs=$len iflag=direct,skip_bytes skip=$off count=1 status=none
	sub+=($off $len)
}
subdiscard $((28 * mib + 4096)) 8192
subdiscard $((29 * mib - 4096)) 8192
python3 - "$WORK" "${sub[@]}" <<'EOF' || fail "origin after a sub-chunk discard is neither old data nor zeroes"
import sys
work, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
img = open(work + "/new.img", "rb").read()
for off, ln in zip(args[::2], args[1::2]):
    got = open("%s/d.%d" % (work, off), "rb").read()
    for s in range(0, ln, 512):
        g = got[s:s + 512]
        if g != img[off + s:off + s + 512] and g != bytes(512):
            sys.exit("sector %d" % ((off + s) // 512))
EOF
for ((k = 0; k < ${#sub[@]}; k += 2)); do
	patch_file $WORK/new.img ${sub[k]} $WORK/d.${sub[k]}
done
info "discards and write-zeroes done"

# The view: the point in time, byte for byte.
dev_cmp $vdev 0 $R $WORK/pre.img || fail "view differs from the point in time"
[ "$(range_sha $vdev 0 $R)" = "$pre_sha" ] || fail "view sha differs from the point in time"
dev_cmp $vdev $E1 $mib $WORK/pre.e1 0 || fail "view differs from the point in time at $E1"
dev_cmp $vdev $E2 $mib $WORK/pre.e2 0 || fail "view differs from the point in time in the last MiB"
info "view == point in time"
# The origin: the new data, through fleece-origin and on the device itself.
for d in $odev $ORIGIN; do
	dev_cmp $d 0 $R $WORK/new.img || fail "$d does not hold the new data"
	dev_cmp $d $E1 $mib $WORK/new.e1 0 || fail "$d does not hold the new data at $E1"
	dev_cmp $d $E2 $mib $WORK/new.e2 0 || fail "$d does not hold the new data in the last MiB"
done
info "origin == new data"

# Every touched chunk was copied exactly once and is still preserved.
nt=${#touched[@]}
in_r=0
for c in "${!touched[@]}"; do if [ $c -lt $((R / C)) ]; then in_r=$((in_r + 1)); fi; done
[ "$(view_stat t011v state)" = Active ] || fail "view is $(view_stat t011v state)"
[ "$(view_stat t011v copied)" -gt 0 ] || fail "copied is 0 after origin writes"
for f in preserved copied used; do
	[ "$(view_stat t011v $f)" = $nt ] || fail "$f = $(view_stat t011v $f), expected $nt (chunks touched)"
done
[ "$(view_stat t011v inflight)" = 0 ] || fail "copies_inflight $(view_stat t011v inflight) at rest"
[ "$(view_stat t011v released)" = 0 ] || fail "released $(view_stat t011v released) without a view discard"
# One read of the region: touched chunks from scratch, the rest from the origin.
udevadm settle
rs=$(view_stat t011v reads_scratch)
ro=$(view_stat t011v reads_origin)
range_sha $vdev 0 $R > /dev/null
drs=$(($(view_stat t011v reads_scratch) - rs))
dro=$(($(view_stat t011v reads_origin) - ro))
[ $drs = $((in_r * 128)) ] || fail "reading the region took $drs sectors from scratch, expected $((in_r * 128))"
[ $dro = $((R / 512 - in_r * 128)) ] || fail "reading the region took $dro sectors from the origin, expected $((R / 512 - in_r * 128))"
info "$nt chunks preserved and copied once; reads split $drs scratch / $dro origin sectors"

# A view without 'writable' refuses writes and changes nothing.
copied=$(view_stat t011v copied)
dd if=$WORK/data of=$WORK/vw bs=$C skip=100 count=1 status=none
if dd if=$WORK/vw of=$vdev bs=$C oflag=direct seek=$((4 * mib / C)) conv=notrunc status=none 2>/dev/null; then
	fail "a write to a read-only view succeeded"
fi
if dd if=$WORK/vw of=$vdev bs=$C oflag=direct seek=$((1 * mib / C)) conv=notrunc status=none 2>/dev/null; then
	fail "a write to a preserved chunk of a read-only view succeeded"
fi
dev_cmp $vdev 0 $R $WORK/pre.img || fail "a refused view write changed the view"
dev_cmp $odev 0 $R $WORK/new.img || fail "a refused view write changed the origin"
[ "$(view_stat t011v copied)" = $copied ] || fail "a refused view write caused copies"
info "read-only view refuses writes"

# Removing the view ends the session; fleece-origin goes on unchanged.
dmsetup remove t011v
[ "$(origin_sessions $ODM)" = 0 ] || fail "$(origin_sessions $ODM) sessions after the view was removed"
dev_cmp $odev 0 $R $WORK/new.img || fail "origin data changed when the view was removed"
wr $((1 * mib)) $C $((7 * mib))
dev_cmp $ORIGIN 0 $R $WORK/new.img || fail "a write after the session ended did not land"
dmsetup remove $ODM
info "view removed; fleece-origin data intact"

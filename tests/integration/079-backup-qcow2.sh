#!/bin/bash
# fleecectl backup --format qcow2: a full image, then incrementals over it
# (full.qcow2 <- incr1.qcow2 <- incr2.qcow2), each holding only its changed
# clusters; qemu-img check passes on each, and the raw image qemu-img
# converts from each top is byte for byte its view (sha256), including
# ranges written back to zeroes (zero clusters hiding the backing data).
# Refused: a qcow2 stream, device, --verify, --resume, an incremental
# without --base, a base of another size.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((96 * mib))
V=t079v

# as_raw QCOW2: sha256 of the point-in-time image qemu-img reads from it.
as_raw() {
	qemu-img check -q "$1" || fail "qemu-img check $1 failed"
	rm -f $WORK/raw
	qemu-img convert -O raw "$1" $WORK/raw || fail "qemu-img convert $1 failed"
	whole_sha $WORK/raw
	rm -f $WORK/raw
}

dmsetup create t079o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t079o 2>/dev/null
expect_rc 0 $F create t079 /dev/mapper/t079o --meta $META
D=/dev/mapper/t079
expect_rc 0 $F bitmap add t079 nightly
dd if=/dev/urandom of=$D bs=1M count=60 oflag=direct status=none

# 1. The full image.
expect_rc 0 $F snapshot t079 --scratch $SCRATCH --bitmap nightly --full --view $V
ref=$(dev_sha /dev/mapper/$V)
expect_rc 0 $F backup $V --full --to $WORK/full.qcow2 --format qcow2 --quiet
grep -q "committed: bitmap 'nightly'" $WORK/stdout || fail "summary: $(cat $WORK/stdout)"
[ "$(as_raw $WORK/full.qcow2)" = "$ref" ] || fail "full.qcow2 differs from the view"
[ ! -e $WORK/full.qcow2.fleece-manifest ] || fail "a qcow2 image got a manifest"
full_sz=$(stat -c %s $WORK/full.qcow2)
expect_rc 0 $F release $V
info "full.qcow2 ($((full_sz / mib)) MiB for 60 MiB of data): check ok, converts to the view (${ref:0:16}...)"

# 2. Two incrementals: data, and a range written back to zeroes.
dd if=/dev/urandom of=$D bs=1M seek=10 count=2 oflag=direct status=none
dd if=/dev/zero of=$D bs=64K seek=600 count=3 oflag=direct status=none
expect_rc 0 $F snapshot t079 --scratch $SCRATCH --bitmap nightly --view $V
ref1=$(dev_sha /dev/mapper/$V)
expect_rc 0 $F backup $V --changed nightly --base $WORK/full.qcow2 --to $WORK/incr1.qcow2 \
	--format qcow2 --quiet
[ "$(as_raw $WORK/incr1.qcow2)" = "$ref1" ] || fail "incr1.qcow2 differs from the view"
qemu-img info $WORK/incr1.qcow2 | grep -q "^backing file: full.qcow2" ||
	fail "incr1.qcow2's backing file: $(qemu-img info $WORK/incr1.qcow2)"
sz1=$(stat -c %s $WORK/incr1.qcow2)
[ "$sz1" -lt $((3 * mib)) ] || fail "incr1.qcow2 is $sz1 bytes for 2.2 MiB of changes"
expect_rc 0 $F release $V
dd if=/dev/urandom of=$D bs=4K seek=20000 count=5 oflag=direct status=none
expect_rc 0 $F snapshot t079 --scratch $SCRATCH --bitmap nightly --view $V
ref2=$(dev_sha /dev/mapper/$V)
expect_rc 0 $F backup $V --changed nightly --base $WORK/incr1.qcow2 --to $WORK/incr2.qcow2 \
	--format qcow2 --quiet
[ "$(as_raw $WORK/incr2.qcow2)" = "$ref2" ] || fail "incr2.qcow2 differs from the view"
[ "$(as_raw $WORK/incr1.qcow2)" = "$ref1" ] || fail "incr1.qcow2 changed under incr2"
[ "$(as_raw $WORK/full.qcow2)" = "$ref" ] || fail "full.qcow2 changed under the chain"
sz2=$(stat -c %s $WORK/incr2.qcow2)
info "chain full <- incr1 ($((sz1 / 1024)) KiB) <- incr2 ($((sz2 / 1024)) KiB): each converts to its view"

# 3. Refusals, nothing written (a new view: incr2's released its chunk).
expect_rc 0 $F release $V
expect_rc 0 $F snapshot t079 --scratch $SCRATCH --bitmap nightly --view $V
expect_err 2 "an incremental image goes over the previous one" \
	$F backup $V --changed nightly --to $WORK/x.qcow2 --format qcow2
expect_err 2 "not read back" $F backup $V --full --to $WORK/x.qcow2 --format qcow2 --verify
expect_err 2 "an image file, not a stream" $F backup $V --full --to - --format qcow2
expect_err 2 "invalid --format 'vmdk'" $F backup $V --full --to $WORK/x.img --format vmdk
[ ! -e $WORK/x.qcow2 ] && [ ! -e $WORK/x.qcow2.fleece-partial ] || fail "a refused backup wrote x.qcow2"
qemu-img create -q -f qcow2 $WORK/small.qcow2 64M
expect_err 1 "the base image $WORK/small.qcow2 \\(qcow2\\) has 67108864 bytes" \
	$F backup $V --changed nightly --base $WORK/small.qcow2 --to $WORK/x.qcow2 --format qcow2
[ ! -e $WORK/x.qcow2 ] && [ ! -e $WORK/x.qcow2.fleece-partial ] || fail "a refused backup left x.qcow2"
expect_rc 0 $F release $V
info "refused: in place, --verify, a stream, another format, a base of another size"

rm -f $WORK/*.qcow2
expect_rc 0 $F remove t079
dmsetup remove t079o

#!/bin/bash
# fleecectl backup writes a manifest beside each image (block digests, the
# point in time, the view, bitmap, chunk size, the base), and fleecectl
# verify checks an image against it, months later.
# - full, incremental in place, incremental onto --base, resumed: verify
#   passes and each image is byte-identical to its view;
# - one flipped byte: verify fails and names its block; an edited manifest
#   is refused as such; --no-manifest removes an old one;
# - a device and a stream get a manifest with --manifest FILE.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
size=$((80 * mib))
M=.fleece-manifest
V=t078v

cleanup() {
	[ -n "${pid:-}" ] && kill -9 $pid 2>/dev/null
	true
}
trap cleanup EXIT

# verify_ok IMAGE [ARGS]: fleecectl verify passes.
verify_ok() {
	expect_rc 0 $F verify "$@"
	grep -q "result:   every block equal to the backup" $WORK/stdout ||
		fail "verify $*: $(cat $WORK/stdout)"
}

dmsetup create t078o --table "0 $((size / 512)) linear $ORIGIN 0"
blkdiscard -f /dev/mapper/t078o 2>/dev/null
expect_rc 0 $F create t078 /dev/mapper/t078o --meta $META
D=/dev/mapper/t078
expect_rc 0 $F bitmap add t078 nightly
dd if=/dev/urandom of=$D bs=1M count=50 oflag=direct status=none
img=$WORK/full.img

# 1. Full backup: a manifest that verify accepts.
expect_rc 0 $F snapshot t078 --scratch $SCRATCH --bitmap nightly --full --view $V
ref=$(dev_sha /dev/mapper/$V)
expect_rc 0 $F backup $V --full --to $img --quiet
grep -q "manifest: $img$M (5 block digests)" $WORK/stdout || fail "summary: $(cat $WORK/stdout)"
[ "$(whole_sha $img)" = "$ref" ] || fail "full.img differs from the view"
grep -q "^kind full$" $img$M && grep -q "^view $V$" $img$M && grep -q "^bitmap nightly$" $img$M &&
	grep -q "^chunk 65536$" $img$M || fail "manifest: $(head -n 14 $img$M)"
verify_ok $img
grep -q "backup:   full of view $V" $WORK/stdout || fail "verify: $(cat $WORK/stdout)"
expect_rc 0 $F release $V
info "full: manifest with 5 block digests; verify passes; image == view (${ref:0:16}...)"

# 2. One byte flipped in block 3: verify fails and names it.
cp $img $WORK/bad.img
cp $img$M $WORK/bad.img$M
printf '\x5a' | dd of=$WORK/bad.img bs=1 seek=$((3 * 16 * mib + 777)) conv=notrunc status=none
expect_err 1 "bytes $((3 * 16 * mib))-$((4 * 16 * mib - 1)) differ from the backup" $F verify $WORK/bad.img
grep -q "result:   1 block differ, the first at byte $((3 * 16 * mib))" $WORK/stdout ||
	fail "verify of a damaged image: $(cat $WORK/stdout)"
# An edited manifest is refused as damaged, not taken for a damaged image.
sed -i 's/^view .*/view other/' $WORK/bad.img$M
expect_err 1 "manifest .*: its 'end' line does not match its contents" $F verify $WORK/bad.img
rm -f $WORK/bad.img$M
expect_err 1 "manifest $WORK/bad.img$M: No such file" $F verify $WORK/bad.img
rm -f $WORK/bad.img
info "a flipped byte: verify fails on block 3 only; an edited manifest refused; none: refused"

# 3. Incremental in place and onto --base: manifests that verify.
dd if=/dev/urandom of=$D bs=1M seek=20 count=3 oflag=direct status=none
dd if=/dev/urandom of=$D bs=64K seek=1000 count=1 oflag=direct status=none
expect_rc 0 $F snapshot t078 --scratch $SCRATCH --bitmap nightly --view $V
ref=$(dev_sha /dev/mapper/$V)
expect_rc 0 $F backup $V --changed nightly --base $img --to $WORK/inc.img --quiet
[ "$(whole_sha $WORK/inc.img)" = "$ref" ] || fail "inc.img differs from the view"
grep -q "^kind incremental$" $WORK/inc.img$M && grep -q "^base $img$" $WORK/inc.img$M ||
	fail "incremental manifest: $(head -n 14 $WORK/inc.img$M)"
verify_ok $WORK/inc.img
verify_ok $img
expect_rc 0 $F release $V
dd if=/dev/urandom of=$D bs=1M seek=70 count=2 oflag=direct status=none
expect_rc 0 $F snapshot t078 --scratch $SCRATCH --bitmap nightly --view $V
ref=$(dev_sha /dev/mapper/$V)
expect_rc 0 $F backup $V --changed nightly --to $WORK/inc.img --quiet
[ "$(whole_sha $WORK/inc.img)" = "$ref" ] || fail "inc.img updated in place differs from the view"
verify_ok $WORK/inc.img
expect_rc 0 $F release $V
info "incremental onto --base and in place: manifests verify, images == views"

# 4. Resumed: the manifest covers the part written before the interruption.
dd if=/dev/urandom of=$D bs=1M count=40 oflag=direct status=none
expect_rc 0 $F snapshot t078 --scratch $SCRATCH --view $V
ref=$(dev_sha /dev/mapper/$V)
rm -f $img $img$M
$F backup $V --full --to $img --rate-limit 16M --batch 4M >/dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do
	[ "$(view_stat $V released)" -gt 0 ] && break
	sleep 0.05
done
kill -9 $pid
wait $pid 2>/dev/null || true
pid=
[ "$(view_stat $V released)" -gt 0 ] || fail "the backup released nothing before SIGKILL"
expect_rc 0 $F backup $V --full --to $img --resume --quiet
[ "$(whole_sha $img)" = "$ref" ] || fail "the resumed image differs from the view"
verify_ok $img
expect_rc 0 $F release $V
info "resumed after SIGKILL: the manifest verifies, image == view"

# 5. --no-manifest replaces the image and removes the old manifest.
expect_rc 0 $F snapshot t078 --scratch $SCRATCH --view $V
expect_rc 0 $F backup $V --full --to $img --no-manifest --no-release --quiet
[ ! -e $img$M ] || fail "--no-manifest left the old manifest beside the new image"
info "--no-manifest: no manifest, the old one removed"

# 5a. --manifest FILE: the old manifest beside the replaced image goes too
# (verify and the next incremental would take it for the new image's).
expect_rc 0 $F backup $V --full --to $img --no-release --quiet
[ -e $img$M ] || fail "no manifest beside $img"
expect_rc 0 $F backup $V --full --to $img --manifest $WORK/else$M --no-release --quiet
[ ! -e $img$M ] || fail "--manifest FILE left the old manifest beside the replaced image"
verify_ok $img --manifest $WORK/else$M
info "--manifest FILE: the old manifest beside the replaced image removed"

# 6. A device and a stream, with --manifest FILE.
dmsetup create t078t --table "0 $((size / 512 + 2048)) linear $ORIGIN $((size / 512))"
expect_rc 0 $F backup $V --full --to /dev/mapper/t078t --force --no-release \
	--manifest $WORK/dev$M --quiet
verify_ok /dev/mapper/t078t --manifest $WORK/dev$M
$F backup $V --to - --manifest $WORK/stream$M --quiet > $WORK/stream.img 2>$WORK/stderr ||
	{ cat $WORK/stderr >&2; fail "backup --to - --manifest failed"; }
verify_ok $WORK/stream.img --manifest $WORK/stream$M
[ "$(whole_sha $WORK/stream.img)" = "$(dev_sha /dev/mapper/$V)" ] || fail "the stream differs from the view"
expect_rc 0 $F release $V
dmsetup remove t078t
info "a device (larger than the view) and a stream: --manifest FILE verifies"

rm -f $img $img$M $WORK/inc.img $WORK/inc.img$M $WORK/stream.img $WORK/*$M
expect_rc 0 $F remove t078
dmsetup remove t078o

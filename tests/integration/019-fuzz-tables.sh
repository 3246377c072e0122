#!/bin/bash
# Hostile input, from a seeded random generator (tests/fuzz/dmfuzz.py):
# - FLEECE_FUZZ_CASES (default 1500) malformed table lines for fleece-origin
#   and fleece and malformed messages to both: random and mutated words,
#   huge, negative and non-decimal numbers, missing and extra arguments, bad
#   option counts, overlong and non-ASCII names, non-existent and wrong
#   devices, binary junk, empty lines; a few two-target tables whose second
#   target fails after the first was built. FLEECE_FUZZ_CLI (default 16) of
#   them through dmsetup, the rest straight through the ioctls.
#   Each table is refused, or accepted only in a valid form (which prints
#   back as loaded and uses the devices it names); the forms the
#   documentation says work are accepted. Each message gets the errno a
#   model of the bitmaps and transactions predicts, and answers in the
#   documented format. Every refusal logs an error that Documentation/
#   lists. After every batch: no device, table or session left behind, the
#   bitmaps as the model says, no splat and no lost record in the kernel log.
# - afterwards the fleece-origin that took all those messages still works: a
#   view of it equals the point-in-time image (sha256) and a new bitmap
#   records the writes; every device the tables named takes a fleece-origin
#   of another chunk size (no origin state leaked);
# - FLEECE_FUZZ_FLIPS (default 60) damaged copies of a formatted metadata
#   device (random bytes flipped in superblocks, bitmap blocks, unused
#   slots and past the area; both copies of every pair valid and equal): the
#   activation is refused with the documented error exactly when both copies
#   of a pair in use are hit, else accepted with identical bitmaps; a
#   refused device is never written, an accepted one only in its
#   superblock (the attach and detach records) and in the damaged copy of
#   each pair in use that was hit, rewritten valid (logged; the next
#   activation finds the same bitmaps and writes no block).
# FLEECE_FUZZ_SEED (default 19) picks the cases. The kernel log is checked
# by the test itself and cleared twice (once it is checked): 10000 cases log
# more than its ring holds, and the suite's checks count lines.
. "$(dirname "$0")/lib.sh"

CASES=${FLEECE_FUZZ_CASES:-1500}
CLI=${FLEECE_FUZZ_CLI:-16}
FLIPS=${FLEECE_FUZZ_FLIPS:-60}
SEED=${FLEECE_FUZZ_SEED:-19}
FUZZ="python3 $TOP/tests/fuzz/dmfuzz.py"
splat='Oops|BUG:|WARNING:|soft lockup|hard LOCKUP|blocked for more than|KASAN|UBSAN|general protection fault|kernel BUG at|refcount_t:|possible circular locking|list_add corruption|list_del corruption'
mib=2048			# sectors
say() { info "$* [${SECONDS}s]"; }

# The earlier tests' records were checked by the suite already.
dmesg -C
# Opening a device number nobody has makes the kernel run modprobe for
# "block-major-M-N" (a process each, a second or so under TCG): not while
# thousands of junk device words are tried.
modprobe_path=$(cat /proc/sys/kernel/modprobe)
trap 'echo "$modprobe_path" > /proc/sys/kernel/modprobe' EXIT
echo > /proc/sys/kernel/modprobe

# ---- devices: slices of the three disks, none in the first MiB of a disk
# (a table may format a whole disk as metadata: blocks 0-1 only) ----
# A process costs about 0.3 s in the VM, dmsetup with udev sync seconds:
# create without waiting for udev, then settle once.
dmc() { dmsetup --noudevsync "$@"; }
lin() { dmc create "$1" --table "0 $2 linear $3 $4"; }
lin fz-bo $((16 * mib)) $ORIGIN $((1 * mib))		# base, persistent
lin fz-vo $((16 * mib)) $ORIGIN $((128 * mib))		# base, volatile
lin fz-x $((128 * mib)) $ORIGIN $((256 * mib))		# free: tables create origins here
lin fz-mod $((256 * mib)) $ORIGIN $((512 * mib))	# metadata damage
lin fz-s1 $((32 * mib)) $SCRATCH $((1 * mib))
lin fz-s2 $((32 * mib)) $SCRATCH $((64 * mib))
lin fz-s3 $((32 * mib)) $SCRATCH $((128 * mib))		# free scratch
lin fz-tiny 4 $SCRATCH $((200 * mib))
lin fz-lin $((1 * mib)) $SCRATCH $((256 * mib))		# a target without messages
lin fz-sf $((16 * mib)) $SCRATCH $((300 * mib))		# the final view
lin fz-xm $((4 * mib)) $META $((8 * mib))		# free metadata
lin fz-bm $((4 * mib)) $META $((16 * mib))
lin fz-mm $(((2 + 32 * 3 + 4) * 8)) $META $((32 * mib))	# damaged metadata
udevadm settle
BSZ=$((16 * mib))

dmc create fz-b --table "0 $BSZ fleece-origin /dev/mapper/fz-bo /dev/mapper/fz-bm 8"
dmc create fz-vb --table "0 $BSZ fleece-origin /dev/mapper/fz-vo - 16"
udevadm settle
dmsetup message fz-b 0 bitmap_add keep
dmsetup message fz-b 0 bitmap_add b1
dmsetup message fz-vb 0 bitmap_add vk
dd if=/dev/urandom of=/dev/mapper/fz-b bs=64k seek=16 count=16 oflag=direct status=none
view_create fz-v1 fz-b "0 $BSZ fleece /dev/mapper/fz-bo /dev/mapper/fz-s1 2 bitmap keep" ||
	fail "incremental view refused"
view_create fz-v2 fz-b "0 $BSZ fleece /dev/mapper/fz-bo /dev/mapper/fz-s2" || fail "view refused"
modrefs() { awk '$1 == "dm_fleece" { print $3 }' /proc/modules; }
refs0=$(modrefs)
say "base: persistent fz-b (bitmaps keep, b1; views fz-v1 with bitmap keep, fz-v2), volatile fz-vb (bitmap vk)"

# ---- tables and messages ----
export FZ_X=fz-x FZ_XM=fz-xm FZ_BO=fz-bo FZ_BM=fz-bm FZ_B=fz-b FZ_VO=fz-vo FZ_V=fz-vb \
	FZ_S1=fz-s1 FZ_S2=fz-s2 FZ_S3=fz-s3 FZ_TINY=fz-tiny FZ_V1=fz-v1 FZ_V2=fz-v2 \
	FZ_LIN=fz-lin FZ_ORIGIN=$ORIGIN FZ_SCRATCH=$SCRATCH FZ_META=$META \
	FZ_B_CHUNK=8 FZ_V_CHUNK=16 FZ_B_BITMAPS="keep b1" FZ_B_BUSY=keep FZ_B_SESSIONS=2 \
	FZ_V_BITMAPS=vk FZ_CASES=$CASES FZ_CLI=$CLI FZ_FLIPS=$FLIPS FZ_STATE=$WORK/state \
	FZ_WORK=$WORK FZ_MOD=fz-mod FZ_MM=fz-mm FLEECE_FUZZ_SEED=$SEED
say "$CASES cases (seed $SEED), $CLI of them through dmsetup"
FZ_PROFILE=${FLEECE_FUZZ_PROFILE:-} $FUZZ tables || fail "table and message fuzzing failed (seed $SEED)"
say "afterwards: fz-b keeps bitmaps '$(sed -n 's/^B //p' $WORK/state)' (the others removed), fz-vb has '$(sed -n 's/^V //p' $WORK/state)'; $(sed -n 's/^records //p' $WORK/state) kernel log records checked"
# Everything logged so far was checked; the rest of the test logs little.
dmesg -C
refs1=$(modrefs)
[ "$refs1" = "$refs0" ] || fail "dm_fleece is used $refs1 times, $refs0 before the fuzzing"

# ---- the base still works: a view equals the point-in-time image ----
dmsetup remove fz-v1
dmsetup remove fz-v2
dmsetup message fz-b 0 bitmap_add final
head -c $((4 << 20)) /dev/urandom > $WORK/a
head -c $((4 << 20)) /dev/urandom > $WORK/b
dd if=$WORK/a of=/dev/mapper/fz-b bs=1M oflag=direct status=none
pit=$(range_sha /dev/mapper/fz-b 0 $((BSZ * 512)))
view_create fz-vf fz-b "0 $BSZ fleece /dev/mapper/fz-bo /dev/mapper/fz-sf 3 bitmap final full" ||
	fail "a valid view is refused after the fuzzing"
dd if=$WORK/b of=/dev/mapper/fz-b bs=1M oflag=direct status=none
[ "$(range_sha /dev/mapper/fz-vf 0 $((BSZ * 512)))" = "$pit" ] ||
	fail "the view does not equal the point-in-time image"
[ "$(range_sha /dev/mapper/fz-b 0 $((4 << 20)))" = "$(sha256sum < $WORK/b | cut -d' ' -f1)" ] ||
	fail "the origin lost a write"
[ "$(dmsetup message fz-b 0 bitmap_changes final)" = "end 0+1024" ] ||
	fail "bitmap final: $(dmsetup message fz-b 0 bitmap_changes final), expected end 0+1024"
dmsetup message fz-vf 0 commit
dmsetup remove fz-vf
say "fz-b after the fuzzing: a view equals the point-in-time image (sha256 of 16 MiB), bitmap final has the 1024 written chunks"

# ---- no origin state left; damaged metadata ----
dmc remove fz-b
dmc remove fz-vb
FZ_LEAK="/dev/mapper/fz-x /dev/mapper/fz-bo /dev/mapper/fz-vo /dev/mapper/fz-s3 /dev/mapper/fz-tiny $ORIGIN $SCRATCH" \
	$FUZZ after || fail "leak or metadata damage fuzzing failed (seed $SEED)"

echo "$modprobe_path" > /proc/sys/kernel/modprobe
for d in fz-mm fz-mod fz-sf fz-lin fz-tiny fz-s3 fz-s2 fz-s1 fz-x fz-vo fz-bo fz-xm fz-bm; do
	dmc remove $d
done
[ -z "$(dmsetup ls | grep '^fz-')" ] || fail "devices left: $(dmsetup ls | grep '^fz-')"
out=$(dmesg | grep -E "$splat") && fail "kernel splat: $out"
say "done"

#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the VM for tests/crash/powercut.sh, on the persistent disks
# origin (256 MiB), meta (16 MiB) and ref (256 MiB):
#   FLEECE_PC_VERIFY=N  check power cut N: activate the fleece-origin (it must
#                       succeed), export bitmap b, and require every 4 KiB
#                       chunk where origin and ref differ to have its bit set;
#                       print "PASS powercut-N ..." or "FAIL powercut-N: ...".
#   FLEECE_PC_LOAD=1    then take the next "backup": copy the origin to ref,
#                       bitmap_clear b, print REF-DONE, start heavy writes on
#                       the fleece-origin, print LOAD-START, and wait to be
#                       killed by the host.
#   FLEECE_PC_TXN=1     before the load, write 4 MiB and open a backup
#                       transaction on b (a view with "bitmap b", scratch on
#                       the disk "scratch"), so the cut finds a frozen set.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
O=/dev/disk/by-id/virtio-origin
M=/dev/disk/by-id/virtio-meta
R=/dev/disk/by-id/virtio-ref
N=${FLEECE_PC_VERIFY:-0}
CH=8				# chunk: 4 KiB, the finest tracking

modprobe dm-mod
insmod "$top/drivers/md/dm-fleece.ko" || { echo "FAIL powercut-$N: insmod"; exit 1; }
sz=$(blockdev --getsz $O)
mark=$(dmesg | wc -l)
# no_gap: the boot units vouch, as on a real host after a power cut.
if ! dmsetup create pc --table "0 $sz fleece-origin $O $M $CH 1 no_gap"; then
	echo "FAIL powercut-$N: activation after the power cut refused:"
	dmesg | tail -n +$((mark + 1)) | grep -i fleece
	exit 1
fi

if [ "$N" != 0 ]; then
	st=$(dmsetup status pc)
	case $st in
	"0 $sz fleece-origin persistent 0 ok 1 b "*" 0") ;;
	*) echo "FAIL powercut-$N: status after the power cut: $st"; exit 1 ;;
	esac
	# Export bitmap b, a page at a time.
	: > /tmp/set
	start=0
	while :; do
		page=$(dmsetup message pc 0 bitmap_changes b $start) ||
			{ echo "FAIL powercut-$N: bitmap_changes b $start failed"; exit 1; }
		next=${page%% *}
		echo "${page#"$next"}" >> /tmp/set
		[ "$next" = end ] && break
		start=$next
	done
	python3 - $O $R /tmp/set $N $((CH * 512)) <<'PY'
import sys
o, r, setf, n, cb = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
bits = set()
for word in open(setf).read().split():
    first, count = map(int, word.split("+"))
    bits.update(range(first, first + count))
differ, missing = 0, []
step = 1 << 20
with open(o, "rb", buffering=0) as fo, open(r, "rb", buffering=0) as fr:
    off = 0
    while True:
        a, b = fo.read(step), fr.read(step)
        if not a and not b:
            break
        if a != b:
            for k in range(0, max(len(a), len(b)), cb):
                if a[k:k + cb] != b[k:k + cb]:
                    c = (off + k) // cb
                    differ += 1
                    if c not in bits:
                        missing.append(c)
        off += step
if missing:
    print("FAIL powercut-%s: chunk %d differs but bit not set (%d of %d differing chunks "
          "not in bitmap b; first: %s)" % (n, missing[0], len(missing), differ,
                                            " ".join(map(str, missing[:10]))))
    sys.exit(1)
print("PASS powercut-%s: %d chunks differ from the backup, all in bitmap b "
      "(%d bits set, superset by %d)" % (n, differ, len(bits), len(bits) - differ))
PY
	[ $? = 0 ] || exit 1
fi

[ "${FLEECE_PC_LOAD:-0}" = 1 ] || { dmsetup remove pc; exit 0; }

# The next backup: copy the origin to ref, then clear the bitmap. Nothing
# writes meanwhile, so the order does not matter for the check, except for
# a power cut during the copy: with the bitmap cleared only afterwards, every
# chunk of ref is either a copy of the origin or still the previous backup,
# whose differences from the origin the bitmap still covers.
dmsetup message pc 0 bitmap_list | grep -q '^b ' || dmsetup message pc 0 bitmap_add b
dd if=/dev/mapper/pc of=$R bs=1M iflag=direct oflag=direct status=none || { echo "ref copy failed"; exit 1; }
sync
dmsetup message pc 0 bitmap_clear b
echo REF-DONE

# With FLEECE_PC_TXN=1 the power goes while a backup transaction is open:
# after some writes (recorded in b), a view with "bitmap b" freezes them.
# Activation must merge the frozen set back into b, so the check above
# still holds: what changed since ref is in the frozen set or in the new b.
if [ "${FLEECE_PC_TXN:-0}" = 1 ]; then
	fio --output=/dev/null --filename=/dev/mapper/pc --name=burst --rw=randwrite --bs=64k \
		--direct=1 --io_size=4M --randrepeat=0 --randseed=$RANDOM
	dmsetup suspend pc
	dmsetup create pcv --table "0 $sz fleece $O /dev/disk/by-id/virtio-scratch 2 bitmap b" ||
		{ dmsetup resume pc; echo "cannot create the view"; exit 1; }
	dmsetup resume pc
	st=$(dmsetup status pc)
	[[ $st == *" b 0 1" ]] || { echo "no open transaction on b: $st"; exit 1; }
	echo TXN-OPEN
fi

# Heavy writes until the power goes: random 4 KiB and 64 KiB, direct with
# queue depth 16 and buffered with fsyncs, discards and write-zeroes. Rates
# are capped so that some 15 s of it leave most chunks unwritten: a bitmap
# with every bit set would prove nothing.
seed=${FLEECE_PC_SEED:-$RANDOM}
fio --output=/dev/null --filename=/dev/mapper/pc --time_based --runtime=3600 \
	--randrepeat=0 --randseed=$seed --size=$((sz * 512)) \
	--name=d4k --rw=randwrite --bs=4k --direct=1 --ioengine=libaio --iodepth=16 --rate_iops=400 \
	--name=d64k --rw=randwrite --bs=64k --direct=1 --ioengine=libaio --iodepth=16 --rate_iops=16 \
	--name=mixed --rw=randwrite --bssplit=4k/50:64k/50 --direct=1 --ioengine=libaio \
		--iodepth=16 --rate_iops=32 \
	--name=buffered --rw=randwrite --bs=64k --direct=0 --ioengine=psync --fsync=4 --rate_iops=8 \
	--name=buffered4k --rw=randwrite --bs=4k --direct=0 --ioengine=psync --fsync=16 --rate_iops=100 \
	--name=trim --rw=randtrim --bs=64k --direct=1 --ioengine=psync --rate_iops=4 &
(
	while :; do
		blkdiscard -z -o $(( (RANDOM % 4096) * 65536 )) -l 65536 /dev/mapper/pc
		sleep 0.5
	done
) &
# The load has started once the bitmap records writes (its dirty count,
# before the frozen-set count: with FLEECE_PC_TXN that is " b 0 1" first).
until [[ $(dmsetup status pc) =~ \ b\ [1-9][0-9]*\ [01]$ ]]; do
	sleep 0.2
done
echo LOAD-START
wait
echo "the load ended before the power cut"
exit 1

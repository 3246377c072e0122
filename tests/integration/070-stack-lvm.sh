#!/bin/bash
# A real stack: ext4 on an LVM logical volume on $ORIGIN. fleecectl attach
# under the mounted LV while a writer runs; a full and an incremental backup
# whose images equal their views (sha256), pass e2fsck and hold the files of
# their points in time; what LVM commands do to the attached LV; detach
# gives the LV its table back with every byte written through it.
#
# LVM while attached (what this test asserts is today's behaviour):
#   lvs, vgs             work (exit 0), warn about a device mismatch and the
#                        unexpected fleece-origin segment type
#   vgchange -an,        refused while the filesystem is mounted
#   lvremove
#   lvextend, lvreduce,  succeed and load a plain linear table over the LV:
#   lvrename             fleece-origin is gone without a word, views turn
#                        Invalid, LV-fleece-real is left behind, and writes
#                        are tracked by no bitmap. The metadata records that
#                        detach: a new attach with the same --meta, even
#                        with --no-gap, finds the bitmaps untrusted (gap),
#                        so no incremental backup misses them. Detach first.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mnt=$WORK/mnt
mkdir -p $mnt
VG=t070vg
LV=/dev/$VG/lv
DM=$VG-lv
REAL=$DM-fleece-real
mib=$((1024 * 1024))

# LVM in the VM: see only $ORIGIN, no devices file.
LVMCONF='devices { filter=["a|^/dev/disk/by-id/virtio-origin$|","r|.*|"] use_devicesfile=0 }'
lvm_() { local c=$1; shift; command "$c" --config "$LVMCONF" "$@"; }

cleanup() {
	set +e
	[ -n "${bgpid:-}" ] && { touch $WORK/bg.stop; wait $bgpid; }
	umount $mnt 2>/dev/null
	dmsetup remove $REAL 2>/dev/null
	lvm_ vgremove -f $VG >/dev/null 2>&1
	lvm_ pvremove -f $ORIGIN >/dev/null 2>&1
	true
}
trap cleanup EXIT

# dirty BITMAP: chunks set in bitmap BITMAP of the LV's fleece-origin.
dirty() { dmsetup message $DM 0 bitmap_list | awk -v b="$1" '$1 == b { print $2 }'; }
# table_type: the target type of the LV's live table.
table_type() { dmsetup table $DM | awk '{ print $3 }'; }

lvm_ pvcreate -q -y $ORIGIN >/dev/null
lvm_ vgcreate -q $VG $ORIGIN >/dev/null
lvm_ lvcreate -q -y -n lv -L 128M $VG >/dev/null
udevadm settle
[ -b $LV ] || fail "no $LV after lvcreate"
orig=$(dmsetup table $DM)
# The filesystem is smaller than the LV, so that lvreduce below cuts no data.
mkfs.ext4 -q -F $LV 112M
mount $LV $mnt
for i in 1 2 3 4; do
	pattern t070-a$i $((i * 100000)) > $mnt/a$i
done
sync
mark=$(dmesg_mark)

# attach under the mounted, written LV.
bg_writer_start $mnt bg
sleep 3
kill -0 $bgpid 2>/dev/null || fail "the background writer ended early"
expect_rc 0 $F attach $LV --meta $META
sleep 2
bg_writer_stop
# The metadata is bound to the LV by its device-mapper UUID (LVM-...).
[ "$(dmsetup table $DM)" = "0 262144 fleece-origin $(majmin /dev/mapper/$REAL) $(majmin $META) 128 2 origin_id dm-uuid-$(dmsetup info -c --noheadings -o uuid $DM)" ] ||
	fail "table of $DM after attach: $(dmsetup table $DM)"
[ "$(dmsetup table $REAL)" = "$orig" ] || fail "$REAL has '$(dmsetup table $REAL)', expected '$orig'"
info "attached under the mounted LV while files were written"

stack_backups $LV $mnt t070

# LVM commands while attached (and mounted), without a session.
expect_rc 0 lvm_ lvs $VG
grep -q ' lv ' $WORK/stdout || fail "lvs does not list the LV: $(cat $WORK/stdout)"
info "lvs: exit 0; lv attr '$(awk '$1 == "lv" { print $3 }' $WORK/stdout)'; said: $(tr '\n' ' ' < $WORK/stderr)"
expect_rc 0 lvm_ vgs $VG
grep -q "$VG" $WORK/stdout || fail "vgs does not list $VG"
info "vgs: exit 0"
expect_err 5 'contains a filesystem in use' lvm_ vgchange -an $VG
expect_err 5 'contains a filesystem in use' lvm_ lvremove -y $VG/lv
[ "$(table_type)" = fleece-origin ] || fail "a refused LVM command changed the table: $(dmsetup table $DM)"

# detach: the LV's own table back, every byte written through it kept.
files_sha $mnt $WORK/before-detach.sha
umount $mnt
want=$(whole_sha $LV)
[ "$(whole_sha /dev/mapper/$REAL)" = "$want" ] || fail "$REAL differs from $LV read through fleece-origin"
expect_rc 0 $F detach $LV
[ "$(dmsetup table $DM)" = "$orig" ] || fail "table after detach '$(dmsetup table $DM)', expected '$orig'"
! dmsetup info $REAL >/dev/null 2>&1 || fail "detach left $REAL"
[ "$(whole_sha $LV)" = "$want" ] || fail "the LV's bytes changed across detach"
e2fsck -fn $LV > $WORK/e2fsck.out 2>&1 || { cat $WORK/e2fsck.out >&2; fail "e2fsck finds errors in the LV after detach"; }
mount $LV $mnt
files_sha $mnt $WORK/after-detach.sha
diff -u $WORK/now.sha $WORK/after-detach.sha >&2 || fail "the LV's files differ from what was written through it"
info "detached: the original table back, the whole LV (sha256) and its files as written"

# lvextend while attached, with a view: LVM loads its linear table over
# fleece-origin. Today's behaviour, asserted so that a change shows.
expect_rc 0 $F attach $LV
expect_rc 0 $F snapshot $LV --scratch $SCRATCH --view t070v
expect_rc 0 lvm_ lvextend -L+8M $VG/lv
info "lvextend: exit 0: $(head -n1 $WORK/stdout)"
[ "$(dmsetup table $DM)" = "0 278528 linear $(majmin $ORIGIN) 2048" ] ||
	fail "after lvextend $DM has '$(dmsetup table $DM)'"
dmsetup info $REAL >/dev/null 2>&1 || fail "after lvextend $REAL is gone"
[ "$(view_stat t070v state)" = Invalid ] || fail "after lvextend the view is $(view_stat t070v state)"
! dd if=/dev/mapper/t070v of=/dev/null bs=64k count=1 iflag=direct status=none 2>/dev/null ||
	fail "the Invalid view can be read"
expect_rc 0 $F status
grep -q 'no fleece-origin devices' $WORK/stdout || fail "status after lvextend: $(cat $WORK/stdout)"
expect_err 3 "detach $DM: not attached \(its table is linear\)" $F detach $LV
info "FINDING: lvextend replaced fleece-origin with linear: tracking gone, view Invalid, $REAL left behind; detach refused"
expect_rc 0 $F release t070v
dmsetup remove $REAL
expect_rc 0 lvm_ lvreduce -f -L-8M $VG/lv

# lvreduce while attached: the same.
expect_rc 0 $F attach $LV
expect_rc 0 lvm_ lvreduce -f -L-8M $VG/lv
[ "$(dmsetup table $DM)" = "0 245760 linear $(majmin $ORIGIN) 2048" ] ||
	fail "after lvreduce $DM has '$(dmsetup table $DM)'"
dmsetup info $REAL >/dev/null 2>&1 || fail "after lvreduce $REAL is gone"
expect_err 3 "detach $DM: not attached \(its table is linear\)" $F detach $LV
info "FINDING: lvreduce -f replaced fleece-origin with linear the same way"
dmsetup remove $REAL
expect_rc 0 lvm_ lvextend -L+8M $VG/lv

# lvrename while attached (same size, persistent bitmap): the writes while
# the LV has LVM's table are in no bitmap, even after attaching again with
# the same metadata; an incremental backup would miss them.
expect_rc 0 $F attach $LV --meta $META
expect_rc 0 $F bitmap list $LV
grep -qw b $WORK/stdout || fail "bitmap b did not survive detach and attach: $(cat $WORK/stdout)"
n0=$(dirty b)
expect_rc 0 lvm_ lvrename $VG lv lv2
[ "$(dmsetup table $VG-lv2 | awk '{ print $3 }')" = linear ] ||
	fail "after lvrename $VG-lv2 has '$(dmsetup table $VG-lv2)'"
expect_err 3 "detach $VG-lv2: not attached \(its table is linear\)" $F detach /dev/$VG/lv2
pattern t070-z $mib > $mnt/z
sync
expect_rc 0 lvm_ lvrename $VG lv2 lv
[ "$(table_type)" = linear ] || fail "after lvrename back $DM has '$(dmsetup table $DM)'"
dmsetup remove $REAL
expect_rc 0 $F attach $LV --meta $META --no-gap
[ "$(dirty b)" = "$n0" ] || fail "behaviour changed: bitmap b now sees writes made while LVM's table was live (update this test)"
expect_rc 0 $F status --json
json_assert $WORK/stdout "[o['tracking'] for o in d['origins'] if o['name'] == '$DM'] == ['gap']"
expect_err 5 "attached after a time in which writes could pass it" \
	$F snapshot $LV --scratch $SCRATCH --bitmap b
info "FINDING: lvrename replaced fleece-origin with linear; 1 MiB written meanwhile is in no bitmap (b: $n0 chunks before and after), but the new attach, even with --no-gap, says gap and refuses an incremental backup"
files_sha $mnt $WORK/now.sha
expect_rc 0 $F detach $LV
[ "$(dmsetup table $DM)" = "$orig" ] || fail "table after the last detach '$(dmsetup table $DM)', expected '$orig'"

# (The read of the Invalid view above logs an I/O error: only ext4's count.)
if new_dmesg "$mark" | grep -E 'EXT4-fs (error|warning)'; then
	fail "ext4 logged errors"
fi
files_sha $mnt $WORK/final.sha
diff -u $WORK/now.sha $WORK/final.sha >&2 || fail "files changed across the last detach"
umount $mnt
e2fsck -fn $LV > $WORK/e2fsck.out 2>&1 || { cat $WORK/e2fsck.out >&2; fail "e2fsck finds errors in the LV at the end"; }
lvm_ vgchange -q -an $VG >/dev/null
lvm_ vgremove -q -f $VG >/dev/null
lvm_ pvremove -q -f $ORIGIN >/dev/null
info "LV intact at the end (files, e2fsck); VG removed"

#!/bin/bash
# /etc/fleecetab and fleecectl up/down/tab (issue 14): a create-mode line
# over $ORIGIN by its by-id path and an attach-mode line over a dm-linear
# device standing in for an LV. tab shows the plan and changes nothing; bad
# lines are refused with FILE:LINE: reason and change nothing; up sets both
# up with their bitmaps and is idempotent; down refuses sessions and open
# devices, then undoes it all, and what was written through fleece-origin
# is byte for byte on the raw devices. Last, the systemd generator's units.
#
# up vouches (no_gap), as at boot; the tables name their origins
# (origin_id). A manual down is a detach for maintenance: the next up finds
# the bitmaps untrusted ("gap") though it vouches; down --shutdown (the
# units' ExecStop) is not, and the bitmaps come back trusted.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))
tab=$WORK/fleecetab

cleanup() {
	exec 3<&- 2>/dev/null || true
	true
}
trap cleanup EXIT
load_module

# The "LV": the first 64 MiB of $SCRATCH; scratch for a view: the next 64.
# Metadata: two zeroed 16 MiB pieces of $META, one per origin.
lv_sz=$((64 * 2048))
dmsetup create t068lv --table "0 $lv_sz linear $SCRATCH 0"
dmsetup create t068sc --table "0 $lv_sz linear $SCRATCH $lv_sz"
zero_dev $META 0 $((32 * mib))
dmsetup create t068ma --table "0 32768 linear $META 0"
dmsetup create t068mb --table "0 32768 linear $META 32768"
udevadm settle
lv_table=$(dmsetup table t068lv)
stamp /dev/mapper/t068lv 0 $((16 * mib)) lv-before >/dev/null
o_sz=$(dev_sectors $ORIGIN)

cat > $tab <<EOF
# fleecetab for test 068
t068a  $ORIGIN  /dev/mapper/t068ma  mode=create,bitmaps=nightly+weekly

t068b /dev/mapper/t068lv	/dev/mapper/t068mb mode=attach,chunk-size=128K,bitmaps=daily   # the LV
t068-c /dev/mapper/t068nx - mode=create,noauto
EOF

# tab (= up --dry-run): the plan, with the vouch; nothing changes.
expect_rc 0 $F tab --tab $tab
cp $WORK/stdout $WORK/plan
want_a="t068a: would create /dev/mapper/t068a over $ORIGIN: 0 $o_sz fleece-origin $(majmin $ORIGIN) $(majmin /dev/mapper/t068ma) 128 3 no_gap origin_id virtio-origin"
want_b="t068b: would attach under t068lv (/dev/mapper/t068lv): 0 $lv_sz fleece-origin <t068lv-fleece-real> $(majmin /dev/mapper/t068mb) 256 3 no_gap origin_id dm-name-t068lv"
for l in "$want_a" "t068a: would add bitmap nightly" "t068a: would add bitmap weekly" \
	 "$want_b" "t068b: would add bitmap daily" "t068-c: noauto: skipped ('fleecectl up t068-c' sets it up)"; do
	grep -qxF -- "$l" $WORK/plan || { cat $WORK/plan >&2; fail "tab did not say '$l'"; }
done
expect_rc 0 $F up --dry-run --no-vouch --tab $tab
grep -q 'no_gap' $WORK/stdout && fail "up --no-vouch --dry-run still vouches: $(cat $WORK/stdout)"
grep -qF "fleece-origin $(majmin $ORIGIN) $(majmin /dev/mapper/t068ma) 128 2 origin_id virtio-origin" $WORK/stdout ||
	fail "up --dry-run --no-vouch: $(cat $WORK/stdout)"
! dmsetup info t068a >/dev/null 2>&1 || fail "tab created t068a"
[ "$(dmsetup table t068lv)" = "$lv_table" ] || fail "tab changed t068lv: $(dmsetup table t068lv)"
info "tab shows the tables (with '1 no_gap') and bitmaps up would make, and changes nothing"

# Bad lines: FILE:LINE: reason, exit 1, nothing changed.
bad() {
	local line=$1 re=$2
	{ cat $tab; echo "$line"; } > $WORK/bad.tab
	expect_err 1 "^fleecectl: $WORK/bad.tab:6: $re" $F up --no-vouch --tab $WORK/bad.tab
	grep -q 'nothing done' $WORK/stderr || fail "no 'nothing done' for '$line'"
	! dmsetup info t068a >/dev/null 2>&1 || fail "a refused tab created t068a ('$line')"
	[ "$(dmsetup table t068lv)" = "$lv_table" ] || fail "a refused tab changed t068lv ('$line')"
}
bad "t068d /dev/x" "2 fields, expected 4"
bad "t068d /dev/x - mode=copy" "mode 'copy' is neither 'create' nor 'attach'"
bad "t068d /dev/x - bitmaps=n" "no mode= option"
bad "t068d /dev/x - mode=create,chunk-size=3K" "chunk-size '3K': not a power of two"
bad "t068d /dev/x - mode=create,bitmaps=a/b" "'a/b' is not a valid bitmap name"
bad "t068d /dev/x - mode=create,,noauto" "an empty option"
bad "t068a /dev/x - mode=create" "NAME 't068a' is on line 2 already"
bad "t068d $ORIGIN - mode=create" "DEVICE $ORIGIN is on line 2 already"
bad "t068d /dev/x /dev/mapper/t068mb mode=create" "META /dev/mapper/t068mb is on line 4 already"
bad "t068/d /dev/x - mode=create" "NAME 't068/d' has the character '/'"
expect_err 1 "up nosuch: not in $tab" $F up --no-vouch --tab $tab nosuch
expect_err 1 "$WORK/none: No such file or directory" $F up --tab $WORK/none
! dmsetup info t068a >/dev/null 2>&1 || fail "up of an unknown name created t068a"

# up, the tab from $FLEECETAB.
expect_rc 0 env FLEECETAB=$tab $F up
cp $WORK/stdout $WORK/up1
real=$(majmin /dev/mapper/t068lv-fleece-real)
ta="0 $o_sz fleece-origin $(majmin $ORIGIN) $(majmin /dev/mapper/t068ma) 128 3 no_gap origin_id virtio-origin"
tb="0 $lv_sz fleece-origin $real $(majmin /dev/mapper/t068mb) 256 3 no_gap origin_id dm-name-t068lv"
[ "$(dmsetup table t068a)" = "$ta" ] || fail "t068a table '$(dmsetup table t068a)', expected '$ta'"
[ "$(dmsetup table t068lv)" = "$tb" ] || fail "t068lv table '$(dmsetup table t068lv)', expected '$tb'"
[ "$(dmsetup table t068lv-fleece-real)" = "$lv_table" ] ||
	fail "t068lv-fleece-real table '$(dmsetup table t068lv-fleece-real)', expected '$lv_table'"
! dmsetup info t068nx >/dev/null 2>&1 || fail "up set up the noauto line"
for l in "t068a: created /dev/mapper/t068a over $ORIGIN: $ta" "t068a: added bitmap nightly" \
	 "t068a: added bitmap weekly" "t068b: attached under t068lv (/dev/mapper/t068lv): $tb" \
	 "t068b: added bitmap daily"; do
	grep -qxF -- "$l" $WORK/up1 || { cat $WORK/up1 >&2; fail "up did not say '$l'"; }
done
expect_rc 0 $F bitmap list t068a --json
json_assert $WORK/stdout 'd["metadata"] == "persistent" and sorted(b["name"] for b in d["bitmaps"]) == ["nightly", "weekly"]'
expect_rc 0 $F bitmap list t068lv --json
json_assert $WORK/stdout 'd["metadata"] == "persistent" and [b["name"] for b in d["bitmaps"]] == ["daily"]'
info "up: t068a created, t068lv attached, their bitmaps added; the noauto line left"

# Idempotent: again, nothing changes; a missing bitmap is added back.
expect_rc 0 $F up --tab $tab
grep -qxF "t068a: up already, left alone: t068a: $ta" $WORK/stdout &&
grep -qxF "t068b: up already, left alone: t068lv: $tb" $WORK/stdout &&
grep -qxF "t068a: bitmap nightly exists" $WORK/stdout || { cat $WORK/stdout >&2; fail "second up: not reported as up"; }
grep -q 'added\|created\|attached under' $WORK/stdout && fail "second up changed something: $(cat $WORK/stdout)"
[ "$(dmsetup table t068a)" = "$ta" ] && [ "$(dmsetup table t068lv)" = "$tb" ] || fail "second up changed a table"
expect_rc 0 $F bitmap remove t068a weekly
expect_rc 0 $F up --tab $tab t068a
grep -qxF "t068a: added bitmap weekly" $WORK/stdout || fail "up did not add weekly back: $(cat $WORK/stdout)"
# Set up otherwise than the tab says: refused, nothing changed.
sed 's/chunk-size=128K/chunk-size=64K/' $tab > $WORK/other.tab
expect_err 1 "up t068b: t068lv is up with 128 KiB chunks, not 64 KiB" $F up --no-vouch --tab $WORK/other.tab t068b
sed 's|t068a  \([^ ]*\)  /dev/mapper/t068ma|t068a \1 -|' $tab > $WORK/other.tab
expect_err 1 "up t068a: t068a is up with the metadata device $(majmin /dev/mapper/t068ma), but the tab gives none" \
	$F up --no-vouch --tab $WORK/other.tab t068a
[ "$(dmsetup table t068a)" = "$ta" ] && [ "$(dmsetup table t068lv)" = "$tb" ] || fail "a refused up changed a table"
info "up again: both reported up already, nothing changed; a removed bitmap added back; a differing setup refused"

# Data through both fleece-origins; the bitmaps record it.
sa=$(stamp /dev/mapper/t068a $((100 * mib)) $((4 * mib)) a1)
sb=$(stamp /dev/mapper/t068lv $((8 * mib)) $((2 * mib)) b1)
[ "$(range_sha /dev/mapper/t068a $((100 * mib)) $((4 * mib)))" = "$sa" ] || fail "t068a reads back other data"
expect_rc 0 $F changes t068a nightly
[ "$(cat $WORK/stdout)" = "$((100 * mib)) $((4 * mib))" ] || fail "nightly lists '$(cat $WORK/stdout)'"
expect_rc 0 $F changes t068lv daily
[ "$(cat $WORK/stdout)" = "$((8 * mib)) $((2 * mib))" ] || fail "daily lists '$(cat $WORK/stdout)'"
# What fleece-origin shows: the whole LV, and 64 MiB of $ORIGIN around the
# stamp (all of it takes minutes in the VM).
win_a=$(range_sha /dev/mapper/t068a $((96 * mib)) $((64 * mib)))
full_b=$(range_sha /dev/mapper/t068lv 0 $((64 * mib)))
info "written through both; the bitmaps list exactly those ranges"

# down refuses an origin with a session (naming the view) and an open one.
expect_rc 0 $F snapshot t068lv --scratch /dev/mapper/t068sc --view t068v
expect_err 4 "detach t068lv: 1 session still uses it \(views: t068v\)" $F down --tab $tab t068b
expect_rc 0 $F release t068v
exec 3</dev/mapper/t068lv
expect_err 4 "down t068b: t068lv is in use \(open 1 time" $F down --tab $tab t068b
exec 3<&-
[ "$(dmsetup table t068lv)" = "$tb" ] || fail "a refused down changed t068lv"
info "down refused with a session (names the view) and while open"

# down: both gone, the LV's own table back, the data on the raw devices.
expect_rc 0 $F down --tab $tab
for l in "t068-c: not up (no /dev/mapper/t068-c)" "t068b: detached t068lv" "t068a: removed /dev/mapper/t068a"; do
	grep -qxF -- "$l" $WORK/stdout || { cat $WORK/stdout >&2; fail "down did not say '$l'"; }
done
! dmsetup info t068a >/dev/null 2>&1 || fail "down left t068a"
! dmsetup info t068lv-fleece-real >/dev/null 2>&1 || fail "down left t068lv-fleece-real"
[ "$(dmsetup table t068lv)" = "$lv_table" ] || fail "t068lv table after down: $(dmsetup table t068lv)"
[ "$(range_sha $ORIGIN $((96 * mib)) $((64 * mib)))" = "$win_a" ] || fail "raw $ORIGIN differs from what t068a showed"
[ "$(range_sha $SCRATCH 0 $((64 * mib)))" = "$full_b" ] || fail "raw $SCRATCH differs from what t068lv showed"
[ "$(range_sha $ORIGIN $((100 * mib)) $((4 * mib)))" = "$sa" ] || fail "raw $ORIGIN lacks the stamp"
[ "$(range_sha $SCRATCH $((8 * mib)) $((2 * mib)))" = "$sb" ] || fail "raw $SCRATCH lacks the stamp"
expect_rc 0 $F down --tab $tab
grep -qxF "t068b: not up (t068lv is no fleece-origin device)" $WORK/stdout || fail "second down: $(cat $WORK/stdout)"
info "down: removed and detached; raw devices byte-identical (sha256) to what fleece-origin showed; down again is a no-op"

# The bitmaps are on the metadata devices: up again finds them, untrusted:
# that down was a detach for maintenance (writes could pass them since).
tracking() { $F status --json | python3 -c 'import json, sys; print(" ".join(sorted(o["name"] + "=" + str(o["tracking"]) for o in json.load(sys.stdin)["origins"])))'; }
expect_rc 0 $F up --tab $tab
grep -qxF "t068a: bitmap weekly exists" $WORK/stdout && grep -qxF "t068b: bitmap daily exists" $WORK/stdout ||
	{ cat $WORK/stdout >&2; fail "up after down did not find the persistent bitmaps"; }
expect_rc 0 $F changes t068a nightly
[ "$(cat $WORK/stdout)" = "$((100 * mib)) $((4 * mib))" ] || fail "nightly after down/up lists '$(cat $WORK/stdout)'"
[ "$(tracking)" = "t068a=gap t068lv=gap" ] || fail "after a manual down and up, tracking: $(tracking)"
info "down, up: the persistent bitmaps and their changes are there, untrusted (a manual down)"

# down --shutdown, as the units stop at shutdown, and up as at boot: trusted.
for b in nightly weekly; do expect_rc 0 $F bitmap clear t068a $b; done
expect_rc 0 $F bitmap clear t068lv daily
[ "$(tracking)" = "t068a=ok t068lv=ok" ] || fail "after bitmap clear, tracking: $(tracking)"
stamp /dev/mapper/t068a $((200 * mib)) $((1 * mib)) a2 >/dev/null
expect_rc 0 $F down --shutdown --tab $tab
expect_rc 0 $F up --tab $tab
[ "$(tracking)" = "t068a=ok t068lv=ok" ] || fail "after down --shutdown and up, tracking: $(tracking)"
expect_rc 0 $F changes t068a nightly
[ "$(cat $WORK/stdout)" = "$((200 * mib)) $((1 * mib))" ] || fail "nightly after a shutdown lists '$(cat $WORK/stdout)'"
info "down --shutdown, up: bitmaps trusted, and they hold the write before the shutdown"
# Forced while open: writes may follow the detach, so it is not clean.
exec 7< /dev/mapper/t068lv
expect_err 0 "is open \\(--force\\): not declared a clean detach" \
	$F down --shutdown --force --tab $tab t068b
exec 7<&-
expect_rc 0 $F up --tab $tab
[ "$(tracking)" = "t068a=ok t068lv=gap" ] || fail "after a forced down --shutdown of an open device and up, tracking: $(tracking)"
# up again, the origins already up: it says gap, not lost.
expect_rc 0 $F up --tab $tab
grep -q "the bitmaps of .*t068lv.* are untrusted (gap" $WORK/stderr ||
	fail "up of an origin with a gap did not say so: $(cat $WORK/stderr)"
grep -q "tracking is lost" $WORK/stderr && fail "up calls a gap lost: $(cat $WORK/stderr)"
expect_rc 0 $F down --tab $tab
info "down --shutdown --force of an open device: not clean, the next up says gap"

# The generator: one unit per line, ordered after its devices.
gen=$WORK/gen
rm -rf $gen
mkdir -p $gen
FLEECETAB=$tab $TOP/systemd/fleecetab-generator $gen $gen $gen 2>$WORK/gen.err || fail "generator failed: $(cat $WORK/gen.err)"
[ ! -s $WORK/gen.err ] || fail "generator complained: $(cat $WORK/gen.err)"
ua="$gen/fleece@t068a.service"
ub="$gen/fleece@t068b.service"
uc="$gen/fleece@t068\\x2dc.service"
[ -f "$ua" ] && [ -f "$ub" ] && [ -f "$uc" ] || fail "generator wrote: $(ls $gen)"
[ "$(readlink "$gen/local-fs.target.wants/fleece@t068a.service")" = "../fleece@t068a.service" ] ||
	fail "local-fs.target does not want fleece@t068a.service"
[ -L "$gen/local-fs.target.wants/fleece@t068b.service" ] || fail "local-fs.target does not want fleece@t068b.service"
[ ! -e "$gen/local-fs.target.wants/fleece@t068\\x2dc.service" ] || fail "the noauto line is wanted at boot"
odev='dev-disk-by\x2did-virtio\x2dorigin.device'
[ "$(systemd-escape --path --suffix=device $ORIGIN)" = "$odev" ] || fail "systemd-escape says $(systemd-escape --path --suffix=device $ORIGIN)"
for l in "BindsTo=$odev" "After=$odev" "Requires=dev-mapper-t068ma.device" "After=dev-mapper-t068ma.device" \
	 "DefaultDependencies=no" "Before=local-fs-pre.target" "Wants=local-fs-pre.target" \
	 "Conflicts=umount.target" "Type=oneshot" "RemainAfterExit=yes" \
	 "ExecStart=/usr/sbin/fleecectl up --tab $tab t068a" "ExecStop=/usr/sbin/fleecectl down --shutdown --tab $tab t068a"; do
	grep -qxF -- "$l" "$ua" || { cat "$ua" >&2; fail "fleece@t068a.service lacks '$l'"; }
done
for l in "BindsTo=dev-mapper-t068lv.device" "After=dev-mapper-t068mb.device" \
	 "ExecStart=/usr/sbin/fleecectl up --tab $tab t068b"; do
	grep -qxF -- "$l" "$ub" || { cat "$ub" >&2; fail "fleece@t068b.service lacks '$l'"; }
done
grep -q '^Requires=' "$uc" && fail "fleece@t068\\x2dc.service requires a metadata device: META is '-'"
grep -qxF "ExecStart=/usr/sbin/fleecectl up --tab $tab t068-c" "$uc" || fail "fleece@t068\\x2dc.service: $(cat "$uc")"
if command -v systemd-analyze >/dev/null; then
	# Only the man pages and the installed fleecectl may be missing here.
	systemd-analyze verify "$ua" "$ub" 2>&1 | grep -v "Command 'man \|/usr/sbin/fleecectl" > $WORK/verify || true
	[ ! -s $WORK/verify ] || fail "systemd-analyze verify: $(cat $WORK/verify)"
fi
info "generator: fleece@NAME.service per line (escaped), BindsTo/After its devices, before local-fs-pre.target"

dmsetup remove t068lv
dmsetup remove t068sc
dmsetup remove t068ma
dmsetup remove t068mb

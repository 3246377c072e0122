#!/bin/bash
# fleecectl's command line (fleecectl(8), OPTIONS, EXIT STATUS, DEVICES):
# - the device-mapper UUIDs FLEECE-ORIGIN-<name> (create) and
#   FLEECE-VIEW-<name> (snapshot), their /dev/disk/by-id links, and a
#   renamed view keeping its UUID: its old name is refused (4), an
#   automatic name skips it; the view still holds the point in time;
# - exit codes by class: 2 usage (dropped short options too), 3 no such
#   device or the wrong kind, 4 busy or taken, 5 invalid session;
# - --json: a failure is a JSON object with error.code and error.message on
#   stdout, usage errors included; a success has no "error";
# - -v/--verbose after the command as before it;
# - bash completion names the views and origins from their UUIDs.
. "$(dirname "$0")/lib.sh"
F=$FLEECECTL
mib=$((1024 * 1024))

uuid() { dmsetup info -c --noheadings -o uuid "$1"; }

# json_error RC [TEXT]: stdout of the last expect_rc is one JSON object
# whose error.code is RC and whose error.message is a message on stderr
# (without "fleecectl: "), or, for an option getopt refused (it says why on
# stderr in its own words), contains TEXT.
json_error() {
	python3 - "$1" "$WORK/stdout" "$WORK/stderr" "${2:-}" <<'EOF' || fail "--json error output: see above"
import json, sys
want, out, err, text = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
try:
    doc = json.load(open(out))
except ValueError as e:
    sys.exit("stdout is not one JSON document (%s):\n%s" % (e, open(out).read()))
e = doc.get("error")
if not isinstance(e, dict) or e.get("code") != want or not e.get("message"):
    sys.exit("no error {code: %d, message} in %r" % (want, doc))
lines = open(err).read()
if text:
    if text not in e["message"]:
        sys.exit("error.message %r does not name %r" % (e["message"], text))
elif e["message"] not in lines:
    sys.exit("error.message %r is not on stderr:\n%s" % (e["message"], lines))
EOF
}

holder=
cleanup() {
	[ -n "$holder" ] && kill $holder 2>/dev/null
	true
}
trap cleanup EXIT

# --- UUIDs ------------------------------------------------------------------
expect_rc 0 $F create t074 $ORIGIN
[ "$(uuid t074)" = FLEECE-ORIGIN-t074 ] || fail "create: uuid '$(uuid t074)'"
# A second scratch for the renamed-view case, on the metadata disk.
dmsetup create t074s --table "0 $((32 * mib / 512)) linear $META 0"

before=$(stamp /dev/mapper/t074 0 $((4 * mib)) a074)
expect_rc 0 $F snapshot t074 --scratch $SCRATCH --view t074v
[ "$(uuid t074v)" = FLEECE-VIEW-t074v ] || fail "snapshot: view uuid '$(uuid t074v)'"
udevadm settle
[ "$(readlink -f /dev/disk/by-id/dm-uuid-FLEECE-VIEW-t074v)" = "$(readlink -f /dev/mapper/t074v)" ] ||
	fail "no /dev/disk/by-id/dm-uuid-FLEECE-VIEW-t074v for the view"
[ "$(readlink -f /dev/disk/by-id/dm-uuid-FLEECE-ORIGIN-t074)" = "$(readlink -f /dev/mapper/t074)" ] ||
	fail "no /dev/disk/by-id/dm-uuid-FLEECE-ORIGIN-t074 for the origin"
# The origin's table is what it was: the UUID is not in it.
dmsetup table t074 | grep -q "^0 $(dev_sectors $ORIGIN) fleece-origin " ||
	fail "origin table: $(dmsetup table t074)"
after=$(stamp /dev/mapper/t074 0 $((4 * mib)) b074)
[ "$(dev_sha /dev/mapper/t074v 0 $((4 * mib)))" = "$before" ] || fail "the view does not hold the point in time"
[ "$(dev_sha /dev/mapper/t074 0 $((4 * mib)))" = "$after" ] || fail "the origin does not hold the new data"
info "uuids FLEECE-ORIGIN-t074, FLEECE-VIEW-t074v and their by-id links; the view holds its point in time"

# A renamed view keeps its UUID.
dmsetup rename t074v t074w
[ "$(uuid t074w)" = FLEECE-VIEW-t074v ] || fail "rename changed the uuid"
expect_err 4 "snapshot t074v: the device-mapper UUID FLEECE-VIEW-t074v is taken by t074w" \
	$F snapshot t074 --scratch /dev/mapper/t074s --view t074v
! dmsetup info t074v >/dev/null 2>&1 || fail "a refused snapshot made t074v"
expect_rc 0 $F release t074w
# An automatic name skips a name whose UUID is taken.
expect_rc 0 $F snapshot t074 --scratch $SCRATCH
[ "$(cat $WORK/stdout)" = /dev/mapper/t074-snap0 ] || fail "snapshot printed '$(cat $WORK/stdout)'"
dmsetup rename t074-snap0 t074r
expect_rc 0 $F snapshot t074 -s /dev/mapper/t074s
[ "$(cat $WORK/stdout)" = /dev/mapper/t074-snap1 ] || fail "snapshot printed '$(cat $WORK/stdout)', not t074-snap1"
[ "$(uuid t074-snap1)" = FLEECE-VIEW-t074-snap1 ] || fail "t074-snap1: uuid '$(uuid t074-snap1)'"
expect_rc 0 $F release t074-snap1
expect_rc 0 $F release t074r
info "a renamed view keeps its UUID: its old name refused (4), an automatic name skips it"

# --- exit codes -------------------------------------------------------------
expect_err 2 "unrecognized option '--bogus'" $F status --bogus
expect_err 2 "invalid option -- 'f'" $F snapshot t074 --scratch $SCRATCH -f invalidate
expect_err 2 "invalid option -- 'n'" $F snapshot t074 --scratch $SCRATCH -n t074v
expect_err 2 "invalid option -- 's'" $F export t074v -s $WORK/sock
expect_err 2 "invalid option -- 't'" $F up -t $WORK/none
expect_err 2 "needs VIEW" $F release
expect_err 3 "status nosuch: no such device-mapper device" $F status nosuch
expect_err 3 "release nosuch: no such device-mapper device" $F release nosuch
expect_err 3 "release t074: not a fleece view" $F release t074
expect_err 3 "backup nosuch: no such device-mapper device" $F backup nosuch --to $WORK/img
expect_err 3 "status t074s: not a fleece-origin device or a fleece view" $F status t074s
expect_err 3 "detach t074: not attached" $F detach t074
expect_rc 0 $F snapshot t074 --scratch $SCRATCH --view t074v
expect_err 4 "remove t074: 1 session still uses it" $F remove t074
expect_err 4 "snapshot t074: a device named t074v exists already" \
	$F snapshot t074 --scratch /dev/mapper/t074s --view t074v
expect_err 4 "create t074: a device-mapper device of that name exists" $F create t074 $META
exec 3</dev/mapper/t074v
expect_err 4 "release t074v: in use" $F release t074v
exec 3<&-
# A full scratch invalidates the session (on-full invalidate): 5.
expect_rc 0 $F snapshot t074 --scratch /dev/mapper/t074s --view t074i
dd if=/dev/urandom of=/dev/mapper/t074 bs=1M count=48 oflag=direct status=none
[ "$(view_stat t074i state)" = Invalid ] || fail "t074i is $(view_stat t074i state) after 48 MiB on 32 MiB of scratch"
expect_err 5 "export t074i: the session is invalid" $F export t074i --socket $WORK/sock
expect_rc 0 $F release t074i
info "exit codes: 2 usage, 3 no such device or the wrong kind, 4 busy or taken, 5 invalid session"

# --- --json errors ------------------------------------------------------------
expect_rc 3 $F status nosuch --json
json_error 3
expect_rc 3 $F --verbose status --json t074s
json_error 3
expect_rc 2 $F status --json --bogus
json_error 2 "status: invalid option, or no argument given: --bogus"
expect_rc 2 $F bitmap add t074 x --json
json_error 2
expect_rc 1 $F changes t074v --json
json_error 1
expect_rc 0 $F status --json
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert "error" not in d, d' \
	$WORK/stdout || fail "status --json that succeeds has an error member"
info "--json: failures are {\"error\": {\"code\", \"message\"}} on stdout"

# --- -v after the command ---------------------------------------------------
expect_rc 0 $F -vvv status
grep -q '^fleecectl: libdevmapper: ' $WORK/stderr || fail "-vvv before status showed no libdevmapper messages"
expect_rc 0 $F status -vvv
grep -q '^fleecectl: libdevmapper: ' $WORK/stderr || fail "-vvv after status showed no libdevmapper messages"
grep -q '^t074 ' $WORK/stdout || fail "status -vvv did not list t074"
expect_rc 0 $F status t074 --verbose --verbose --verbose
grep -q '^fleecectl: libdevmapper: ' $WORK/stderr || fail "--verbose after status showed nothing"
expect_rc 0 $F status
! grep -q 'libdevmapper' $WORK/stderr || fail "status without -v was verbose"
info "-v/--verbose after the command works as before it"

# --- bash completion on real devices ---------------------------------------
complete_words() {
	bash -c '. "$1"; shift; COMP_WORDS=(fleecectl "$@"); COMP_CWORD=$#; _fleecectl
		printf "%s\n" "${COMPREPLY[@]}"' _ "$TOP/userspace/fleecectl.bash-completion" "$@" |
		sort -u | tr '\n' ' '
}
[ "$(complete_words release t074)" = "t074v " ] || fail "release t074<TAB>: '$(complete_words release t074)'"
[ "$(complete_words snapshot t07)" = "t074 " ] || fail "snapshot t07<TAB>: '$(complete_words snapshot t07)'"
# As a user, from sysfs alone (dmsetup cannot list targets without root).
got=$(setpriv --reuid=65534 --regid=65534 --clear-groups bash -c '. "$1"; COMP_WORDS=(fleecectl status t07);
	COMP_CWORD=2; _fleecectl; printf "%s\n" "${COMPREPLY[@]}"' _ "$TOP/userspace/fleecectl.bash-completion" |
	sort | tr '\n' ' ')
[ "$got" = "t074 t074v " ] || fail "status t07<TAB> as nobody: '$got'"
info "completion names t074 and t074v (as root, and as nobody from their UUIDs)"

expect_rc 0 $F release t074v
expect_rc 0 $F remove t074
dmsetup remove t074s

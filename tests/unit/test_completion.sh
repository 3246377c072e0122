#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Host test of fleecectl's bash completion (userspace/fleecectl.bash-completion):
# source it, set COMP_WORDS/COMP_CWORD as bash does, call _fleecectl, check
# COMPREPLY. Device names come from stand-ins for the helpers that read
# sysfs and dmsetup (the VM test 074-cli checks those on real devices).
# Prints its cases in cmocka's format, so that run-tests counts them.
set -u
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=../../userspace/fleecectl.bash-completion
. "$top/userspace/fleecectl.bash-completion" || exit 1
fleecectl=$top/userspace/fleecectl

_fleecectl_views() { echo v1; echo v2; }
_fleecectl_origins() { echo o1; echo o2; }
tab=$(mktemp)
trap 'rm -f "$tab"' EXIT
printf '# comment\nt1 create /dev/vdb -\n\nt2 attach vg/lv -\n' > "$tab"
export FLEECETAB=$tab

cases=0
failed=0
name=
# complete WORD...: the completions of the last word (the one being typed).
complete_words() {
	COMP_WORDS=(fleecectl "$@")
	COMP_CWORD=$#
	COMPREPLY=()
	_fleecectl
	printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
begin() { name=$1; cases=$((cases + 1)); echo "[ RUN      ] $name"; ok=1; }
check() {
	local want=$1 got
	shift
	got=$(complete_words "$@")
	if [ "$got" != "$want" ]; then
		echo "fleecectl $*<TAB>: got '$got', want '$want'"
		ok=0
	fi
}
# has WORD ARGS...: WORD among the completions; lacks: not.
has() {
	local w=$1
	shift
	complete_words "$@" | tr ' ' '\n' | grep -qx -- "$w" || { echo "fleecectl $*<TAB>: no '$w'"; ok=0; }
}
lacks() {
	local w=$1
	shift
	! complete_words "$@" | tr ' ' '\n' | grep -qx -- "$w" || { echo "fleecectl $*<TAB>: offers '$w'"; ok=0; }
}
end() {
	if [ $ok = 1 ]; then
		echo "[       OK ] $name"
	else
		echo "[  FAILED  ] $name"
		failed=$((failed + 1))
	fi
}

echo "[==========] Running 8 test(s)."

begin commands
check "attach backup bitmap changes create detach down export release remove snapshot status tab up verify" ""
check "snapshot status" s
check "status" -v st
check "--verbose --version" -V -v --ver
check "--verbose" --verb
end

begin names
check "v1 v2" release ""
check "" release v1 ""
check "v1 v2" backup --to img ""
check "v1 v2" export -p 10809 v
check "v2" export --socket /tmp/s v2
check "o1 o2" snapshot ""
check "o1 o2 v1 v2" status -v ""
check "o1 o2" remove o
end

begin bitmap-verbs
check "add clear list merge remove" bitmap ""
check "o1 o2" bitmap list ""
check "" bitmap list o1 ""
end

begin option-arguments
check "fail-writes invalidate" snapshot o1 --on-full ""
check "" snapshot o1 --view ""
check "o1 o2" snapshot --scratch /dev/null --view v ""
check "" create --chunk-size ""
end

begin options
# The short-option scheme: -s is --scratch in snapshot; -f and -n are not
# snapshot's; -c is create's --chunk-size, not backup's.
has -s snapshot -
has -b snapshot -
lacks -f snapshot -
lacks -n snapshot -
has -c create -
lacks -c backup -
has -f backup -
has -t backup -
lacks -t up -
has -n up -
lacks -s export -
check "--json" status --j
check "--scratch" snapshot o1 --sc
has --verbose release --
end

begin tab-names
check "t1 t2" up ""
check "t2" down --tab "$tab" t2
end

begin global-options
check "--help --verbose --version -V -h -v" -
end

# Every long option a command's usage line names is completed, and every one
# completed is in fleecectl's own usage (the two lists do not drift).
begin options-match-usage
if [ -x "$fleecectl" ]; then
	for cmd in create remove attach detach snapshot release bitmap changes status backup up down tab export; do
		usage=$("$fleecectl" "$cmd" --help | grep -oE -- '--[a-z-]+' | sort -u)
		comp=$(_fleecectl_options "$cmd" | tr ' ' '\n' | grep -E -- '^--' | grep -vxE -- '--(help|verbose)' | sort -u)
		if [ "$usage" != "$comp" ]; then
			echo "$cmd: usage and completion differ:"
			diff <(echo "$usage") <(echo "$comp")
			ok=0
		fi
	done
else
	echo "no $fleecectl (make -C userspace): not compared"
fi
end

echo "[==========] $cases test(s) run."
echo "[  PASSED  ] $((cases - failed)) test(s)."
if [ $failed -gt 0 ]; then
	echo "[  FAILED  ] $failed test(s), listed above:"
	exit 1
fi
exit 0

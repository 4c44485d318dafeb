#!/usr/bin/env bash
# Usage lines against help texts (issue 7.13), no device needed: for
# `hwkey --help` and every `hwkey CMD --help` (commands taken from the
# top-level help), each option the help text names (--name, or -in/-out)
# appears in the usage lines at its top.  (--help inside a subcommand's text
# points at the top-level help: not one of the subcommand's own.)
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
[[ -x $HWKEY_BIN ]] || hw_fail "$HWKEY_BIN not built (set top_builddir, run make)"
HW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/hwkey-$HW_TEST.XXXXXX")
trap hw_cleanup EXIT
cd "$HW_DIR"

# check_help NAME EXCLUDE HELPFILE: every option of HELPFILE's body is in its usage block.
check_help() {
    local name=$1 exclude=$2 file=$3 opt missing=() n
    # usage block: from the first line to the first empty line
    awk 'NF == 0 {exit} {print}' "$file" >usage.txt
    grep -q "^usage: hwkey" usage.txt || hw_fail "$name: the help does not start with a usage line: $(head -2 "$file")"
    # options named anywhere in the help, each once
    grep -oE '(^|[][ (|`,])--?[a-z][a-z0-9-]*' "$file" | sed 's/^[][ (|`,]//' | sort -u >opts.txt
    n=$(grep -c . opts.txt || true)
    ((n > 0)) || hw_fail "$name: found no option in the help (the parser is broken)"
    while read -r opt; do
        [[ $opt == "$exclude" ]] && continue
        grep -qE -- "(^|[][ |])$opt([] |]|\$)" usage.txt || missing+=("$opt")
    done <opts.txt
    ((${#missing[@]} == 0)) ||
        hw_fail "$name: the usage lines omit ${missing[*]}, which the help describes: $(cat usage.txt)"
}

"$HWKEY_BIN" --help >top.txt 2>top.err || hw_fail "hwkey --help: $(cat top.err)"
check_help "hwkey --help" "" top.txt
cmds=$(awk '/^commands:/ {on = 1; next} on && NF == 0 {exit} on {print $1}' top.txt)
[[ $(wc -w <<<"$cmds") -ge 9 ]] || hw_fail "hwkey --help lists too few commands: $cmds"
for cmd in $cmds; do
    "$HWKEY_BIN" "$cmd" --help >"$cmd.txt" 2>"$cmd.err" || hw_fail "hwkey $cmd --help: $(cat "$cmd.err")"
    check_help "hwkey $cmd --help" --help "$cmd.txt"
done
hw_log "ok: the usage lines of hwkey and of $(wc -w <<<"$cmds") commands name every option their help describes"
hw_log "PASS"

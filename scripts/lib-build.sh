# shellcheck shell=bash
# Sourced by scripts/test.sh (and its test): configure an out-of-tree build
# with given flags, so that what is then built is built with those flags.
#
# hwkey_build_configure SRC BUILD ARGS...: runs SRC/configure ARGS in BUILD.
# make does not rebuild an object when only the flags changed, so a build
# directory configured before with other arguments (scripts/demo.sh configures
# without --enable-werror) is cleaned first: otherwise `make` after a demo
# compiled nothing and no -Werror ever ran.
hwkey_build_configure() {
    local src=$1 build=$2 before='' after
    shift 2
    mkdir -p "$build"
    [[ -x $build/config.status ]] && before=$("$build/config.status" --config)
    (cd "$build" && "$src/configure" "$@") || return 1
    after=$("$build/config.status" --config)
    # objects built under other flags (a build never configured before has none)
    if [[ $before != "$after" && -n $(find "$build" -name '*.o' -print -quit) ]]; then
        echo "hwkey_build_configure: $build was configured with [${before}], now [${after}]: make clean, everything is rebuilt with the new flags"
        make -C "$build" clean >/dev/null || return 1
    fi
}

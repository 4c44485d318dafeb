# shellcheck shell=bash
# Helpers shared by the scripts and the integration tests (sourced, not run).
# Free loopback ports and stopping processes by pid, never by name.

# hwkey_port_busy PORT: true if something listens on 127.0.0.1:PORT.
hwkey_port_busy() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        ss -Htan "sport = :$port" 2>/dev/null | grep -q . && return 0
        return 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# hwkey_free_port [COUNT]: prints a random port P such that P..P+COUNT-1 are
# all unused on loopback.  Callers still retry when the bind then races.
hwkey_free_port() {
    local count=${1:-1} tries port i busy
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        busy=0
        for ((i = 0; i < count; i++)); do
            if hwkey_port_busy $((port + i)); then busy=1; break; fi
        done
        if ((busy == 0)); then echo "$port"; return 0; fi
    done
    echo "hwkey_free_port: no free loopback port found" >&2
    return 1
}

# hwkey_stop_pid PID [WHAT]: SIGTERM, wait up to 5 s, then SIGKILL.
hwkey_stop_pid() {
    local pid=$1 what=${2:-process} i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        # our own child may linger as a zombie until reaped
        if [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
            wait "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
    done
    echo "hwkey_stop_pid: $what ($pid) ignored SIGTERM, killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

# hwkey_stop_pidfile FILE EXPECTED_COMM: stop the process named in FILE, but
# only if it still is the program we started (a pid may have been reused).
hwkey_stop_pidfile() {
    local file=$1 comm=$2 pid
    [[ -s $file ]] || return 0
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] || return 0
    if [[ -r /proc/$pid/comm ]] && [[ $(cat "/proc/$pid/comm") == "$comm"* ]]; then
        hwkey_stop_pid "$pid" "$comm"
    fi
    rm -f "$file"
}

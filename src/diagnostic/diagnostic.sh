# The detached shutdown diagnostic, run as `/bin/sh -c SCRIPT shutdown-diagnostic ARGS...`.
# POSIX sh only (dash, bash --posix, BSD sh); every external tool is optional.
# Positional arguments, never interpolated into this text:
#   $1 signal name  $2 target pid  $3 correlation id  $4 UTC date  $5 timeout (display)
#   $6 "1" to show command lines  $7 watchdog seconds  $8 file size limit in 512-byte blocks
sig=$1 target=$2 id=$3 cmdline=$6 limit=$8
nl='
'
have() { command -v "$1" >/dev/null 2>&1; }
firstlines() {
    n=0
    while [ "$n" -lt "$1" ] && IFS= read -r l; do printf '%s\n' "$l"; n=$((n + 1)); done
}
lastlines() {
    if have tail; then tail -n "$1"; return; fi
    keep=$1
    set --
    while IFS= read -r l; do
        set -- "$@" "$l"
        if [ "$#" -gt "$keep" ]; then shift; fi
    done
    if [ "$#" -gt 0 ]; then printf '%s\n' "$@"; fi
}
processes() {
    printf '\n--- processes (top 60 by CPU) ---\n'
    if ! have ps; then echo 'ps not found on PATH; process table skipped'; return; fi
    if [ "$cmdline" = 1 ]; then col=args; else col=comm; fi
    out=$(ps -eo "pid,ppid,user,stat,pcpu,rss,etimes,$col" --sort=-pcpu 2>&1); st=$?
    if [ "$st" -ne 0 ]; then
        first=${out%%"$nl"*}
        out=$(ps -A -o "pid,ppid,user,stat,pcpu,rss,$col" 2>&1) || {
            printf 'ps failed (status %s): %s\n' "$st" "$first"; return
        }
        echo '(this ps cannot sort by CPU; unsorted)'
    fi
    printf '%s\n' "$out" | firstlines 61
}
tree() {
    printf '\n--- process tree of pid %s ---\n' "$target"
    if ! have pstree; then echo 'pstree not found on PATH; process tree skipped'; return; fi
    if [ "$cmdline" = 1 ]; then set -- -p -a; else set -- -p; fi
    pstree "$@" "$target" 2>&1 || echo "pstree failed (status $?)"
}
load() {
    printf '\n--- load average ---\n'
    if [ -r /proc/loadavg ] && IFS= read -r l </proc/loadavg; then
        printf '%s\n' "$l"
    elif have uptime; then
        uptime 2>&1
    else
        echo '/proc/loadavg unreadable and uptime not found; load average skipped'
    fi
}
kernel() {
    printf '\n--- kernel messages (last 40) ---\n'
    if have dmesg; then
        out=$(dmesg 2>&1); st=$?
        if [ "$st" -eq 0 ]; then printf '%s\n' "$out" | lastlines 40; return; fi
        printf 'dmesg not permitted or failed (status %s): %s\n' "$st" "${out%%"$nl"*}"
    else
        echo 'dmesg not found on PATH'
    fi
    if have journalctl; then
        echo 'falling back to journalctl -k'
        journalctl -k -n 40 --no-pager -q 2>&1 || echo "journalctl -k failed (status $?); kernel messages skipped"
    else
        echo 'journalctl not found on PATH; kernel messages skipped'
    fi
}
# Ignored dispositions survive exec, so every tool gets EFBIG instead of dying at the cap.
trap '' XFSZ
ulimit -f "$limit" 2>/dev/null || cap_note="could not set the size cap (ulimit -f $limit)"
printf '\n=== shutdown diagnostic @ %s ===\n' "$sig"
printf 'pid=%s correlation_id=%s date=%s timeout=%s diagnostic_pid=%s\n' "$target" "$id" "$4" "$5" "$$"
if [ -n "${cap_note-}" ]; then echo "$cap_note"; fi
# Backstop for when the process that spawned us is gone: kill the whole group ourselves.
if have sleep; then
    (
        trap 'kill "$s" 2>/dev/null; exit 0' TERM
        sleep "$7" & s=$!
        wait "$s" || exit 0
        printf '\n=== shutdown diagnostic %s: killed by its own %ss watchdog ===\n' "$id" "$7"
        kill -s KILL 0
    ) &
    watchdog=$!
fi
processes
tree
load
kernel
if [ -n "${watchdog-}" ]; then kill "$watchdog" 2>/dev/null; fi
printf '\n=== end of shutdown diagnostic %s ===\n' "$id"

#!/usr/bin/env bash
# A private, throwaway PostgreSQL server for tests.
#
# The README's test command starts one private PostgreSQL for the catalog tests and stops
# and removes it afterwards, so the tests never rely on a server (or data) that a previous
# run left behind. The server's whole state lives in a temp dir the caller made: initdb
# runs as an unprivileged user (initdb refuses root), the unix socket is in that dir, and
# TCP listens only on a free loopback port.
#
#   url=$(deploy/postgres.sh start DIR)   # prints postgres://zhiku@127.0.0.1:PORT/zhiku
#   deploy/postgres.sh stop DIR           # fast shutdown, then removes DIR entirely
#
# start prints exactly one line (the URL) to stdout; everything else goes to stderr. On
# failure it prints the tail of DIR/postgres.log, stops the server if it got that far and
# exits non-zero. stop is safe after a failed start and when DIR does not exist.
#
# Without initdb (in PATH or /usr/lib/postgresql/*/bin; the highest version wins), Debian's
# `postgresql` package is installed with apt-get. A system cluster that the package may
# start is never used. As root, the server runs as the package's `postgres` user, which
# then owns DIR.
set -euo pipefail

MARKER=.zhiku-postgres   # written first by start; stop will not remove a non-empty dir without it
START_ATTEMPTS=5          # a free port can be taken between picking it and binding it
WAIT_SECS=120             # machines are slow

# Connection settings from the caller's environment must not redirect our own clients.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGDATA
export LC_ALL=C

die() { echo "postgres.sh: $*" >&2; exit 1; }
usage() { die "usage: $0 start|stop DIR"; }

# Absolute path of an existing directory.
abspath() { (cd "$1" && pwd -P); }

# Runs a command as $run_user (root only; otherwise as ourselves), from / so the
# unprivileged user never needs access to the caller's working directory.
run_user=
as_pg() {
    if [ -z "$run_user" ] || [ "$run_user" = "$(id -un)" ]; then
        (cd / && "$@")
    elif command -v runuser >/dev/null; then
        (cd / && runuser -u "$run_user" -- "$@")
    else
        (cd / && setpriv --reuid="$run_user" --regid="$run_user" --init-groups -- "$@")
    fi
}

# The bin dir of the highest PostgreSQL version found, empty if none.
find_bindir() {
    local c candidates=() best= best_ver= ver
    if c=$(command -v initdb 2>/dev/null); then candidates+=("$(readlink -f "$c")"); fi
    for c in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$c" ] && candidates+=("$c")
    done
    for c in ${candidates[@]+"${candidates[@]}"}; do
        [ -x "$c" ] || continue
        # "initdb (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        ver=$("$c" --version 2>/dev/null | awk '{print $3}') || continue
        [ -n "$ver" ] || continue
        if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best_ver" "$ver" | sort -V | tail -n1)" = "$ver" ]; then
            best=$c best_ver=$ver
        fi
    done
    [ -n "$best" ] && dirname "$best"
    return 0
}

install_postgresql() {
    echo "postgres.sh: initdb not found; installing Debian's postgresql package" >&2
    command -v apt-get >/dev/null || die "initdb not found and there is no apt-get to install PostgreSQL"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "initdb not found; installing postgresql needs root or sudo"
        sudo=(sudo)
    fi
    local apt=(${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get -qq -y
               -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    if ! "${apt[@]}" install --no-install-recommends postgresql; then
        # A fresh machine may have no package lists yet.
        "${apt[@]}" update
        "${apt[@]}" install --no-install-recommends postgresql
    fi
}

# A loopback TCP port nobody listens on, asked from the kernel when python3 is there.
free_port() {
    local p i
    if command -v python3 >/dev/null &&
        p=$(python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null) && [ -n "$p" ]; then
        echo "$p"
        return
    fi
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if command -v ss >/dev/null; then
            [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return; }
        elif ! (exec 2>/dev/null; : >"/dev/tcp/127.0.0.1/$p"); then
            echo "$p"
            return
        fi
    done
    die "found no free loopback port"
}

# ---- start ---------------------------------------------------------------------------

started=0 dir= bindir= pg_ctl=
start_failed() {
    local rc=$?
    [ "$rc" -ne 0 ] || return 0
    echo "postgres.sh: start failed (exit $rc)" >&2
    if [ -s "$dir/postgres.log" ]; then
        echo "---- last lines of $dir/postgres.log ----" >&2
        tail -n 40 "$dir/postgres.log" >&2
    fi
    if [ "$started" = 1 ] && [ -f "$dir/data/postmaster.pid" ]; then
        as_pg "$pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 >&2 || true
    fi
}

# Sets URL. Its stdout is the caller's stderr (see the bottom of the file).
do_start() {
    dir=$1
    mkdir -p "$dir"
    dir=$(abspath "$dir")
    [ ! -e "$dir/data" ] || die "$dir/data exists: start needs a fresh dir"
    : >"$dir/$MARKER"
    trap start_failed EXIT

    bindir=$(find_bindir)
    if [ -z "$bindir" ]; then
        install_postgresql
        bindir=$(find_bindir)
        [ -n "$bindir" ] || die "postgresql installed, but no initdb in PATH or /usr/lib/postgresql/*/bin"
    fi
    local tool
    for tool in initdb pg_ctl pg_isready createdb; do
        [ -x "$bindir/$tool" ] || command -v "$tool" >/dev/null ||
            die "no $tool in $bindir or PATH"
    done
    bin() { if [ -x "$bindir/$1" ]; then echo "$bindir/$1"; else command -v "$1"; fi; }
    pg_ctl=$(bin pg_ctl)
    echo "postgres.sh: using $(bin initdb) ($("$(bin initdb)" --version))" >&2

    # The socket path (DIR/.s.PGSQL.PORT) must fit in sun_path (107 bytes).
    [ "${#dir}" -le 90 ] || die "$dir is too long for a unix socket path; use a shorter temp dir"

    if [ "$(id -u)" -eq 0 ]; then
        getent passwd postgres >/dev/null ||
            die "running as root, but there is no 'postgres' user to run the server as"
        run_user=postgres
        chown -R postgres: "$dir"
        as_pg test -w "$dir" ||
            die "user postgres cannot write $dir (is a parent directory closed to it?)"
    fi

    if ! as_pg "$(bin initdb)" -D "$dir/data" -U zhiku --auth=trust --encoding=UTF8 \
            --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    fi
    cat >>"$dir/data/postgresql.conf" <<EOF

# deploy/postgres.sh: a private, throwaway test server
listen_addresses = '127.0.0.1'
unix_socket_directories = '${dir//\'/\'\'}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 64MB
EOF

    local attempt port log_size ok=0
    for ((attempt = 1; attempt <= START_ATTEMPTS; attempt++)); do
        port=$(free_port)
        log_size=$(stat -c %s "$dir/postgres.log" 2>/dev/null || echo 0)
        started=1
        if as_pg "$pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" \
                -w -t "$WAIT_SECS" >&2; then
            ok=1
            break
        fi
        # Retry with another port only when this one was taken meanwhile.
        if tail -c +"$((log_size + 1))" "$dir/postgres.log" 2>/dev/null |
                grep -qE 'could not bind|Address already in use|could not create any TCP/IP sockets'; then
            echo "postgres.sh: port $port was taken (attempt $attempt of $START_ATTEMPTS)" >&2
            # pg_ctl gave up on a postmaster that exited; make sure nothing is left running.
            as_pg "$pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 >/dev/null 2>&1 || true
            continue
        fi
        die "the server did not start"
    done
    [ "$ok" = 1 ] || die "the server did not start after $START_ATTEMPTS ports"

    local deadline=$((SECONDS + WAIT_SECS))
    until "$(bin pg_isready)" -q -h 127.0.0.1 -p "$port" -U zhiku -d postgres -t 5; do
        [ "$SECONDS" -lt "$deadline" ] || die "the server did not accept connections within ${WAIT_SECS}s"
        sleep 0.2
    done
    "$(bin createdb)" -h 127.0.0.1 -p "$port" -U zhiku -O zhiku zhiku

    URL="postgres://zhiku@127.0.0.1:$port/zhiku"
    echo "$URL" >"$dir/url"
    trap - EXIT
}

# ---- stop ----------------------------------------------------------------------------

do_stop() {
    dir=$1
    [ -d "$dir" ] || return 0
    dir=$(abspath "$dir")
    local home
    home=$(abspath "${HOME:-/}" 2>/dev/null || echo /)
    case $dir in
        / | "$home") die "refusing to remove $dir" ;;
    esac
    if [ ! -e "$dir/$MARKER" ] && [ -n "$(ls -A "$dir")" ]; then
        die "$dir was not made by '$0 start' (no $MARKER); not removing it"
    fi

    local data=$dir/data pid
    if [ -f "$data/postmaster.pid" ]; then
        if [ "$(id -u)" -eq 0 ]; then
            run_user=$(stat -c %U "$data")
            [ "$run_user" != root ] || run_user=
        fi
        bindir=$(find_bindir)
        pg_ctl=${bindir:+$bindir/pg_ctl}
        [ -n "$pg_ctl" ] && [ -x "$pg_ctl" ] || pg_ctl=$(command -v pg_ctl || true)
        if [ -z "$pg_ctl" ] || ! as_pg "$pg_ctl" stop -D "$data" -m fast -w -t 60 >&2; then
            # No pg_ctl, or it failed: end the postmaster named in the pid file, if it is
            # still running from this data dir.
            pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)
            if [[ $pid =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ] &&
                    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$data"; then
                echo "postgres.sh: pg_ctl stop failed; sending SIGQUIT to postmaster $pid" >&2
                kill -QUIT "$pid" 2>/dev/null || true
                for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf -- "$dir"
}

[ $# -eq 2 ] && [ -n "$2" ] || usage
case $1 in
    start)
        # Everything do_start prints goes to stderr; stdout carries only the URL. (Bash keeps
        # the real stdout close-on-exec meanwhile, so the server does not hold it open and
        # `url=$(deploy/postgres.sh start DIR)` returns.)
        do_start "$2" >&2
        printf '%s\n' "$URL"
        ;;
    stop) do_stop "$2" >&2 ;;
    *) usage ;;
esac

#!/usr/bin/env bash
# A single-node SLURM on this machine, from the OS packages (Debian/Ubuntu), for `make test-slurm`
# (docs/cluster.md): munge, MariaDB and slurmdbd (accounting, so `sacct` answers), slurmctld, and slurmd
# with this machine's real core count, started under `nice` so its jobs yield to other work.
#
#   scripts/slurm_local.sh up                      # install what is missing, write the configs, start what is not running
#   SLURM_ACCOUNTING=0 scripts/slurm_local.sh up   # the same cluster without accounting (`sacct` fails)
#   scripts/slurm_local.sh down                    # stop every daemon this script starts (by its pid file)
#   scripts/slurm_local.sh status
#
# Idempotent: `up` twice is `up` once; a changed setting restarts only the daemons that read it.
# Exit 0: done; 77: skipped, with one line that says why (not root, no package manager, packages that do not
# install, or a SLURM configuration this script did not write, which it never touches); other: an error, naming
# the daemon's log.
set -uo pipefail

ACCOUNTING=${SLURM_ACCOUNTING:-1}
MARK="# written by scripts/slurm_local.sh"
ETC=/etc/slurm
RUN=/run/slurm_local
LOG=/var/log/slurm_local
STATE=/var/lib/slurm_local
CLUSTER=local
PARTITION=cpu
DB_PASS=slurm_local
PACKAGES="slurmctld slurmd slurmdbd slurm-client munge mariadb-server"

skip() { echo "slurm_local: skipped: $*"; exit 77; }
fail() { echo "slurm_local: error: $*" >&2; exit 1; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# wait_for SECONDS WHAT CMD...: poll CMD every half second until it succeeds
wait_for() {
    local n=$(($1 * 2)) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        n=$((n - 1)); [ "$n" -gt 0 ] || return 1; sleep 0.5
    done
}

check_machine() {
    [ "$(id -u)" = 0 ] || skip "needs root (it installs packages and starts daemons)"
    if [ -f "$ETC/slurm.conf" ] && ! grep -qF "$MARK" "$ETC/slurm.conf"; then
        skip "$ETC/slurm.conf exists and was not written by this script: a real cluster's configuration is never touched"
    fi
}

install_packages() {
    local missing=""
    for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null 2>&1 || skip "no apt-get to install$missing"
    echo "slurm_local: installing$missing (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES; } \
        >"$LOG/apt.log" 2>&1 || skip "apt-get install$missing failed (offline?): $(tail -1 "$LOG/apt.log")"
}

# write FILE MODE: stdin into FILE if it differs; exit status 0 when it changed
write() {
    local new; new=$(cat)
    if [ -f "$1" ] && [ "$(cat "$1")" = "$new" ]; then return 1; fi
    printf '%s\n' "$new" >"$1"; chmod "$2" "$1"; return 0
}

slurm_conf() {
    local host cpus mem acct gather
    host=$(hostname -s); cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    if [ "$ACCOUNTING" = 1 ]; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
        gather="JobAcctGatherType=jobacct_gather/linux"
    else
        acct="AccountingStorageType=accounting_storage/none"
        gather="JobAcctGatherType=jobacct_gather/none"
    fi
    cat <<EOF
$MARK: a one-node test cluster (docs/cluster.md)
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# scancel's SIGTERM is logged and ignored by a submitit job; SIGKILL follows after KillWait (SLURM's default: 30 s)
KillWait=5
$acct
$gather
JobAcctGatherFrequency=5
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

slurmdbd_conf() {
    cat <<EOF
$MARK
DbdHost=localhost
SlurmUser=root
AuthType=auth/munge
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
}

start_munge() {
    alive /run/munge/munged.pid && return 0
    mkdir -p /run/munge && chown munge:munge /run/munge
    [ -f /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 && chown munge:munge /etc/munge/munge.key; }
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid >>"$LOG/munged.log" 2>&1 ||
        fail "munged did not start ($LOG/munged.log)"
    wait_for 10 munge sh -c 'munge -n | unmunge' || fail "munge does not answer ($LOG/munged.log)"
}

start_mariadb() {
    alive /run/mysqld/mysqld.pid || {
        mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
        setsid nohup mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
            >>"$LOG/mariadb.log" 2>&1 </dev/null &
        wait_for 60 mariadb mysqladmin ping || fail "MariaDB did not start ($LOG/mariadb.log)"
    }
    mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || fail "could not create the accounting database"
}

start_slurmdbd() {
    alive "$RUN/slurmdbd.pid" && [ "$1" = 0 ] && return 0
    stop "$RUN/slurmdbd.pid"
    slurmdbd >>"$LOG/slurmdbd.log" 2>&1 || fail "slurmdbd did not start ($LOG/slurmdbd.log)"
    wait_for 30 slurmdbd sacctmgr -n list cluster || fail "slurmdbd does not answer ($LOG/slurmdbd.log)"
    sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null ||
        fail "sacctmgr could not add cluster $CLUSTER"
}

start_slurm() {  # $1: 1 when slurm.conf changed
    if ! alive "$RUN/slurmctld.pid" || [ "$1" = 1 ]; then
        stop "$RUN/slurmctld.pid"
        slurmctld >>"$LOG/slurmctld.log" 2>&1 || fail "slurmctld did not start ($LOG/slurmctld.log)"
    fi
    wait_for 30 slurmctld scontrol ping || fail "slurmctld does not answer ($LOG/slurmctld.log)"
    if ! alive "$RUN/slurmd.pid" || [ "$1" = 1 ]; then
        stop "$RUN/slurmd.pid"
        nice -n 10 slurmd >>"$LOG/slurmd.log" 2>&1 || fail "slurmd did not start ($LOG/slurmd.log)"
    fi
    local host; host=$(hostname -s)
    wait_for 60 slurmd sh -c "sinfo -h -n $host -o %T | grep -Eq '^(idle|mixed|allocated)'" || {
        scontrol update nodename="$host" state=resume >/dev/null 2>&1
        wait_for 30 slurmd sh -c "sinfo -h -n $host -o %T | grep -Eq '^(idle|mixed|allocated)'" ||
            fail "node $host is not up: $(sinfo -h -n "$host" -o '%T %E') ($LOG/slurmd.log)"
    }
}

stop() {  # stop the daemon of a pid file, if it runs
    alive "$1" || return 0
    local pid; pid=$(cat "$1")
    kill "$pid" 2>/dev/null
    wait_for 30 stop sh -c "! kill -0 $pid" || { kill -9 "$pid" 2>/dev/null; sleep 1; }
    rm -f "$1"
}

up() {
    check_machine
    mkdir -p "$RUN" "$LOG" "$STATE/slurmctld" "$STATE/slurmd" "$ETC"
    install_packages
    local changed=0 dbd_changed=0
    slurm_conf | write "$ETC/slurm.conf" 644 && changed=1
    start_munge
    if [ "$ACCOUNTING" = 1 ]; then
        slurmdbd_conf | write "$ETC/slurmdbd.conf" 600 && dbd_changed=1
        start_mariadb
        start_slurmdbd "$dbd_changed"
    fi
    start_slurm "$changed"
    echo "slurm_local: up: partition $PARTITION on $(hostname -s), $(nproc) CPUs, accounting $([ "$ACCOUNTING" = 1 ] && echo on || echo off) (logs in $LOG)"
}

down() {
    [ "$(id -u)" = 0 ] || skip "needs root"
    stop "$RUN/slurmd.pid"
    stop "$RUN/slurmctld.pid"
    stop "$RUN/slurmdbd.pid"
    if alive /run/mysqld/mysqld.pid; then mysqladmin shutdown >/dev/null 2>&1 || stop /run/mysqld/mysqld.pid; fi
    stop /run/munge/munged.pid
    echo "slurm_local: down"
}

status() {
    for f in /run/munge/munged.pid /run/mysqld/mysqld.pid "$RUN/slurmdbd.pid" "$RUN/slurmctld.pid" "$RUN/slurmd.pid"; do
        printf '%-32s %s\n' "$f" "$(alive "$f" && echo "running (pid $(cat "$f"))" || echo stopped)"
    done
    alive "$RUN/slurmctld.pid" && sinfo
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status   (SLURM_ACCOUNTING=0 $0 up: without accounting)" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on loopback, for the tests (tests/test_slurm.py) and for
# trying profiles/slurm on a workstation. Debian/Ubuntu, as root, no systemd needed.
#
#   scripts/slurm_local.sh start    install slurm + munge if missing (apt-get), start the cluster,
#                                   wait until its node is idle
#   scripts/slurm_local.sh stop     stop only the daemons this script started (pid files below)
#   scripts/slurm_local.sh status   exit 0 when the cluster answers and its node is usable
#   scripts/slurm_local.sh env      print `export SLURM_CONF=...` (eval it to use sbatch/squeue)
#
# Everything lives under $CIRFLOW_SLURM_DIR (default /tmp/cirflow-slurm): slurm.conf, gres.conf,
# a private munge key and socket, state, logs and pid files. Clients find the cluster through
# SLURM_CONF; no file under /etc is written. The one shared path is /run/slurm/conf, made a symlink
# to our config folder while the cluster runs: the job step that snakemake's jobstep executor
# starts (`srun` inside the job) drops SLURM_CONF from its environment and then looks at
# /etc/slurm/slurm.conf, then /run/slurm/conf/slurm.conf (a configless slurmd's cache). For the
# same reason the script refuses to start where either path already belongs to another SLURM.
#
# The cluster: one node (the line from `slurmd -C`) with a fake GPU (Gres=gpu:1, gres.conf
# File=/dev/null), select/cons_tres, proctrack/linuxproc, task/none, no slurmdbd (so `sacct`
# fails: use the plugin's `--slurm-status-command squeue`), MinJobAge=600 so finished jobs stay
# visible to squeue/scontrol for 10 minutes.
#
# Exit codes: 0 ok; 1 failed; 3 cannot start here (not root, no apt-get, a system SLURM present).
set -euo pipefail

STATE=${CIRFLOW_SLURM_DIR:-/tmp/cirflow-slurm}
CTLD_PORT=${CIRFLOW_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${CIRFLOW_SLURM_SLURMD_PORT:-16818}
CLUSTER=cirflowlocal
PARTITION=local
CONF=$STATE/etc/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket.2
RUN_CONF_DIR=/run/slurm/conf
NODE=$(hostname -s)
WAIT_S=${CIRFLOW_SLURM_WAIT_S:-60}

log() { echo "slurm_local: $*" >&2; }
die() { local code=$1; shift; log "$*"; exit "$code"; }

# Only a process whose pid file we wrote and whose command is the expected daemon is ours.
pid_of() {  # pid_of NAME BINARY
    local f=$STATE/run/$1.pid pid
    [[ -s $f ]] || return 1
    pid=$(tr -dc 0-9 <"$f")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' </proc/"$pid"/cmdline | grep -q -- "$2" || return 1
    echo "$pid"
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die 3 "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]} (apt-get)"
    # Keep the packages' init scripts from starting system daemons during the install.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >"$STATE/log/apt.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "apt-get install failed, trying apt-get update first"
        rc=0
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}"; } >>"$STATE/log/apt.log" 2>&1 || rc=$?
    fi
    ((added_policy)) && rm -f "$policy"
    ((rc == 0)) || die 3 "apt-get could not install ${missing[*]} (see $STATE/log/apt.log)"
}

write_config() {
    local node_line
    node_line=$(slurmd -C | head -n1)
    [[ $node_line == NodeName=* ]] || die 1 "unexpected 'slurmd -C' output: $node_line"
    # slurmd -C names the node after the host; we address it on loopback.
    node_line="NodeName=$NODE NodeAddr=127.0.0.1 ${node_line#NodeName=* } Gres=gpu:1 State=UNKNOWN"
    cat >"$CONF" <<CONF
# Written by scripts/slurm_local.sh: single node on loopback, fake GPU, no accounting.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
$node_line
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    echo "NodeName=$NODE Name=gpu File=/dev/null" >"$STATE/etc/gres.conf"
}

our_run_conf() { [[ -L $RUN_CONF_DIR && $(readlink "$RUN_CONF_DIR") == "$STATE/etc" ]]; }

node_state() { SLURM_CONF=$CONF sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1; }

cluster_ok() {
    pid_of slurmctld slurmctld >/dev/null && pid_of slurmd slurmd >/dev/null || return 1
    case $(node_state) in idle* | mixed* | allocated* | completing*) return 0 ;; esac
    return 1
}

start() {
    [[ $(id -u) == 0 ]] || die 3 "must run as root (it installs packages and starts slurmd)"
    mkdir -p "$STATE"/{etc,munge,munge-key,ctld,spool,run,log}
    # munged wants its socket directory reachable by every user, its key private.
    chmod 755 "$STATE" "$STATE/munge"
    chmod 700 "$STATE/munge-key"
    install_packages
    if cluster_ok; then
        log "already running (SLURM_CONF=$CONF)"
        return 0
    fi
    if [[ -e /etc/slurm/slurm.conf ]]; then
        die 3 "/etc/slurm/slurm.conf exists: this machine has its own SLURM; not starting a second one"
    fi
    if [[ -e $RUN_CONF_DIR || -L $RUN_CONF_DIR ]] && ! our_run_conf; then
        die 3 "$RUN_CONF_DIR belongs to another (configless) SLURM on this machine; not starting"
    fi
    stop_daemons quiet
    write_config

    if [[ ! -s $STATE/munge-key/munge.key ]]; then
        mungekey --create --keyfile="$STATE/munge-key/munge.key" --force >/dev/null
        chmod 600 "$STATE/munge-key/munge.key"
    fi
    munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge-key/munge.key" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge-key/munged.seed" ||
        die 1 "munged did not start (see $STATE/log/munged.log)"

    export SLURM_CONF=$CONF
    # -c: start from a clean state (no jobs from an earlier run).
    slurmctld -c -f "$CONF" || die 1 "slurmctld did not start (see $STATE/log/slurmctld.log)"
    slurmd -f "$CONF" -N "$NODE" || die 1 "slurmd did not start (see $STATE/log/slurmd.log)"
    # `srun` inside a job (snakemake's jobstep executor) runs without SLURM_CONF; after
    # /etc/slurm/slurm.conf it reads /run/slurm/conf/slurm.conf (where a configless slurmd keeps
    # its copy). Point that path at our config while the cluster runs.
    if [[ ! -e $RUN_CONF_DIR && ! -L $RUN_CONF_DIR ]]; then
        mkdir -p "$(dirname "$RUN_CONF_DIR")"
        ln -s "$STATE/etc" "$RUN_CONF_DIR"
    fi

    local state=""
    for ((i = 0; i < WAIT_S * 2; i++)); do
        state=$(node_state)
        case $state in
            idle*) break ;;
            down* | drain*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    if [[ $state != idle* ]]; then
        log "node $NODE is '${state:-unknown}' after ${WAIT_S}s; logs in $STATE/log"
        tail -n 5 "$STATE"/log/slurm*.log >&2 || true
        stop_daemons quiet
        exit 1
    fi
    log "cluster up: node $NODE idle, partition $PARTITION, 1 fake GPU (SLURM_CONF=$CONF)"
}

stop_daemons() {
    local name bin pid i quiet=${1:-}
    # Cancel our jobs first, so slurmd does not leave job processes behind.
    if pid_of slurmctld slurmctld >/dev/null; then
        SLURM_CONF=$CONF scancel --full --quiet --user=root >/dev/null 2>&1 || true
    fi
    for name in slurmd slurmctld munged; do
        bin=$name
        if pid=$(pid_of "$name" "$bin"); then
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 40; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.25
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
            [[ -n $quiet ]] || log "stopped $name ($pid)"
        fi
        rm -f "$STATE/run/$name.pid"
    done
    if our_run_conf; then
        rm -f "$RUN_CONF_DIR"
        rmdir "$(dirname "$RUN_CONF_DIR")" 2>/dev/null || true
    fi
}

status() {
    if cluster_ok; then
        echo "running: node $NODE $(node_state), SLURM_CONF=$CONF"
        return 0
    fi
    echo "not running (state dir $STATE)"
    return 1
}

case ${1:-} in
    start) start ;;
    stop) stop_daemons ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac

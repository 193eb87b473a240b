#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for trying `dmlbench sweep --slurm` and for the
# cluster test in CI. Debian's packages (slurmctld, slurmd, munge, slurm-client), run as root,
# with a minimal configuration in one directory; nothing else on the machine is changed.
#
#   scripts/slurm-local.sh start [DIR]   # installs the packages if missing, starts munged,
#                                        # slurmctld and slurmd; prints `export SLURM_CONF=...`
#   scripts/slurm-local.sh stop [DIR]
#
# DIR defaults to /tmp/dmlbench-slurm. Use the cluster with `eval "$(scripts/slurm-local.sh
# start)"`, which sets SLURM_CONF for the commands that follow.
set -euo pipefail

action="${1:-start}"
dir="${2:-/tmp/dmlbench-slurm}"

stop() {
    for daemon in slurmd slurmctld; do
        if [ -f "$dir/$daemon.pid" ]; then
            kill "$(cat "$dir/$daemon.pid")" 2>/dev/null || true
            rm -f "$dir/$daemon.pid"
        fi
    done
}

case "$action" in
    stop)
        stop
        exit 0
        ;;
    start) ;;
    *)
        echo "usage: $0 start|stop [DIR]" >&2
        exit 2
        ;;
esac

[ "$(id -u)" = 0 ] || { echo "$0: the local cluster runs its daemons as root" >&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

stop
mkdir -p "$dir/state" "$dir/spool"
host="$(hostname -s)"
cpus="$(nproc)"
memory_mb="$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)"
cat >"$dir/slurm.conf" <<EOF
ClusterName=dmlbench-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MinJobAge=600
NodeName=$host CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# Slurm's commands and daemons find the configuration through SLURM_CONF.
export SLURM_CONF="$dir/slurm.conf"

# munge authenticates every message; Debian's package made the key on installation.
if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge
    [ -f /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || create-munge-key -f >/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    runuser -u munge -- munged
fi

slurmctld
slurmd
# Ready when the node is idle.
for _ in $(seq 1 60); do
    if sinfo --noheader --format=%T 2>/dev/null | grep -qx idle; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 1
done
echo "$0: the node did not become idle; see $dir/slurmctld.log and $dir/slurmd.log" >&2
sinfo >&2 || true
exit 1

#!/usr/bin/env bash
# A one-node Slurm on this machine, for tests/test_slurm.py (sweep --cluster slurm against a
# real slurmctld and slurmd) and for trying --cluster slurm by hand. Needs root; no systemd.
#
#   tests/slurm/local_slurm.sh install   # Debian's slurm-wlm and munge, if missing (`make slurm`)
#   tests/slurm/local_slurm.sh start     # munged, slurmctld, slurmd; returns once the node is idle
#   tests/slurm/local_slurm.sh status    # exit 0 if this Slurm answers and its node is up
#   tests/slurm/local_slurm.sh stop      # cancel its jobs, stop the daemons, remove its folder
#   eval "$(tests/slurm/local_slurm.sh env)"   # SLURM_CONF for sinfo, sbatch, squeue, scancel
#
# Everything lives in one folder, $LAB2_SLURM_DIR (default /var/tmp/lab2-slurm): slurm.conf,
# a munge key and socket of its own, spool and state, pid files, logs. Nothing is written to
# /etc, a munged or Slurm the machine already runs is left alone, and `stop` removes the
# folder, so the machine is left as it was found. Each command is idempotent.
set -euo pipefail

DIR=${LAB2_SLURM_DIR:-/var/tmp/lab2-slurm}
CONF=$DIR/slurm.conf
SOCKET=$DIR/munge/munge.socket
PARTITION=${LAB2_SLURM_PARTITION:-lab2}
NODE=$(hostname -s)
START_TIMEOUT_S=60
export SLURM_CONF=$CONF

say() { echo "local_slurm: $*" >&2; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
              && command -v munged >/dev/null && command -v mungekey >/dev/null; }

install() {
  if installed; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    say "slurm-wlm and munge are not installed and this is not root: the Slurm test will be skipped"
    return 0
  fi
  # --no-install-recommends: the daemons and clients only (9 packages, not 42 with the docs and
  # slurmdbd's MariaDB client). Their postinst scripts cannot start services without systemd; fine.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1; }

status() {
  [ -f "$CONF" ] && pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" || return 1
  case "$(node_state)" in
    idle*|mix*|alloc*|comp*) return 0 ;;
    *) return 1 ;;
  esac
}

write_conf() {
  # This machine's CPUs, sockets, cores and memory as slurmd itself measures them: slurmd drains a
  # node whose slurm.conf promises more than it finds. A little memory is left to the system.
  local hardware memory
  hardware=$(slurmd -C | head -1)
  memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
  hardware=$(sed "s/RealMemory=[0-9]*/RealMemory=$((memory * 9 / 10))/" <<<"$hardware")
  cat >"$CONF" <<EOF
# Written by tests/slurm/local_slurm.sh: a one-node Slurm for lab2's tests. Removed by its stop.
ClusterName=lab2
SlurmctldHost=$NODE
# Root runs the daemons and the jobs: this Slurm exists only for the tests and lives as long as they do.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Our own munged (own key and socket), so a munged the machine already runs is not touched.
AuthInfo=socket=$SOCKET
# No systemd and no cgroup delegation here (a container): track a job's processes by their
# parent ids and bind nothing. scancel still signals every process of a job.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct has no data. Finished jobs (id, name, state, node) go to a text file instead.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobs.txt
# Cores and memory are allocated per job, so several Dask workers share the node.
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that asks for no memory (sbatch by hand) gets 1 GB per core, not the whole node.
DefMemPerCPU=1024
MpiDefault=none
# A node that was down when slurmctld last ran comes back by itself once slurmd registers.
ReturnToService=2
StateSaveLocation=$DIR/slurmctld
SlurmdSpoolDir=$DIR/slurmd
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
$hardware State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  if status; then say "already running ($CONF)"; return 0; fi
  [ "$(id -u)" = 0 ] || { say "starting Slurm needs root"; return 1; }
  installed || { say "slurm-wlm and munge are not installed: run \`make slurm\` (or $0 install)"; return 1; }
  stop_daemons  # a half-started one from before
  # munged insists that everyone may reach its socket: the folder is 0755, the key 0600 root's.
  mkdir -p "$DIR/munge" "$DIR/slurmctld" "$DIR/slurmd"
  chmod 0755 "$DIR" "$DIR/munge"
  [ -f "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key"
  write_conf
  munged --socket="$SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
         --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed"
  # -c: a fresh controller state every start (no jobs or node states from an earlier one).
  slurmctld -c -f "$CONF"
  slurmd -f "$CONF"
  local waited=0 state=""
  while [ "$waited" -lt "$START_TIMEOUT_S" ]; do
    state=$(node_state)
    case "$state" in idle*) say "node $NODE idle in partition $PARTITION after ${waited}s ($CONF)"; return 0 ;; esac
    sleep 1; waited=$((waited + 1))
  done
  say "node $NODE not idle after ${START_TIMEOUT_S}s (state '${state}'); see $DIR/slurmctld.log and $DIR/slurmd.log"
  return 1
}

stop_pid() {  # SIGTERM the daemon in pid file $1, wait up to 20 s for it to exit
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$1"
}

stop_daemons() {
  if pid_alive "$DIR/slurmctld.pid"; then
    # Cancel every job first: a job's slurmstepd outlives slurmd, so stopping the daemons alone
    # would leave its processes (Dask workers) running. Wait for them, up to KillWait and then some.
    scancel --partition="$PARTITION" 2>/dev/null || true
    for _ in $(seq 90); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  if [ -S "$SOCKET" ]; then munged --stop --socket="$SOCKET" >/dev/null 2>&1 || true; fi
  rm -f "$DIR/munge/munged.pid"
}

stop() {
  [ -d "$DIR" ] || return 0
  stop_daemons
  rm -rf "$DIR"
  say "stopped; removed $DIR"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if status; then echo "running: $CONF, node $NODE $(node_state)"; else echo "not running"; exit 1; fi ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 install|start|status|stop|env" >&2; exit 2 ;;
esac

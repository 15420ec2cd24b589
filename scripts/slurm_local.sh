#!/usr/bin/env bash
# A real Slurm on this one machine, for the `slurm` tests and local scaling studies:
#   scripts/slurm_local.sh start    munged, slurmctld and slurmd on localhost (idempotent)
#   scripts/slurm_local.sh stop     cancels the jobs, stops what `start` started (by PID)
#   scripts/slurm_local.sh status   exit 0 when this script's Slurm is up, 1 otherwise
# No systemd: the daemons are started by hand, their PIDs kept in $MOE_SLURM_STATE. The node
# advertises MOE_SLURM_CPUS CPUs (default 16) whatever the machine has (SlurmdParameters=
# config_overrides), so jobs of 8 ranks fit on a 2-core machine. See docs/slurm.md.
set -euo pipefail

state=${MOE_SLURM_STATE:-/var/tmp/moebatch-slurm}
cpus=${MOE_SLURM_CPUS:-16}
conf=/etc/slurm/slurm.conf
marker="# Written by moebatch scripts/slurm_local.sh; removed by its 'stop'."
node=$(hostname -s)

log() { echo "slurm_local: $*"; }

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

munge_works() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

controller_up() { scontrol ping 2>/dev/null | grep -q "is UP"; }

node_ready() { [[ $(sinfo -h -N -o %t 2>/dev/null | head -n1) =~ ^(idle|mix|alloc) ]]; }

write_config() {
  if [[ -f $conf ]] && ! grep -qF "$marker" "$conf"; then
    log "error: $conf exists and was not written by this script; not touching it" >&2
    exit 1
  fi
  local memory_mib
  memory_mib=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
  mkdir -p /etc/slurm "$state/ctld" "$state/slurmd"
  cat >"$conf" <<CONF
$marker
# One node on localhost, no systemd, no cgroups, no accounting (docs/slurm.md).
ClusterName=moebatch-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120): 10 here so
# that the resume tests do not idle. Step credentials live as long, plenty for one host.
AuthInfo=cred_expire=10
CredType=cred/munge
# Debian's OpenMPI speaks only PMIx: pmi2 and none fail in MPI_Init.
MpiDefault=pmix
# No cgroups here: track job processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Trust the CPU count below over what the hardware says (else the node drains and srun hangs).
SlurmdParameters=config_overrides
# An oversized job is refused at submission instead of pending forever.
EnforcePartLimits=ALL
# Schedule at once on submission, and every second for jobs whose begin time passed (requeued).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=5
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
# Seconds between the SIGTERM of a time limit or scancel and the SIGKILL.
KillWait=10
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mib State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  for ((i = 0; i < seconds * 5; ++i)); do
    "$@" && return 0
    sleep 0.2
  done
  log "error: $what did not come up in ${seconds}s (logs in $state)" >&2
  return 1
}

start() {
  mkdir -p "$state"
  if pid_alive "$state/slurmctld.pid" && pid_alive "$state/slurmd.pid" && controller_up; then
    log "already running (state in $state)"
    return 0
  fi
  if controller_up && ! pid_alive "$state/slurmctld.pid"; then
    log "error: a Slurm controller that this script did not start is running; not starting another" >&2
    exit 1
  fi
  if ! munge_works; then
    # munged refuses to run as root; the package's postinst made /etc/munge/munge.key.
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 10 munged munge_works
    cp /run/munge/munged.pid "$state/munged.pid"
    log "munged started (pid $(cat "$state/munged.pid"))"
  fi
  write_config
  if ! pid_alive "$state/slurmctld.pid"; then
    # -c: forget jobs from an earlier session (a stopped local Slurm starts clean).
    slurmctld -c
    wait_for 30 slurmctld controller_up
    log "slurmctld started (pid $(cat "$state/slurmctld.pid"))"
  fi
  if ! pid_alive "$state/slurmd.pid"; then
    slurmd -N "$node"
    wait_for 30 "slurmd (node $node)" node_ready
    log "slurmd started (pid $(cat "$state/slurmd.pid"))"
  fi
  # A node that was down in an earlier session may stay down; it is ours, so resume it.
  scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
  log "up: partition local, node $node with $cpus CPUs (state and logs in $state)"
}

stop_pid_file() {  # stop_pid_file NAME: SIGTERM the PID in $state/NAME.pid, SIGKILL after 10 s
  local file=$state/$1.pid
  pid_alive "$file" || { rm -f "$file"; return 0; }
  local pid
  pid=$(cat "$file")
  kill "$pid"
  for ((i = 0; i < 50; ++i)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$file"
  log "$1 stopped (pid $pid)"
}

start_ticks() { awk '{ sub(/.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }

stop() {
  if pid_alive "$state/slurmctld.pid" && controller_up; then
    # Cancel every job first: slurmd then ends its slurmstepd processes itself.
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      # shellcheck disable=SC2086
      scancel $jobs || true
      for ((i = 0; i < 100; ++i)); do
        [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
        sleep 0.2
      done
    fi
  fi
  # Step daemons that outlived their jobs were forked by our slurmd: slurmstepd processes that
  # started after it did (field 22 of /proc/PID/stat: start time in clock ticks since boot).
  local slurmd_start=""
  pid_alive "$state/slurmd.pid" && slurmd_start=$(start_ticks "$(cat "$state/slurmd.pid")")
  stop_pid_file slurmd
  stop_pid_file slurmctld
  if [[ -n $slurmd_start ]]; then
    for pid in $(pgrep -x slurmstepd || true); do
      local started
      started=$(start_ticks "$pid") || continue
      ((started >= slurmd_start)) || continue
      log "slurmstepd $pid outlived slurmd; stopping it"
      kill -9 "$pid" 2>/dev/null || true
    done
  fi
  stop_pid_file munged
  if [[ -f $conf ]] && grep -qF "$marker" "$conf"; then rm -f "$conf"; fi
  log "stopped"
}

status() {
  if pid_alive "$state/slurmctld.pid" && pid_alive "$state/slurmd.pid" && controller_up; then
    log "running"
    return 0
  fi
  log "not running"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# (Copied from the workplace's shared kit, ../shared/slurm/local-cluster.sh, so that CI on a clean checkout has it.)
# A real single-node SLURM cluster on localhost, for tests: munge + slurmctld + slurmd (+ slurmdbd with
# MariaDB, so that sacct works), as root, no systemd, no cgroups. Debian bookworm packages only.
#
#   local-cluster.sh install   apt packages (~30 s)
#   local-cluster.sh start     start the daemons (~5 s); prints sinfo
#   local-cluster.sh stop      stop them by PID, newest first
#   local-cluster.sh clean     stop, then wipe state
# Env: B (state dir, default /tmp/slurm-local), WITH_DBD=1 (0: no MariaDB/slurmdbd; then give Snakemake's
# slurm executor `--slurm-status-command squeue`, or it waits forever), FAKE_GPU=1 (one gres gpu backed by
# /dev/null, so that GPU requests are scheduled; jobs see CUDA_VISIBLE_DEVICES=0 but no GPU).
#
# Known with snakemake-executor-plugin-slurm 2.8 on slurm 22.05:
# - slurm.conf must be at /etc/slurm/ (this script symlinks it there): the jobstep plugin drops SLURM_CONF.
# - ask for GPUs with `resources: gpu=N` (sbatch --gpus=N); --gres/--gpus are refused inside slurm_extra.
# - `--slurm-init-seconds-before-status-checks 2` keeps small test runs quick (default 40 s).
# - `--slurm-no-account` (or slurm_account=root) avoids an account-guessing warning.
set -euo pipefail
B=${B:-/tmp/slurm-local}
WITH_DBD=${WITH_DBD:-1}
FAKE_GPU=${FAKE_GPU:-1}          # 1 = advertise one fake gpu (File=/dev/null) for --gpus/--gres tests
MSOCK=$B/munge/munge.socket.2

log() { echo "[$(date +%T)] $*"; }
waitfor() { # waitfor <secs> <cmd...>
  local t=$1; shift; local i=0
  until "$@" >/dev/null 2>&1; do i=$((i+1)); [ $i -gt $((t*5)) ] && { echo "timeout: $*"; return 1; }; sleep 0.2; done; }

install() {
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      slurm-wlm slurmctld slurmd slurm-client munge
  if [ "$WITH_DBD" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurmdbd mariadb-server
  fi
}

write_conf() {
  mkdir -p $B/etc $B/spool/ctld $B/spool/d $B/log $B/munge
  chmod 700 $B/munge
  [ -f $B/munge/munge.key ] || { dd if=/dev/urandom of=$B/munge/munge.key bs=1 count=1024 status=none; chmod 400 $B/munge/munge.key; }
  local mem=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 85 / 100 ))
  local gres="" ; [ "$FAKE_GPU" = 1 ] && gres="Gres=gpu:1"
  local acct="AccountingStorageType=accounting_storage/none"
  [ "$WITH_DBD" = 1 ] && acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoragePass=$MSOCK
AccountingStorageTRES=gres/gpu"   # (infbench) so that sacct shows the GPUs each job was given
  cat > $B/etc/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$B/spool/ctld
SlurmdSpoolDir=$B/spool/d
SlurmctldPidFile=$B/spool/slurmctld.pid
SlurmdPidFile=$B/spool/slurmd.pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$B/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$acct
MinJobAge=300
NodeName=localhost NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem $gres State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  printf 'AutoDetect=off\nName=gpu File=/dev/null\n' > $B/etc/gres.conf   # file-less GPUs are dropped by slurmd
  cat > $B/etc/slurmdbd.conf <<EOF
AuthType=auth/munge
AuthInfo=socket=$MSOCK
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
LogFile=$B/log/slurmdbd.log
PidFile=$B/spool/slurmdbd.pid
EOF
  chmod 600 $B/etc/slurmdbd.conf
  mkdir -p /etc/slurm
  for f in slurm.conf slurmdbd.conf gres.conf; do ln -sfn $B/etc/$f /etc/slurm/$f; done
}

start() {
  write_conf
  log "munged"
  munged --force --key-file=$B/munge/munge.key --socket=$MSOCK --pid-file=$B/munge/munged.pid \
         --log-file=$B/log/munged.log --seed-file=$B/munge/munged.seed
  waitfor 10 test -S $MSOCK
  if [ "$WITH_DBD" = 1 ]; then
    log "mariadb"
    if [ ! -d $B/mysql/mysql ]; then
      mkdir -p $B/mysql
      mariadb-install-db --no-defaults --user=root --datadir=$B/mysql >$B/log/mariadb-install.log 2>&1
      NEWDB=1
    fi
    mariadbd --no-defaults --user=root --datadir=$B/mysql --socket=$B/mysql.sock --pid-file=$B/mysql.pid \
      --bind-address=127.0.0.1 --port=3306 --log-error=$B/log/mariadb.err \
      --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 >/dev/null 2>&1 &
    waitfor 60 mariadb --socket=$B/mysql.sock -e 'select 1'
    if [ "${NEWDB:-0}" = 1 ]; then
      mariadb --socket=$B/mysql.sock -e "
        create database if not exists slurm_acct_db;
        create user if not exists 'slurm'@'localhost' identified by 'slurmpw';
        create user if not exists 'slurm'@'127.0.0.1' identified by 'slurmpw';
        grant all on slurm_acct_db.* to 'slurm'@'localhost';
        grant all on slurm_acct_db.* to 'slurm'@'127.0.0.1';"
    fi
    log "slurmdbd"
    slurmdbd
    waitfor 30 sh -c "ss -ltn | grep -q ':6819 '"
  fi
  log "slurmctld"
  slurmctld
  waitfor 30 sh -c "scontrol ping | grep -q UP"
  log "slurmd"
  slurmd
  waitfor 30 sh -c "sinfo -h -o %T | grep -q idle"
  sinfo
}

stop_pidfile() { # stop_pidfile <name> <pidfile>
  local pf=$2; [ -f "$pf" ] || return 0
  local p; p=$(cat "$pf"); kill -0 "$p" 2>/dev/null || return 0
  log "stopping $1 (pid $p)"; kill -TERM "$p"
  for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.2; done
  log "$1 did not exit, SIGKILL"; kill -KILL "$p" || true
}
stop() {
  scancel --user=root 2>/dev/null || true
  stop_pidfile slurmd    $B/spool/slurmd.pid
  stop_pidfile slurmctld $B/spool/slurmctld.pid
  stop_pidfile slurmdbd  $B/spool/slurmdbd.pid
  stop_pidfile mariadbd  $B/mysql.pid
  stop_pidfile munged    $B/munge/munged.pid
}
clean() { stop; rm -rf $B/spool $B/log $B/mysql $B/mysql.sock $B/munge/munged.seed $B/wf; }

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  clean) clean ;;
  *) echo "usage: $0 install|start|stop|clean"; exit 2 ;;
esac

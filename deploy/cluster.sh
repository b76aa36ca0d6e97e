#!/usr/bin/env bash
# A local Sluice cluster in one command: MinIO and N brokers on this machine,
# all on one bucket (brokers on one object store form one cluster).
#
#   deploy/cluster.sh start [N] [SERVE-ARGS...]   MinIO, then brokers 1..N (default N: nproc)
#   deploy/cluster.sh stop                        SIGTERM the brokers (each uploads what it
#                                                 holds and deregisters), then MinIO
#   deploy/cluster.sh status                      exit 0: all running, 3: none, 1: partly
#
# start runs deploy/setup.sh and deploy/install-minio.sh (idempotent; MinIO is
# built once into ~/.cache/sluice), starts MinIO on 127.0.0.1, creates the
# bucket if needed, starts broker i (node id i) on 127.0.0.1:$((PORT + i - 1)),
# waits until each prints `ready on` and all list each other in Metadata, and
# prints the bootstrap servers.
# SERVE-ARGS go to every `sluice serve` (e.g. --override num.partitions=6).
# Starting a running cluster says so and starts only what is missing.
#
# Everything lives in the state dir: cluster.env (MinIO's port and generated
# credentials, the bucket), minio/ (MinIO's data), broker-I/ (broker I's data
# dir), *.log, *.pid. stop keeps the data; delete the dir to start afresh.
#
# Environment:
#   SLUICE_CLUSTER_DIR           state dir (default: cluster-data/ in the clone)
#   SLUICE_CLUSTER_PORT          broker 1's port, the others follow (default 9092)
#   SLUICE_CLUSTER_METRICS_PORT  if set, broker i serves metrics on this + i - 1
#   SLUICE_MINIO_PORT            MinIO's port (default: a free one, kept in cluster.env)
#   SLUICE_CLUSTER_BUCKET        the bucket (default sluice)
#   SLUICE_CLUSTER_TIMEOUT       seconds to wait for a start or a stop (default 60)
#   SLUICE_PYTHON                an interpreter with Sluice installed; skips deploy/setup.sh
set -euo pipefail

ORIG_PWD=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${SLUICE_CLUSTER_DIR:-$ROOT/cluster-data}
case "$DIR" in /*) ;; *) DIR=$ORIG_PWD/$DIR ;; esac
PORT=${SLUICE_CLUSTER_PORT:-9092}
TIMEOUT=${SLUICE_CLUSTER_TIMEOUT:-60}
ENV_FILE=$DIR/cluster.env

say() { echo "cluster: $*"; }
die() { echo "cluster: $*" >&2; exit 1; }
usage() { sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# --- processes --------------------------------------------------------------

# The command line a component runs with contains this (with a trailing space:
# broker-1 must not match broker-10), so a stale pid file never names another process.
marker() {
  case "$1" in
    minio) echo "server $DIR/minio " ;;
    *) echo "--data-dir $DIR/broker-$1 " ;;
  esac
}
pidfile() { echo "$DIR/$([ "$1" = minio ] && echo minio || echo "broker-$1").pid"; }
logfile() { echo "$DIR/$([ "$1" = minio ] && echo minio || echo "broker-$1").log"; }

# pid of a running component (prints nothing, fails, if it is not running)
running_pid() {
  local f pid cmd
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmd == *"$(marker "$1")"* ]] || return 1
  echo "$pid"
}

# broker ids that have a pid file, in order
known_brokers() {
  local f i
  for f in "$DIR"/broker-*.pid; do
    [ -e "$f" ] || continue
    i=${f##*/broker-}; i=${i%.pid}
    [[ $i =~ ^[0-9]+$ ]] && echo "$i"
  done | sort -n
}

broker_port() { cat "$DIR/broker-$1.port" 2>/dev/null || echo "?"; }

log_tail() { echo "--- last lines of $1:" >&2; tail -n 20 "$1" >&2 || true; }

# SIGTERM the given components, wait for them (bounded), SIGKILL what is left.
stop_components() {
  local timeout=$1 c pid deadline left=()
  shift
  for c in "$@"; do
    if pid=$(running_pid "$c"); then
      kill -TERM "$pid" 2>/dev/null || true
      left+=("$c")
    else
      rm -f "$(pidfile "$c")"
    fi
  done
  deadline=$((SECONDS + timeout))
  while [ ${#left[@]} -gt 0 ]; do
    local still=()
    for c in "${left[@]}"; do
      if running_pid "$c" >/dev/null; then
        still+=("$c")
      else
        rm -f "$(pidfile "$c")"
        report_stopped "$c"
      fi
    done
    left=("${still[@]}")
    [ ${#left[@]} -gt 0 ] || break
    if [ $SECONDS -ge "$deadline" ]; then
      for c in "${left[@]}"; do
        if pid=$(running_pid "$c"); then
          echo "cluster: $(name "$c") still running after ${timeout}s: SIGKILL" >&2
          kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$(pidfile "$c")"
      done
      return 1
    fi
    sleep 0.2
  done
}

name() { [ "$1" = minio ] && echo "MinIO" || echo "broker $1"; }

report_stopped() {
  if [ "$1" = minio ]; then
    say "MinIO stopped"
  elif grep -q "stopped cleanly" "$(logfile "$1")" 2>/dev/null; then
    say "broker $1 stopped cleanly"
  else
    say "broker $1 exited (no clean shutdown in $(logfile "$1"))"
  fi
}

# --- state ------------------------------------------------------------------

load_env() {
  MINIO_PORT="" MINIO_ROOT_USER="" MINIO_ROOT_PASSWORD="" BUCKET=""
  # shellcheck disable=SC1090
  [ -f "$ENV_FILE" ] && . "$ENV_FILE"
  return 0
}

write_env() {
  local tmp=$ENV_FILE.tmp
  (umask 077 && cat >"$tmp" <<EOF
# deploy/cluster.sh: MinIO's address and credentials, the cluster's bucket
MINIO_PORT=$MINIO_PORT
MINIO_ROOT_USER=$MINIO_ROOT_USER
MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD
BUCKET=$BUCKET
EOF
  )
  mv "$tmp" "$ENV_FILE"
}

bootstrap() {
  local i out=()
  for i in $(known_brokers); do
    running_pid "$i" >/dev/null && out+=("127.0.0.1:$(broker_port "$i")")
  done
  local IFS=,
  echo "${out[*]}"
}

# --- commands ---------------------------------------------------------------

cmd_status() {
  load_env
  local up=0 down=0 pid i
  if pid=$(running_pid minio); then
    say "MinIO running (pid $pid) on http://127.0.0.1:$MINIO_PORT, bucket $BUCKET"
    up=$((up + 1))
  else
    say "MinIO not running"
    down=$((down + 1))
  fi
  local brokers
  brokers=$(known_brokers)
  if [ -z "$brokers" ]; then
    say "no broker running"
    down=$((down + 1))
  fi
  for i in $brokers; do
    if pid=$(running_pid "$i"); then
      say "broker $i running (pid $pid) on 127.0.0.1:$(broker_port "$i"), log $(logfile "$i")"
      up=$((up + 1))
    else
      say "broker $i not running (see $(logfile "$i"))"
      down=$((down + 1))
    fi
  done
  if [ $up -gt 0 ]; then say "bootstrap: $(bootstrap)"; fi
  say "state dir: $DIR"
  if [ $down -eq 0 ]; then return 0; elif [ $up -eq 0 ]; then return 3; else return 1; fi
}

cmd_stop() {
  load_env
  local brokers status=0
  brokers=$(known_brokers)
  if [ -z "$brokers" ] && ! running_pid minio >/dev/null; then
    rm -f "$(pidfile minio)"
    say "not running"
    return 0
  fi
  if [ -n "$brokers" ]; then
    say "stopping broker(s) ${brokers//$'\n'/ } (SIGTERM: each uploads what it holds)"
    # shellcheck disable=SC2086
    stop_components "$TIMEOUT" $brokers || status=1
  fi
  stop_components 20 minio || status=1
  return $status
}

STARTED=()      # what this start launched, stopped again if it fails

abort_start() {
  trap - INT TERM
  echo "cluster: start failed; stopping what it started" >&2
  local c brokers=() minio=()
  for c in ${STARTED[@]+"${STARTED[@]}"}; do
    if [ "$c" = minio ]; then minio=(minio); else brokers+=("$c"); fi
  done
  if [ ${#brokers[@]} -gt 0 ]; then stop_components "$TIMEOUT" "${brokers[@]}" >&2 || true; fi
  if [ ${#minio[@]} -gt 0 ]; then stop_components 20 minio >&2 || true; fi
  exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_minio() {
  local bin pid deadline
  if pid=$(running_pid minio); then
    say "MinIO already running (pid $pid) on http://127.0.0.1:$MINIO_PORT"
    return 0
  fi
  bin=$(deploy/install-minio.sh) || die "deploy/install-minio.sh failed"
  [ -n "${SLUICE_MINIO_PORT:-}" ] && MINIO_PORT=$SLUICE_MINIO_PORT
  [ -n "$MINIO_PORT" ] || MINIO_PORT=$("$PY" -c 'from bench.ports import free_port; print(free_port())')
  write_env
  mkdir -p "$DIR/minio"
  [ -f "$DIR/minio.log" ] && mv -f "$DIR/minio.log" "$DIR/minio.log.prev"
  MINIO_ROOT_USER=$MINIO_ROOT_USER MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD \
    MINIO_BROWSER=off MINIO_UPDATE=off \
    setsid "$bin" server "$DIR/minio" --address "127.0.0.1:$MINIO_PORT" --quiet \
    </dev/null >"$DIR/minio.log" 2>&1 &
  echo $! >"$(pidfile minio)"
  STARTED+=(minio)
  deadline=$((SECONDS + TIMEOUT))
  until port_open "$MINIO_PORT"; do
    if ! running_pid minio >/dev/null; then
      echo "cluster: MinIO exited" >&2; log_tail "$DIR/minio.log"; abort_start
    fi
    if [ $SECONDS -ge "$deadline" ]; then
      echo "cluster: MinIO not listening after ${TIMEOUT}s" >&2; log_tail "$DIR/minio.log"; abort_start
    fi
    sleep 0.1
  done
  say "MinIO running (pid $(<"$(pidfile minio)")) on http://127.0.0.1:$MINIO_PORT, data in $DIR/minio"
}

start_broker() {
  local i=$1 port=$2 pid log metrics=()
  shift 2
  if pid=$(running_pid "$i"); then
    say "broker $i already running (pid $pid) on 127.0.0.1:$(broker_port "$i")"
    return 0
  fi
  log=$(logfile "$i")
  [ -f "$log" ] && mv -f "$log" "$log.prev"
  if [ -n "${SLUICE_CLUSTER_METRICS_PORT:-}" ]; then
    metrics=(--metrics "127.0.0.1:$((SLUICE_CLUSTER_METRICS_PORT + i - 1))")
  fi
  echo "$port" >"$DIR/broker-$i.port"
  # `python -m broker` from the clone: this checkout's code, whatever the venv points at
  AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MINIO_PORT AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER \
    AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD AWS_REGION=us-east-1 \
    setsid "$PY" -m broker serve --node-id "$i" --listen "127.0.0.1:$port" \
    --data-dir "$DIR/broker-$i" --object-store "s3://$BUCKET" ${metrics[@]+"${metrics[@]}"} "$@" \
    </dev/null >"$log" 2>&1 &
  echo $! >"$(pidfile "$i")"
  STARTED+=("$i")
  WAITING+=("$i")
}

cmd_start() {
  local n
  if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then n=$1; shift; else n=$(nproc); fi
  if [ "$n" -lt 1 ] || [ "$n" -gt 256 ]; then die "N must be 1..256, got $n"; fi
  [[ $PORT =~ ^[0-9]+$ ]] || die "SLUICE_CLUSTER_PORT must be a port number"
  [[ $TIMEOUT =~ ^[0-9]+$ ]] || die "SLUICE_CLUSTER_TIMEOUT must be whole seconds"

  if [ -n "${SLUICE_PYTHON:-}" ]; then
    PY=$SLUICE_PYTHON
  else
    deploy/setup.sh
    PY=$ROOT/.venv/bin/python
  fi
  mkdir -p "$DIR"
  load_env
  local any_running=""
  running_pid minio >/dev/null && any_running=1
  for i in $(known_brokers); do running_pid "$i" >/dev/null && any_running=1; done
  if [ -z "$any_running" ]; then       # settings apply to a stopped cluster only
    [ -n "${SLUICE_CLUSTER_BUCKET:-}" ] && BUCKET=$SLUICE_CLUSTER_BUCKET
  fi
  [ -n "$BUCKET" ] || BUCKET=sluice
  [ -n "$MINIO_ROOT_USER" ] || MINIO_ROOT_USER=sluice
  [ -n "$MINIO_ROOT_PASSWORD" ] || MINIO_ROOT_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

  local all_up=1
  running_pid minio >/dev/null || all_up=""
  for ((i = 1; i <= n; i++)); do running_pid "$i" >/dev/null || all_up=""; done
  if [ -n "$all_up" ]; then
    say "already running (MinIO and brokers 1..$n)"
    cmd_status || true
    return 0
  fi

  trap abort_start INT TERM
  start_minio
  local out
  if ! out=$(AWS_ENDPOINT_URL_S3=http://127.0.0.1:$MINIO_PORT AWS_ACCESS_KEY_ID=$MINIO_ROOT_USER \
             AWS_SECRET_ACCESS_KEY=$MINIO_ROOT_PASSWORD AWS_REGION=us-east-1 \
             "$PY" -m bench.minio ensure-bucket "$BUCKET" --timeout "$TIMEOUT" 2>&1); then
    echo "$out" >&2; log_tail "$DIR/minio.log"; abort_start
  fi
  say "$out"

  WAITING=()
  for ((i = 1; i <= n; i++)); do start_broker "$i" $((PORT + i - 1)) "$@"; done
  local deadline=$((SECONDS + TIMEOUT)) log
  while [ ${#WAITING[@]} -gt 0 ]; do
    local pending=()
    for i in "${WAITING[@]}"; do
      log=$(logfile "$i")
      if grep -q '^ready on ' "$log" 2>/dev/null; then
        say "broker $i $(grep -m1 '^ready on ' "$log") (pid $(<"$(pidfile "$i")"))"
      elif ! running_pid "$i" >/dev/null; then
        echo "cluster: broker $i exited before it was ready" >&2; log_tail "$log"; abort_start
      else
        pending+=("$i")
      fi
    done
    WAITING=(${pending[@]+"${pending[@]}"})
    [ ${#WAITING[@]} -gt 0 ] || break
    if [ $SECONDS -ge "$deadline" ]; then
      echo "cluster: broker(s) ${WAITING[*]} not ready after ${TIMEOUT}s" >&2
      for i in "${WAITING[@]}"; do log_tail "$(logfile "$i")"; done
      abort_start
    fi
    sleep 0.2
  done
  trap - INT TERM
  # Brokers see a new member on their next heartbeat: wait until each lists them all
  local addrs
  IFS=, read -r -a addrs <<<"$(bootstrap)"
  if ! out=$("$PY" -m bench.launch wait-cluster --timeout "$TIMEOUT" "${addrs[@]}" 2>&1); then
    echo "cluster: $out" >&2
    echo "cluster: the brokers run but do not see each other; logs in $DIR, deploy/cluster.sh stop" >&2
    return 1
  fi
  say "$out"
  for i in $(known_brokers); do
    if [ "$i" -gt "$n" ] && running_pid "$i" >/dev/null; then say "(broker $i is running too)"; fi
  done
  say "object store: s3://$BUCKET on http://127.0.0.1:$MINIO_PORT (credentials in $ENV_FILE)"
  say "bootstrap: $(bootstrap)"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) [ $# -eq 1 ] || usage; cmd_stop ;;
  status) [ $# -eq 1 ] || usage; cmd_status ;;
  *) usage ;;
esac

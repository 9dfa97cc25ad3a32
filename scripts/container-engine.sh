#!/usr/bin/env bash
# A private container engine for the test suite and CI: dockerd (Debian's docker.io) on its own
# socket, a plain-HTTP image registry on 127.0.0.1 (Debian's docker-registry) and a local
# Debian bookworm image with Python to build MAX-style base images from (no registry is
# reachable from these machines, so nothing can be pulled).
#
#   eval "$(scripts/container-engine.sh start)"   # install what is missing, start, print exports
#   scripts/container-engine.sh env              # print the exports of a running engine
#   scripts/container-engine.sh stop [--purge]   # stop both, unmount, remove bridge and rules
#
# The image store, the registry's storage and the debootstrap tarball live in SMX_CACHE_DIR and
# survive `stop`, so a machine that runs this again starts from warm caches.
set -Eeuo pipefail

readonly RUN_DIR="${SMX_RUN_DIR:-/tmp/smx}"            # sockets: keep the path short (108-byte limit)
readonly CACHE_DIR="${SMX_CACHE_DIR:-/var/cache/smx}"
readonly REGISTRY_PORT="${SMX_REGISTRY_PORT:-5055}"
readonly PYTHON_IMAGE="local/bookworm-python:1"
readonly DEBIAN_MIRROR="http://deb.debian.org/debian"
readonly DOCKER_SOCKET="$RUN_DIR/docker.sock"
readonly DOCKERD_PIDFILE="$RUN_DIR/dockerd.pid"
readonly REGISTRY_PIDFILE="$RUN_DIR/registry.pid"
readonly ROOTFS_TAR="$CACHE_DIR/bookworm-python.tar"
readonly DOCKER=(docker --host "unix://$DOCKER_SOCKET")
readonly PROBE_REGISTRY=(curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/v2/")

usage() {
  cat <<EOF
Usage: $(basename "$0") start | env | stop [--purge] | --help

  start   install missing packages (docker.io, docker-registry, debootstrap, curl,
          shellcheck), start dockerd and a registry on 127.0.0.1:$REGISTRY_PORT, make
          sure the image $PYTHON_IMAGE exists, then print the exports to eval.
  env     print the exports of a running engine (exit 1 when it is not running).
  stop    stop the registry and dockerd by pid, unmount what they left, remove the docker0
          bridge and Docker's iptables rules. --purge also deletes the caches.

Progress goes to stderr; stdout carries only the export lines.
Environment: SMX_RUN_DIR ($RUN_DIR), SMX_CACHE_DIR ($CACHE_DIR),
             SMX_REGISTRY_PORT ($REGISTRY_PORT)
EOF
}

log() { printf '[container-engine] %s\n' "$*" >&2; }
die() { printf '[container-engine] error: %s\n' "$*" >&2; exit 1; }

# Runs one step, reporting how long it took.
timed() {
  local name="$1" started finished elapsed
  shift
  started="$(date +%s.%N)"
  log "$name ..."
  "$@"
  finished="$(date +%s.%N)"
  elapsed="$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.1f", b - a }')"
  log "$name: done in ${elapsed}s"
}

# Prints "running" when the pid file names a live process with the expected command name (a
# stale file from an earlier boot may name an unrelated process by now), else "stopped".
process_state() {
  local pidfile="$1" command_name="$2" pid="" running_command=""
  if [[ -s "$pidfile" ]]; then
    pid="$(cat "$pidfile")"
    running_command="$(ps -o comm= -p "$pid" 2>/dev/null || true)"
  fi
  if [[ -n "$pid" && "$running_command" == "$command_name" ]]; then
    printf running
  else
    printf stopped
  fi
}

# Prints "answers" when something answers the registry's HTTP API on the port, else "silent".
registry_state() {
  if "${PROBE_REGISTRY[@]}"; then printf answers; else printf silent; fi
}

# Waits up to SECONDS for COMMAND to succeed; otherwise shows the end of LOG and stops.
wait_or_die() {
  local seconds="$1" log_file="$2" what="$3" i
  shift 3
  for ((i = 0; i < seconds * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  tail -n 20 "$log_file" >&2
  die "$what did not answer within ${seconds}s (log: $log_file)"
}

install_missing_packages() {
  local -a packages=()
  command -v dockerd >/dev/null || packages+=(docker.io)
  command -v docker >/dev/null || packages+=(docker.io)
  command -v docker-registry >/dev/null || packages+=(docker-registry)
  command -v debootstrap >/dev/null || packages+=(debootstrap)
  command -v curl >/dev/null || packages+=(curl)
  command -v shellcheck >/dev/null || packages+=(shellcheck) # the build tests lint the scripts
  if ((${#packages[@]} == 0)); then
    log "packages: all present"
    return 0
  fi
  local uid
  uid="$(id -u)"
  [[ "$uid" == 0 ]] || die "missing ${packages[*]}; run as root or install them with apt-get"
  # The packages' maintainer scripts must not start system-wide daemons of their own.
  local policy_added=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2
  if ((policy_added)); then rm -f /usr/sbin/policy-rc.d; fi
}

start_dockerd() {
  local state pid
  state="$(process_state "$DOCKERD_PIDFILE" dockerd)"
  if [[ "$state" == running ]]; then
    pid="$(cat "$DOCKERD_PIDFILE")"
    "${DOCKER[@]}" info >/dev/null 2>&1 || die "dockerd (pid $pid) runs but does not answer; run: $0 stop"
    log "dockerd: already running (pid $pid)"
    return 0
  fi
  rm -f "$DOCKERD_PIDFILE"
  mkdir -p "$RUN_DIR" "$CACHE_DIR/docker"
  setsid dockerd --data-root "$CACHE_DIR/docker" --exec-root "$RUN_DIR/x" \
    --pidfile "$DOCKERD_PIDFILE" -H "unix://$DOCKER_SOCKET" \
    >"$RUN_DIR/dockerd.log" 2>&1 </dev/null &
  wait_or_die 60 "$RUN_DIR/dockerd.log" dockerd "${DOCKER[@]}" info
}

start_registry() {
  local state answering
  state="$(process_state "$REGISTRY_PIDFILE" docker-registry)"
  answering="$(registry_state)"
  if [[ "$state" == running && "$answering" == answers ]]; then
    log "registry: already running on 127.0.0.1:$REGISTRY_PORT"
    return 0
  fi
  if [[ "$answering" == answers ]]; then
    die "something else already answers on 127.0.0.1:$REGISTRY_PORT; set SMX_REGISTRY_PORT"
  fi
  mkdir -p "$RUN_DIR" "$CACHE_DIR/registry"
  cat >"$RUN_DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $CACHE_DIR/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
  setsid docker-registry serve "$RUN_DIR/registry.yml" >"$RUN_DIR/registry.log" 2>&1 </dev/null &
  echo "$!" >"$REGISTRY_PIDFILE"
  wait_or_die 30 "$RUN_DIR/registry.log" "the registry on 127.0.0.1:$REGISTRY_PORT" "${PROBE_REGISTRY[@]}"
}

# Debian bookworm (minbase) with Python and pip: the layer MAX-style test base images start from.
make_rootfs_tarball() {
  local rootfs="$RUN_DIR/rootfs"
  rm -rf "$rootfs"
  if ! debootstrap --variant=minbase --include=python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" >"$RUN_DIR/debootstrap.log" 2>&1; then
    tail -n 20 "$RUN_DIR/debootstrap.log" >&2
    die "debootstrap failed (log: $RUN_DIR/debootstrap.log)"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$ROOTFS_TAR.partial" .
  mv "$ROOTFS_TAR.partial" "$ROOTFS_TAR"
  rm -rf "$rootfs"
}

import_python_image() {
  "${DOCKER[@]}" import --change 'CMD ["python3"]' "$ROOTFS_TAR" "$PYTHON_IMAGE" >/dev/null
}

ensure_python_image() {
  if "${DOCKER[@]}" image inspect "$PYTHON_IMAGE" >/dev/null 2>&1; then
    log "image $PYTHON_IMAGE: cached"
    return 0
  fi
  if [[ -s "$ROOTFS_TAR" ]]; then
    log "rootfs: cached in $ROOTFS_TAR"
  else
    timed "debootstrap bookworm (minbase + python3-pip)" make_rootfs_tarball
  fi
  timed "import $PYTHON_IMAGE" import_python_image
}

print_exports() {
  printf 'export DOCKER_HOST=%q; export SMX_REGISTRY=%q\n' \
    "unix://$DOCKER_SOCKET" "127.0.0.1:$REGISTRY_PORT"
}

# Kills the process in a pid file and waits for it to exit.
stop_pidfile() {
  local name="$1" pidfile="$2" pid i state
  state="$(process_state "$pidfile" "$name")"
  if [[ "$state" != running ]]; then
    log "$name: not running"
    rm -f "$pidfile"
    return 0
  fi
  pid="$(cat "$pidfile")"
  kill "$pid"
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: still running after 30s, killing pid $pid"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name: stopped"
}

unmount_leftovers() {
  local mountpoint
  # Deepest first, so nested mounts (netns, overlay, shm) come off before their parents.
  awk -v run="$RUN_DIR" -v cache="$CACHE_DIR" \
    'index($2, run) == 1 || index($2, cache) == 1 { print $2 }' /proc/mounts |
    sort -r | while read -r mountpoint; do
      umount -l "$mountpoint" || log "could not unmount $mountpoint"
    done
}

remove_docker_network_leftovers() {
  local table rule chain
  local -a words
  if ip link show docker0 >/dev/null 2>&1; then
    ip link delete docker0 || log "could not delete bridge docker0"
  fi
  command -v iptables >/dev/null || return 0
  for table in nat filter; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A .*(DOCKER|docker0)' | while read -r rule; do
      read -ra words <<<"${rule/#-A/-D}"
      iptables -t "$table" "${words[@]}" 2>/dev/null || true
    done
    iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }' |
      while read -r chain; do
        iptables -t "$table" -F "$chain" 2>/dev/null || true
        iptables -t "$table" -X "$chain" 2>/dev/null || true
      done
  done
}

cmd_start() {
  timed "packages" install_missing_packages
  timed "dockerd" start_dockerd
  timed "registry on 127.0.0.1:$REGISTRY_PORT" start_registry
  ensure_python_image
  local version
  version="$("${DOCKER[@]}" version --format '{{.Server.Version}}')"
  log "ready: docker $version, registry 127.0.0.1:$REGISTRY_PORT"
  print_exports
}

cmd_env() {
  local dockerd registry
  dockerd="$(process_state "$DOCKERD_PIDFILE" dockerd)"
  registry="$(process_state "$REGISTRY_PIDFILE" docker-registry)"
  [[ "$dockerd" == running && "$registry" == running ]] || die "the engine is not running; start it with: $0 start"
  print_exports
}

cmd_stop() {
  local purge="$1"
  stop_pidfile docker-registry "$REGISTRY_PIDFILE"
  stop_pidfile dockerd "$DOCKERD_PIDFILE"
  unmount_leftovers
  remove_docker_network_leftovers
  rm -rf "$RUN_DIR"
  if [[ "$purge" == 1 ]]; then
    rm -rf "$CACHE_DIR"
    log "caches removed ($CACHE_DIR)"
  fi
}

main() {
  case "${1:-}" in
    start) [[ $# == 1 ]] || { usage >&2; exit 2; }; cmd_start ;;
    env) [[ $# == 1 ]] || { usage >&2; exit 2; }; cmd_env ;;
    stop)
      case "${2:-}" in
        "") cmd_stop 0 ;;
        --purge) cmd_stop 1 ;;
        *) usage >&2; exit 2 ;;
      esac
      ;;
    -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"

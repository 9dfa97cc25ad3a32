#!/usr/bin/env bash
# Builds IBM MAX model images into Apache OpenWhisk Docker actions (Dockerfile + openwhisk.py
# beside this script) and pushes them to a registry. Run with --help for the interface.
set -Eeuo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT_DIR
readonly CATALOGUE="$ROOT_DIR/examples/catalogue.json"
# Apache OpenWhisk's largest default memory limit and its default timeout: what a model gets
# when examples/catalogue.json does not list it.
readonly DEFAULT_MEMORY_MB=512
readonly DEFAULT_TIMEOUT_MS=60000
readonly EXIT_USAGE=2

# Shapes accepted for each input; nothing else ever reaches a command line.
readonly MODEL_RE='^max-[a-z0-9]+([._-][a-z0-9]+)*$'
readonly PATH_COMPONENT='[a-z0-9]+([._-][a-z0-9]+)*'
readonly NAMESPACE_RE="^${PATH_COMPONENT}(/${PATH_COMPONENT})*$"
readonly HOST_RE='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$'
readonly TAG_RE='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
readonly REPOSITORY="([A-Za-z0-9.-]+(:[0-9]{1,5})?/)?${PATH_COMPONENT}(/${PATH_COMPONENT})*"
readonly REPOSITORY_RE="^${REPOSITORY}$"
readonly IMAGE_REF_RE="^${REPOSITORY}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
readonly TEMPLATE_RE='^[A-Za-z0-9._/:@{}-]+$'
readonly PLATFORMS_RE='^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?(,[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?)*$'

usage() {
  cat <<EOF
Usage: MODELS="max-a max-b" USERNAME=me ./build.sh [options]

Builds each IBM MAX model image into an Apache OpenWhisk Docker action image (the model image
plus openwhisk.py, serving the action protocol on port 8080), pushes it and prints the
'wsk action create' command for it. Every option can also be given as the environment
variable in capitals beside it; an option wins over the variable.

  -m, --models LIST        MODELS               MAX model names, space or comma separated
                                                 (e.g. "max-facial-emotion-classifier max-object-detector")
  -u, --username NAME      USERNAME             registry account or namespace; required to push
  -r, --registry HOST      REGISTRY             registry host[:port] (default: Docker Hub)
                                                 e.g. localhost:5000 -> localhost:5000/NAME/MODEL:TAG
  -t, --tag TAG            TAG                  image tag (default: <shim version>-<UTC date>,
                                                 e.g. 1.0.0-20250101; 'latest' only when asked for)
      --base-repo REPO     BASE_REPO            where the MAX images live (default: codait,
                                                 e.g. quay.io/codait)
      --base-image TMPL    BASE_IMAGE_TEMPLATE  base image with {model} in it (default:
                                                 BASE_REPO/{model}:latest, e.g. 'myreg/{model}:v2')
      --push | --no-push   PUSH=1|0             push after building (default: 1)
      --platforms LIST     PLATFORMS            e.g. linux/amd64,linux/arm64: one multi-platform
                                                 image through 'docker buildx' (pushes; docker only)
      --engine NAME        ENGINE               docker (default) or podman
      --fail-fast          FAIL_FAST=1          stop at the first model that fails
      --dry-run            DRY_RUN=1            validate, then print every command instead of
                                                 running it (skips the engine and login checks)
  -h, --help                                    show this help

Memory and timeout in the printed 'wsk action create' come from examples/catalogue.json;
a model it does not list gets ${DEFAULT_MEMORY_MB} MB and ${DEFAULT_TIMEOUT_MS} ms.
Exit codes: 0 all built, 1 a model failed, 2 invalid input or environment (nothing was run).
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
# Every usage or environment problem is one line on stderr and exit code 2.
usage_error() {
  local message="$*"
  printf 'error: %s\n' "${message//$'\n'/\\n}" >&2 # a value quoted in it may hold a newline
  exit "$EXIT_USAGE"
}

# Prints 1 or 0 for a yes/no setting given as 1/0, true/false, yes/no or on/off.
as_flag() {
  case "$1" in
    1 | true | yes | on) printf 1 ;;
    0 | false | no | off | "") printf 0 ;;
    *) usage_error "$2 must be 1/0, true/false, yes/no or on/off, not '$1'" ;;
  esac
}

# Prints a command, shell-quoted; runs it unless this is a dry run.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if ((DRY_RUN)); then return 0; fi
  "$@"
}

# ------------------------------------------------------------------------------------ inputs
MODELS="${MODELS:-}"
USERNAME="${USERNAME:-}"
REGISTRY="${REGISTRY:-}"
TAG="${TAG:-}"
BASE_REPO="${BASE_REPO:-codait}"
BASE_IMAGE_TEMPLATE="${BASE_IMAGE_TEMPLATE:-}"
PUSH="${PUSH:-1}"
PLATFORMS="${PLATFORMS:-}"
ENGINE="${ENGINE:-docker}"
FAIL_FAST="${FAIL_FAST:-0}"
DRY_RUN="${DRY_RUN:-0}"

readonly VALUE_OPTIONS_RE='^(-m|--models|-u|--username|-r|--registry|-t|--tag|--base-repo|--base-image|--platforms|--engine)$'

parse_args() {
  local option value
  while (($#)); do
    option="$1"
    value=""
    if [[ "$option" == --*=* ]]; then
      value="${option#*=}"
      option="${option%%=*}"
      [[ "$option" =~ $VALUE_OPTIONS_RE ]] || usage_error "$option takes no value (see --help)"
    elif [[ "$option" =~ $VALUE_OPTIONS_RE ]]; then
      (($# >= 2)) || usage_error "$option needs a value (see --help)"
      value="$2"
      shift
    fi
    case "$option" in
      -m | --models) MODELS="$value" ;;
      -u | --username) USERNAME="$value" ;;
      -r | --registry) REGISTRY="$value" ;;
      -t | --tag) TAG="$value" ;;
      --base-repo) BASE_REPO="$value" ;;
      --base-image) BASE_IMAGE_TEMPLATE="$value" ;;
      --platforms) PLATFORMS="$value" ;;
      --engine) ENGINE="$value" ;;
      --push) PUSH=1 ;;
      --no-push) PUSH=0 ;;
      --fail-fast) FAIL_FAST=1 ;;
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unknown option '$option' (see --help)" ;;
    esac
    shift
  done
}

shim_version() {
  local version
  version="$(sed -n 's/^__version__ = "\([0-9A-Za-z.+-]*\)"$/\1/p' "$ROOT_DIR/serverless_max/__init__.py")"
  [[ -n "$version" ]] || usage_error "cannot read __version__ from $ROOT_DIR/serverless_max/__init__.py"
  printf '%s' "$version"
}

MODEL_LIST=()

validate_inputs() {
  [[ -f "$ROOT_DIR/Dockerfile" && -f "$ROOT_DIR/openwhisk.py" ]] ||
    usage_error "Dockerfile and openwhisk.py must sit beside build.sh in $ROOT_DIR"
  PUSH="$(as_flag "$PUSH" PUSH)"
  FAIL_FAST="$(as_flag "$FAIL_FAST" FAIL_FAST)"
  DRY_RUN="$(as_flag "$DRY_RUN" DRY_RUN)"

  local model known
  local -a requested
  read -ra requested <<<"${MODELS//[,$'\n\t']/ }"
  ((${#requested[@]})) ||
    usage_error 'no models given: set MODELS="max-facial-emotion-classifier ..." or use --models'
  for model in "${requested[@]}"; do
    [[ "$model" =~ $MODEL_RE ]] ||
      usage_error "'$model' is not a MAX model name: use lowercase letters, digits and . _ - only, starting with max- (e.g. max-object-detector)"
    for known in "${MODEL_LIST[@]}"; do
      [[ "$known" != "$model" ]] || continue 2
    done
    MODEL_LIST+=("$model")
  done

  case "$ENGINE" in
    docker | podman) ;;
    *) usage_error "ENGINE must be docker or podman, not '$ENGINE'" ;;
  esac
  if [[ -n "$REGISTRY" && ! "$REGISTRY" =~ $HOST_RE ]]; then
    usage_error "REGISTRY '$REGISTRY' is not a registry host[:port] (e.g. localhost:5000 or quay.io)"
  fi
  if [[ -n "$USERNAME" && ! "$USERNAME" =~ $NAMESPACE_RE ]]; then
    usage_error "USERNAME '$USERNAME' is not a registry account name: use lowercase letters, digits and . _ - (e.g. USERNAME=jdoe)"
  fi
  if ((PUSH)) && [[ -z "$USERNAME" ]]; then
    usage_error "USERNAME is required to push: set USERNAME=<your registry account>, or build only with --no-push"
  fi

  if [[ -z "$TAG" ]]; then
    TAG="$(shim_version)-$(date -u +%Y%m%d)"
  fi
  [[ "$TAG" =~ $TAG_RE ]] ||
    usage_error "TAG '$TAG' is not a valid image tag: letters, digits, _ . - (at most 128, not starting with . or -)"
  if [[ "$TAG" == latest ]]; then
    warn "tag 'latest': OpenWhisk asks the registry for a :latest image again on every cold start; pin a tag for deployments"
  fi

  if [[ -z "$BASE_IMAGE_TEMPLATE" ]]; then
    [[ "$BASE_REPO" =~ $REPOSITORY_RE ]] ||
      usage_error "BASE_REPO '$BASE_REPO' is not an image repository (e.g. codait or quay.io/codait)"
    BASE_IMAGE_TEMPLATE="$BASE_REPO/{model}:latest"
  fi
  [[ "$BASE_IMAGE_TEMPLATE" =~ $TEMPLATE_RE ]] ||
    usage_error "BASE_IMAGE_TEMPLATE '$BASE_IMAGE_TEMPLATE' may only hold an image reference with {model} in it (e.g. 'myreg/{model}:v2')"
  for model in "${MODEL_LIST[@]}"; do
    [[ "$(base_image_of "$model")" =~ $IMAGE_REF_RE ]] ||
      usage_error "BASE_IMAGE_TEMPLATE '$BASE_IMAGE_TEMPLATE' gives '$(base_image_of "$model")', which is not an image reference"
  done

  if [[ -n "$PLATFORMS" ]]; then
    [[ "$PLATFORMS" =~ $PLATFORMS_RE ]] ||
      usage_error "PLATFORMS '$PLATFORMS' is not a list like linux/amd64,linux/arm64"
    [[ "$ENGINE" == docker ]] || usage_error "PLATFORMS needs docker buildx; unset it to build with $ENGINE"
    ((PUSH)) || usage_error "PLATFORMS builds a multi-platform image, which can only go to a registry: drop --no-push"
  fi
}

# The engine must answer, and be able to push where we push, before any model is built.
check_environment() {
  command -v "$ENGINE" >/dev/null ||
    usage_error "$ENGINE is not installed: install it, or choose another engine with ENGINE=docker|podman"
  "$ENGINE" info >/dev/null 2>&1 ||
    usage_error "cannot reach the $ENGINE engine: start it (or point DOCKER_HOST at it) and run again"
  if [[ -n "$PLATFORMS" ]]; then
    docker buildx version >/dev/null 2>&1 ||
      usage_error "PLATFORMS needs the docker buildx plugin: install it, or unset PLATFORMS"
  fi
  if ((PUSH)); then
    check_logged_in
  fi
}

registry_host() {
  if [[ -n "$REGISTRY" ]]; then printf '%s' "$REGISTRY"; else printf 'docker.io'; fi
}

check_logged_in() {
  local host
  host="$(registry_host)"
  case "${host%:*}" in
    localhost | 127.0.0.1 | 127.*) return 0 ;; # a loopback registry needs no login
  esac
  if [[ "$ENGINE" == podman ]]; then
    podman login --get-login "$host" >/dev/null 2>&1 ||
      usage_error "not logged in to $host: run 'podman login $host' first"
    return 0
  fi
  command -v python3 >/dev/null ||
    usage_error "python3 is needed to read the docker login configuration: install it"
  docker_config_has_login "${DOCKER_CONFIG:-$HOME/.docker}/config.json" "$host" ||
    usage_error "not logged in to $host: run 'docker login${REGISTRY:+ $REGISTRY}' first"
}

# True when docker's config.json holds credentials (or a credential helper) for the host.
docker_config_has_login() {
  python3 - "$1" "$2" <<'PYTHON'
import json
import sys

config_path, host = sys.argv[1], sys.argv[2]
if host == "docker.io":
    keys = {"https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"}
else:
    keys = {host, "https://" + host, "http://" + host, "https://" + host + "/v1/", "https://" + host + "/v2/"}
try:
    with open(config_path) as config_file:
        config = json.load(config_file)
except (OSError, ValueError):
    sys.exit(1)
logged_in = any(key in config.get("auths", {}) or key in config.get("credHelpers", {}) for key in keys)
sys.exit(0 if logged_in else 1)
PYTHON
}

# -------------------------------------------------------------------------------- per model
base_image_of() { printf '%s' "${BASE_IMAGE_TEMPLATE//\{model\}/$1}"; }

repository_of() {
  local repository="$1"
  if [[ -n "$USERNAME" ]]; then repository="$USERNAME/$repository"; fi
  if [[ -n "$REGISTRY" ]]; then repository="$REGISTRY/$repository"; fi
  printf '%s' "$repository"
}

# Prints "MEMORY_MB TIMEOUT_MS" for a model: the catalogue's values, or the defaults.
action_limits() {
  local limits=""
  if [[ -r "$CATALOGUE" ]] && command -v python3 >/dev/null; then
    limits="$(python3 - "$CATALOGUE" "$1" <<'PYTHON' || true
import json
import sys

catalogue_path, model = sys.argv[1], sys.argv[2]
try:
    with open(catalogue_path) as catalogue_file:
        entries = json.load(catalogue_file)["models"]
    for entry in entries:
        if entry.get("name") == model:
            print(int(entry["memory_mb"]), int(entry["timeout_ms"]))
except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
    print("warning: cannot read limits from %s (%r); using the defaults" % (catalogue_path, error), file=sys.stderr)
PYTHON
)"
  fi
  if [[ "$limits" =~ ^[0-9]+\ [0-9]+$ ]]; then
    printf '%s' "$limits"
  else
    printf '%s %s' "$DEFAULT_MEMORY_MB" "$DEFAULT_TIMEOUT_MS"
  fi
}

BUILD_ARGS=()

build_image() {
  local model="$1" image="$2" digest_file="$3"
  local -a command
  if [[ -n "$PLATFORMS" ]]; then
    command=(docker buildx build --platform "$PLATFORMS" --push --metadata-file "$digest_file")
  else
    command=("$ENGINE" build)
  fi
  command+=(--build-arg "model=$model" --build-arg "base_image=$(base_image_of "$model")")
  command+=("${BUILD_ARGS[@]}" --tag "$image" --file "$ROOT_DIR/Dockerfile" "$ROOT_DIR")
  run "${command[@]}"
}

# Prints the pushed image's registry digest (sha256:...), or the local image id when not pushed.
image_digest() {
  local image="$1" digest_file="$2" repository="${1%:*}" digest
  local -a digests
  if ((DRY_RUN)); then
    printf -- '-'
  elif [[ -n "$PLATFORMS" ]]; then
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$digest_file"
  elif ((PUSH)); then
    read -ra digests <<<"$("$ENGINE" image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' "$image")"
    for digest in "${digests[@]}"; do
      if [[ "${digest%@*}" == "$repository" || "${digest%@*}" == "docker.io/$repository" ]]; then
        printf '%s' "${digest#*@}"
        return 0
      fi
    done
    printf 'pushed (digest unknown)'
  else
    printf '%s (local id)' "$("$ENGINE" image inspect --format '{{.Id}}' "$image")"
  fi
}

SUMMARY_MODELS=()
SUMMARY_IMAGES=()
SUMMARY_RESULTS=()
SUMMARY_SECONDS=()
NEXT_STEPS=()
FAILURES=0

# Builds (and pushes) one model; records a summary row. Returns non-zero when it failed.
process_model() {
  local index="$1" total="$2" model="$3"
  local image started digest_file result status=0 memory timeout
  image="$(repository_of "$model"):$TAG"
  digest_file="$(mktemp)"
  started="$(date +%s)"
  say "[$index/$total] $model: building $image from $(base_image_of "$model") ..."
  if ! build_image "$model" "$image" "$digest_file"; then
    status=1
    result="error: build failed"
  elif ((PUSH)) && [[ -z "$PLATFORMS" ]]; then
    say "[$index/$total] $model: pushing $image ..."
    if ! run "$ENGINE" push "$image"; then
      status=1
      result="error: push failed"
    fi
  fi
  if ((status == 0)); then
    result="$(image_digest "$image" "$digest_file")" || result="built (digest unknown)"
    read -r memory timeout <<<"$(action_limits "$model")"
    NEXT_STEPS+=("wsk action create $model --docker $image --web raw -m $memory -t $timeout")
    say "[$index/$total] $model: done"
  else
    say "[$index/$total] $model: FAILED ($result)"
  fi
  rm -f "$digest_file"
  SUMMARY_MODELS+=("$model")
  SUMMARY_IMAGES+=("$image")
  SUMMARY_RESULTS+=("$result")
  SUMMARY_SECONDS+=("$(($(date +%s) - started))")
  return "$status"
}

print_summary() {
  local i width_model=5 width_image=5
  for i in "${!SUMMARY_MODELS[@]}"; do
    ((${#SUMMARY_MODELS[i]} <= width_model)) || width_model=${#SUMMARY_MODELS[i]}
    ((${#SUMMARY_IMAGES[i]} <= width_image)) || width_image=${#SUMMARY_IMAGES[i]}
  done
  say ""
  printf "%-${width_model}s  %-${width_image}s  %7s  %s\n" MODEL IMAGE SECONDS 'DIGEST OR ERROR'
  for i in "${!SUMMARY_MODELS[@]}"; do
    printf "%-${width_model}s  %-${width_image}s  %7s  %s\n" \
      "${SUMMARY_MODELS[i]}" "${SUMMARY_IMAGES[i]}" "${SUMMARY_SECONDS[i]}" "${SUMMARY_RESULTS[i]}"
  done
  if ((${#NEXT_STEPS[@]})); then
    say ""
    say "Next: create the web actions (limits from examples/catalogue.json; a stock Apache OpenWhisk allows at most -m 512 -t 300000):"
    for i in "${!NEXT_STEPS[@]}"; do say "  ${NEXT_STEPS[i]}"; done
  fi
}

main() {
  parse_args "$@"
  validate_inputs
  if ((DRY_RUN)); then
    say "dry run: the commands below are printed, not run"
  else
    check_environment
  fi
  local revision
  revision="$(git -C "$ROOT_DIR" rev-parse --verify --quiet HEAD 2>/dev/null || printf 'unknown')"
  BUILD_ARGS=(
    --build-arg "version=$(shim_version)"
    --build-arg "created=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    --build-arg "revision=$revision"
  )

  local index=0 total="${#MODEL_LIST[@]}" model
  for model in "${MODEL_LIST[@]}"; do
    index=$((index + 1))
    if ! process_model "$index" "$total" "$model"; then
      FAILURES=$((FAILURES + 1))
      if ((FAIL_FAST)); then
        say "stopping after the first failure (--fail-fast)"
        break
      fi
    fi
  done
  print_summary
  if ((FAILURES)); then
    printf 'error: %d of %d models failed\n' "$FAILURES" "$total" >&2
    exit 1
  fi
}

main "$@"

#!/usr/bin/env bash
# Builds IBM MAX model images into serverless images (Dockerfile, openwhisk.py and serverless_max/
# beside this script) that serve the model's own API on Apache OpenWhisk, Knative, Cloud Run,
# Code Engine and AWS Lambda, and pushes them to a registry. Run with --help for the interface.
set -Eeuo pipefail
shopt -s inherit_errexit # a failure inside $(...) fails the assignment that holds it

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT_DIR
readonly CATALOGUE="$ROOT_DIR/examples/catalogue.json"
# Apache OpenWhisk's largest default memory limit and its default timeout: what a model gets
# when examples/catalogue.json does not list it.
readonly DEFAULT_MEMORY_MB=512
readonly DEFAULT_TIMEOUT_MS=60000
readonly EXIT_USAGE=2
readonly CONTAINER_PORT=8080
readonly ALL_PLATFORMS="openwhisk cloudrun knative lambda codeengine"
readonly DEPLOY_FILES="$ROOT_DIR/scripts/deploy_files.py"
# The most containers (instances) a model gets on a platform unless --max-instances says otherwise.
readonly DEFAULT_MAX_INSTANCES=10
readonly OPENWHISK_STOCK_MAX_MEMORY_MB=512
readonly OPENWHISK_STOCK_MAX_TIMEOUT_MS=300000

# Shapes accepted for each input; nothing else ever reaches a command line.
readonly MODEL_RE='^max-[a-z0-9]+([._-][a-z0-9]+)*$'
readonly PATH_COMPONENT='[a-z0-9]+([._-][a-z0-9]+)*'
readonly NAMESPACE_RE="^${PATH_COMPONENT}(/${PATH_COMPONENT})*$"
readonly HOST_RE='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:([0-9]{1,5}))?$'
readonly TAG_RE='^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
readonly REPOSITORY="([A-Za-z0-9.-]+(:[0-9]{1,5})?/)?${PATH_COMPONENT}(/${PATH_COMPONENT})*"
readonly REPOSITORY_RE="^${REPOSITORY}$"
readonly IMAGE_REF_RE="^(${REPOSITORY})(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
readonly TEMPLATE_RE='^[A-Za-z0-9._/:@{}-]+$'
readonly PLATFORMS_RE='^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?(,[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?)*$'
# Longest accepted values: a registry reference is at most 255 characters long, and a list of
# models this long is far beyond any real build.
readonly MAX_VALUE_LENGTH=255
readonly MAX_MODELS_LENGTH=4096

usage() {
  cat <<EOF
Usage: MODELS="max-a max-b" USERNAME=me ./build.sh [options]

Builds each IBM MAX model image into a serverless image (the model image plus openwhisk.py and
serverless_max/, serving the model's own API on port ${CONTAINER_PORT} for Apache OpenWhisk,
Knative, Cloud Run, Code Engine and AWS Lambda), pushes it and prints the command that deploys
it on each platform. Every option can also be given as the environment variable in capitals
beside it; an option wins over the variable.

  -m, --models LIST        MODELS               MAX model names, space or comma separated
                                                 (e.g. "max-facial-emotion-classifier max-object-detector")
  -u, --username NAME      USERNAME             registry account or namespace; required to push
  -r, --registry HOST      REGISTRY             registry host[:port] (default: Docker Hub)
                                                 e.g. localhost:5000 -> localhost:5000/NAME/MODEL:TAG
  -t, --tag TAG            TAG                  image tag (default: <shim version>-<UTC date>,
                                                 e.g. 1.0.0-20250101; 'latest' only when asked for)
      --base-repo REPO     BASE_REPO            where the MAX images live (default: quay.io/codait;
                                                 'codait' for the old Docker Hub copies)
      --base-image TMPL    BASE_IMAGE_TEMPLATE  base image with {model} in it (default:
                                                 BASE_REPO/{model}:latest, e.g. 'myreg/{model}:v2'
                                                 or 'quay.io/codait/{model}@sha256:<digest>')
      --push | --no-push   PUSH=1|0             push after building (default: 1)
      --platforms LIST     PLATFORMS            e.g. linux/amd64,linux/arm64: one multi-platform
                                                 image through 'docker buildx' (pushes; docker only)
      --platform NAMES     PLATFORM             whose deploy commands to print: all (default) or
                                                 some of openwhisk,cloudrun,knative,lambda,codeengine
      --engine NAME        ENGINE               docker (default) or podman
      --deploy-dir DIR     DEPLOY_DIR           also write each model's deployment files into DIR/MODEL/:
                                                 Knative and Cloud Run services, a SAM template, an
                                                 OpenWhisk manifest and NEXT-STEPS.txt (needs python3;
                                                 every model must be in examples/catalogue.json)
      --max-instances N    MAX_INSTANCES        most containers per model the deploy commands and
                                                 files allow (default: ${DEFAULT_MAX_INSTANCES})
      --fail-fast          FAIL_FAST=1          stop at the first model that fails
      --dry-run            DRY_RUN=1            validate, then print every command instead of
                                                 running it (skips the engine and login checks)
  -h, --help                                    show this help

Memory and timeout in the printed deploy commands come from examples/catalogue.json,
converted to each platform's units and bounds; a model it does not list gets
${DEFAULT_MEMORY_MB} MB and ${DEFAULT_TIMEOUT_MS} ms. A MAX model computes one prediction at a time,
so every command and file gives a container one request at a time and lets the platform add
containers up to MAX_INSTANCES, and remove them all when idle (docs/deploy.md).
Exit codes: 0 all built, 1 a model failed, 2 invalid input or environment (nothing was run).
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
# Every usage or environment problem is one line on stderr and exit code 2. It is only ever
# called from the main shell, never inside $(...), so it always ends the whole run.
usage_error() {
  local message="$*"
  printf 'error: %s\n' "${message//$'\n'/\\n}" >&2 # a value quoted in it may hold a newline
  exit "$EXIT_USAGE"
}

# Rewrites the yes/no setting named $1 (1/0, true/false, yes/no, on/off) to 1 or 0.
normalise_flag() {
  local name="$1" value="${!1}"
  check_length "$name" "$value" "$MAX_VALUE_LENGTH"
  case "$value" in
    1 | true | yes | on) printf -v "$name" 1 ;;
    0 | false | no | off | "") printf -v "$name" 0 ;;
    *) usage_error "$name must be 1/0, true/false, yes/no or on/off, not '$value'" ;;
  esac
}

# Refuses a value longer than the limit, naming it without echoing it back.
check_length() {
  local name="$1" value="$2" limit="$3"
  ((${#value} <= limit)) ||
    usage_error "$name is ${#value} characters long; at most $limit are accepted"
}

LAST_STATUS=0
# Prints a command, shell-quoted; runs it unless this is a dry run. Its status goes to LAST_STATUS.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  LAST_STATUS=0
  if ((DRY_RUN)); then return 0; fi
  "$@" || LAST_STATUS=$?
}

# ------------------------------------------------------------------------------------ inputs
MODELS="${MODELS:-}"
USERNAME="${USERNAME:-}"
REGISTRY="${REGISTRY:-}"
TAG="${TAG:-}"
BASE_REPO="${BASE_REPO:-quay.io/codait}"
BASE_IMAGE_TEMPLATE="${BASE_IMAGE_TEMPLATE:-}"
PUSH="${PUSH:-1}"
PLATFORMS="${PLATFORMS:-}"
PLATFORM="${PLATFORM:-all}"
ENGINE="${ENGINE:-docker}"
FAIL_FAST="${FAIL_FAST:-0}"
DRY_RUN="${DRY_RUN:-0}"
DEPLOY_DIR="${DEPLOY_DIR:-}"
MAX_INSTANCES="${MAX_INSTANCES:-$DEFAULT_MAX_INSTANCES}"

readonly VALUE_OPTIONS_RE='^(-m|--models|-u|--username|-r|--registry|-t|--tag|--base-repo|--base-image|--platforms|--platform|--engine|--deploy-dir|--max-instances)$'

parse_args() {
  local option value
  while (($#)); do
    option="$1"
    value=""
    if [[ "$option" == --*=* ]]; then
      value="${option#*=}"
      option="${option%%=*}"
      [[ "$option" =~ $VALUE_OPTIONS_RE ]] || usage_error "${option:0:60} takes no value (see --help)"
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
      --platform) PLATFORM="$value" ;;
      --engine) ENGINE="$value" ;;
      --deploy-dir) DEPLOY_DIR="$value" ;;
      --max-instances) MAX_INSTANCES="$value" ;;
      --push) PUSH=1 ;;
      --no-push) PUSH=0 ;;
      --fail-fast) FAIL_FAST=1 ;;
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unknown option '${option:0:60}' (see --help)" ;;
    esac
    shift
  done
}

SHIM_VERSION=""
read_shim_version() {
  SHIM_VERSION="$(sed -n 's/^__version__ = "\([0-9A-Za-z.+-]*\)"$/\1/p' "$ROOT_DIR/serverless_max/__init__.py")"
  [[ -n "$SHIM_VERSION" ]] || usage_error "cannot read __version__ from $ROOT_DIR/serverless_max/__init__.py"
}

MODEL_LIST=()
DEPLOY_PLATFORMS=()

validate_models() {
  local model known
  local -a requested
  check_length MODELS "$MODELS" "$MAX_MODELS_LENGTH"
  read -ra requested <<<"${MODELS//[,$'\n\t']/ }"
  ((${#requested[@]})) ||
    usage_error 'no models given: set MODELS="max-facial-emotion-classifier ..." or use --models'
  for model in "${requested[@]}"; do
    check_length "the model name '${model:0:40}...'" "$model" 128
    [[ "$model" =~ $MODEL_RE ]] ||
      usage_error "'$model' is not a MAX model name: use lowercase letters, digits and . _ - only, starting with max- (e.g. max-object-detector)"
    for known in "${MODEL_LIST[@]}"; do
      [[ "$known" != "$model" ]] || continue 2
    done
    MODEL_LIST+=("$model")
  done
}

validate_registry() {
  [[ -n "$REGISTRY" ]] || return 0
  check_length REGISTRY "$REGISTRY" "$MAX_VALUE_LENGTH"
  [[ "$REGISTRY" =~ $HOST_RE ]] ||
    usage_error "REGISTRY '$REGISTRY' is not a registry host[:port] (e.g. localhost:5000 or quay.io)"
  local port="${BASH_REMATCH[3]}"
  if [[ -n "$port" ]] && ((10#$port < 1 || 10#$port > 65535)); then
    usage_error "REGISTRY '$REGISTRY' has port $port; a port is 1 to 65535"
  fi
}

validate_base_images() {
  local model base
  if [[ -z "$BASE_IMAGE_TEMPLATE" ]]; then
    check_length BASE_REPO "$BASE_REPO" "$MAX_VALUE_LENGTH"
    [[ "$BASE_REPO" =~ $REPOSITORY_RE ]] ||
      usage_error "BASE_REPO '$BASE_REPO' is not an image repository (e.g. quay.io/codait or codait)"
    BASE_IMAGE_TEMPLATE="$BASE_REPO/{model}:latest"
  fi
  check_length BASE_IMAGE_TEMPLATE "$BASE_IMAGE_TEMPLATE" "$MAX_VALUE_LENGTH"
  [[ "$BASE_IMAGE_TEMPLATE" =~ $TEMPLATE_RE ]] ||
    usage_error "BASE_IMAGE_TEMPLATE '$BASE_IMAGE_TEMPLATE' may only hold an image reference with {model} in it (e.g. 'myreg/{model}:v2')"
  [[ "$BASE_IMAGE_TEMPLATE" == *'{model}'* ]] ||
    usage_error "BASE_IMAGE_TEMPLATE '$BASE_IMAGE_TEMPLATE' has no {model}, so every model would be built from the same image (e.g. 'myreg/{model}:v2')"
  for model in "${MODEL_LIST[@]}"; do
    base="$(base_image_of "$model")"
    [[ "$base" =~ $IMAGE_REF_RE ]] ||
      usage_error "BASE_IMAGE_TEMPLATE '$BASE_IMAGE_TEMPLATE' gives '$base', which is not an image reference"
    check_length "the base image of $model" "$base" "$MAX_VALUE_LENGTH"
  done
}

validate_deploy_platforms() {
  local name
  local -a names
  check_length PLATFORM "$PLATFORM" "$MAX_VALUE_LENGTH"
  read -ra names <<<"${PLATFORM//,/ }"
  ((${#names[@]})) || usage_error "PLATFORM is empty: use all, or some of ${ALL_PLATFORMS// /,}"
  for name in "${names[@]}"; do
    if [[ "$name" == all ]]; then
      read -ra DEPLOY_PLATFORMS <<<"$ALL_PLATFORMS"
      return 0
    fi
    [[ " $ALL_PLATFORMS " == *" $name "* ]] ||
      usage_error "PLATFORM '$name' is not one of all,${ALL_PLATFORMS// /,}"
    DEPLOY_PLATFORMS+=("$name")
  done
}

validate_inputs() {
  [[ -f "$ROOT_DIR/Dockerfile" && -f "$ROOT_DIR/openwhisk.py" ]] ||
    usage_error "Dockerfile and openwhisk.py must sit beside build.sh in $ROOT_DIR"
  read_shim_version
  normalise_flag PUSH
  normalise_flag FAIL_FAST
  normalise_flag DRY_RUN
  validate_models

  check_length ENGINE "$ENGINE" "$MAX_VALUE_LENGTH"
  case "$ENGINE" in
    docker | podman) ;;
    *) usage_error "ENGINE must be docker or podman, not '$ENGINE'" ;;
  esac
  validate_registry
  if [[ -n "$USERNAME" ]]; then
    check_length USERNAME "$USERNAME" "$MAX_VALUE_LENGTH"
    [[ "$USERNAME" =~ $NAMESPACE_RE ]] ||
      usage_error "USERNAME '$USERNAME' is not a registry account name: use lowercase letters, digits and . _ - (e.g. USERNAME=jdoe)"
  fi
  if ((PUSH)) && [[ -z "$USERNAME" ]]; then
    usage_error "USERNAME is required to push: set USERNAME=<your registry account>, or build only with --no-push"
  fi

  if [[ -z "$TAG" ]]; then
    local today
    today="$(date -u +%Y%m%d)"
    TAG="$SHIM_VERSION-$today"
  fi
  check_length TAG "$TAG" "$MAX_VALUE_LENGTH"
  [[ "$TAG" =~ $TAG_RE ]] ||
    usage_error "TAG '$TAG' is not a valid image tag: letters, digits, _ . - (at most 128, not starting with . or -)"
  if [[ "$TAG" == latest ]]; then
    warn "tag 'latest': OpenWhisk asks the registry for a :latest image again on every cold start; pin a tag for deployments"
  fi

  validate_base_images
  local model repository
  for model in "${MODEL_LIST[@]}"; do
    repository="$(repository_of "$model")"
    check_length "the image name $repository" "$repository" "$MAX_VALUE_LENGTH"
  done

  if [[ -n "$PLATFORMS" ]]; then
    check_length PLATFORMS "$PLATFORMS" "$MAX_VALUE_LENGTH"
    [[ "$PLATFORMS" =~ $PLATFORMS_RE ]] ||
      usage_error "PLATFORMS '$PLATFORMS' is not a list like linux/amd64,linux/arm64"
    [[ "$ENGINE" == docker ]] || usage_error "PLATFORMS needs docker buildx; unset it to build with $ENGINE"
    ((PUSH)) || usage_error "PLATFORMS builds a multi-platform image, which can only go to a registry: drop --no-push"
  fi
  validate_deploy_platforms
  validate_deploy_files
}

# --max-instances, and with --deploy-dir: python3, the generator, a directory to write, and
# limits in the catalogue for every model (checked before anything is built).
validate_deploy_files() {
  check_length MAX_INSTANCES "$MAX_INSTANCES" "$MAX_VALUE_LENGTH"
  [[ "$MAX_INSTANCES" =~ ^[1-9][0-9]{0,5}$ ]] ||
    usage_error "MAX_INSTANCES must be a whole number from 1 to 999999, not '$MAX_INSTANCES'"
  [[ -n "$DEPLOY_DIR" ]] || return 0
  check_length DEPLOY_DIR "$DEPLOY_DIR" 4096
  [[ "$DEPLOY_DIR" != -* ]] || usage_error "DEPLOY_DIR '$DEPLOY_DIR' starts with '-': write ./$DEPLOY_DIR"
  [[ ! -e "$DEPLOY_DIR" || -d "$DEPLOY_DIR" ]] || usage_error "DEPLOY_DIR '$DEPLOY_DIR' exists and is not a directory"
  command -v python3 >/dev/null || usage_error "--deploy-dir needs python3 to write the files: install it"
  [[ -f "$DEPLOY_FILES" ]] || usage_error "scripts/deploy_files.py must sit beside build.sh in $ROOT_DIR for --deploy-dir"
  local problem
  if ! problem="$(python3 "$DEPLOY_FILES" check --catalogue "$CATALOGUE" "${MODEL_LIST[@]}" 2>&1)"; then
    usage_error "${problem#error: }"
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
  [[ -d "$ROOT_DIR/serverless_max" ]] ||
    usage_error "serverless_max/ must sit beside build.sh in $ROOT_DIR (the image copies it next to the model's app.py)"
}

check_logged_in() {
  local host="${REGISTRY:-docker.io}"
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
  # True when docker's config.json holds credentials (or a credential helper) for the host.
  python3 - "${DOCKER_CONFIG:-$HOME/.docker}/config.json" "$host" <<'PYTHON' ||
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
    usage_error "not logged in to $host: run 'docker login${REGISTRY:+ $REGISTRY}' first"
}

# -------------------------------------------------------------------------------- per model
base_image_of() { printf '%s' "${BASE_IMAGE_TEMPLATE//\{model\}/$1}"; }

repository_of() {
  local repository="$1"
  if [[ -n "$USERNAME" ]]; then repository="$USERNAME/$repository"; fi
  if [[ -n "$REGISTRY" ]]; then repository="$REGISTRY/$repository"; fi
  printf '%s' "$repository"
}

MEMORY_MB=0
TIMEOUT_MS=0
# Sets MEMORY_MB and TIMEOUT_MS for a model: the catalogue's values, or the defaults.
read_limits() {
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
  if [[ "$limits" =~ ^([0-9]{1,6})\ ([0-9]{1,9})$ ]]; then
    MEMORY_MB="${BASH_REMATCH[1]}"
    TIMEOUT_MS="${BASH_REMATCH[2]}"
  else
    MEMORY_MB="$DEFAULT_MEMORY_MB"
    TIMEOUT_MS="$DEFAULT_TIMEOUT_MS"
  fi
}

BASE_DIGEST=""
# Sets BASE_DIGEST to the base image's digest when it is known without reaching a registry:
# pinned in the reference itself, or recorded by the engine for its local copy of the image
# (pulled from, or pushed to, its registry). Empty when unknown.
find_base_digest() {
  local base="$1" repository="$1" entry
  local -a entries
  BASE_DIGEST=""
  if [[ "$base" == *@sha256:* ]]; then
    BASE_DIGEST="${base##*@}"
    return 0
  fi
  if ((DRY_RUN)) || [[ -n "$PLATFORMS" ]]; then return 0; fi
  if [[ "${repository##*/}" == *:* ]]; then repository="${repository%:*}"; fi
  local listed=""
  if ! listed="$("$ENGINE" image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' "$base" 2>/dev/null)"; then
    return 0 # not there yet: the build pulls it
  fi
  read -ra entries <<<"$listed"
  for entry in "${entries[@]}"; do
    case "${entry%@*}" in
      "$repository" | "docker.io/$repository" | "docker.io/library/$repository")
        BASE_DIGEST="${entry#*@}"
        return 0
        ;;
    esac
  done
}

BUILD_ARGS=()

build_image() {
  local model="$1" image="$2" digest_file="$3" base
  local -a command
  base="$(base_image_of "$model")"
  find_base_digest "$base"
  if [[ -n "$PLATFORMS" ]]; then
    command=(docker buildx build --platform "$PLATFORMS" --push --metadata-file "$digest_file")
  else
    command=("$ENGINE" build)
  fi
  command+=(--build-arg "model=$model" --build-arg "base_image=$base")
  if [[ -n "$BASE_DIGEST" ]]; then
    command+=(--label "org.opencontainers.image.base.digest=$BASE_DIGEST")
  fi
  command+=("${BUILD_ARGS[@]}" --tag "$image" --file "$ROOT_DIR/Dockerfile" "$ROOT_DIR")
  run "${command[@]}"
}

DIGEST=""
# Sets DIGEST to the pushed image's registry digest (sha256:...), or the local image id when
# not pushed.
read_image_digest() {
  local image="$1" digest_file="$2" repository="${1%:*}" listed="" entry
  local -a entries
  if ((DRY_RUN)); then
    DIGEST="-"
  elif [[ -n "$PLATFORMS" ]]; then
    if ! DIGEST="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$digest_file")"; then
      DIGEST="pushed (digest unknown)"
    fi
  elif ((PUSH)); then
    DIGEST="pushed (digest unknown)"
    listed="$("$ENGINE" image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' "$image" 2>/dev/null || true)"
    read -ra entries <<<"$listed"
    for entry in "${entries[@]}"; do
      if [[ "${entry%@*}" == "$repository" || "${entry%@*}" == "docker.io/$repository" ]]; then
        DIGEST="${entry#*@}"
        break
      fi
    done
  elif listed="$("$ENGINE" image inspect --format '{{.Id}}' "$image")"; then
    DIGEST="$listed (local id)"
  else
    DIGEST="built (digest unknown)"
  fi
}

# ----------------------------------------------------------------- deploy commands per platform
# Prints the model's name as the platform accepts it: lowercase letters, digits and '-', at
# most $2 characters, ending with a letter or digit.
platform_name() {
  local name="${1//[._]/-}"
  name="${name:0:$2}"
  printf '%s' "${name%%-}"
}

# Prints N clamped to [LOW, HIGH].
clamp() {
  local value="$1" low="$2" high="$3"
  if ((value < low)); then value="$low"; elif ((value > high)); then value="$high"; fi
  printf '%s' "$value"
}

# Prints the CPUs Cloud Run requires for that much memory (MiB), or nothing when its default does.
cloudrun_cpu() {
  local memory_mb="$1" row cpu above
  for row in "8 24576" "6 16384" "4 8192" "2 4096"; do
    read -r cpu above <<<"$row"
    if ((memory_mb > above)); then
      printf '%s' "$cpu"
      return 0
    fi
  done
}

CE_CPU=""
CE_MEMORY=""
# Sets CE_CPU and CE_MEMORY to the smallest CPU/memory pair Code Engine accepts that holds MB.
choose_codeengine_size() {
  local memory_mb="$1" row limit
  for row in "0.25 0.5G 512" "0.5 1G 1024" "1 2G 2048" "1 4G 4096" "2 8G 8192" "4 16G 16384" "8 32G 32768"; do
    read -r CE_CPU CE_MEMORY limit <<<"$row"
    if ((memory_mb <= limit)); then return 0; fi
  done
}

declare -A DEPLOY_COMMANDS=()

# Records each platform's deploy command for a built image.
add_deploy_commands() {
  local model="$1" image="$2" seconds platform name memory timeout command cpu
  read_limits "$model"
  seconds=$(((TIMEOUT_MS + 999) / 1000))
  for platform in "${DEPLOY_PLATFORMS[@]}"; do
    case "$platform" in
      openwhisk)
        command="wsk action create $model --docker $image --web raw -m $MEMORY_MB -t $TIMEOUT_MS --concurrency 1"
        if ((MEMORY_MB > OPENWHISK_STOCK_MAX_MEMORY_MB || TIMEOUT_MS > OPENWHISK_STOCK_MAX_TIMEOUT_MS)); then
          command+=$'\n'"# above a stock deployment's -m $OPENWHISK_STOCK_MAX_MEMORY_MB -t $OPENWHISK_STOCK_MAX_TIMEOUT_MS: the operator must raise whisk.memory.max / whisk.time-limit.max first"
        fi
        ;;
      cloudrun)
        name="$(platform_name "$model" 49)"
        memory="$(clamp "$MEMORY_MB" 128 32768)"
        timeout="$(clamp "$seconds" 1 3600)"
        command="gcloud run deploy $name --image $image --port $CONTAINER_PORT --memory ${memory}Mi --timeout $timeout"
        cpu="$(cloudrun_cpu "$memory")"
        if [[ -n "$cpu" ]]; then command+=" --cpu $cpu"; fi
        command+=" --concurrency 1 --min-instances 0 --max-instances $MAX_INSTANCES --cpu-boost"
        ;;
      knative)
        name="$(platform_name "$model" 63)"
        timeout="$(clamp "$seconds" 1 600)"
        command="kn service create $name --image $image --port $CONTAINER_PORT --limit memory=${MEMORY_MB}Mi --timeout $timeout"
        command+=" --concurrency-limit 1 --scale-min 0 --scale-max $MAX_INSTANCES"
        ;;
      lambda)
        name="$(platform_name "$model" 64)"
        memory="$(clamp "$MEMORY_MB" 128 10240)"
        timeout="$(clamp "$seconds" 1 900)"
        command="aws lambda create-function --function-name $name --package-type Image --code ImageUri=$image"
        command+=" --memory-size $memory --timeout $timeout --role \$LAMBDA_ROLE_ARN"
        command+=$'\n'"aws lambda create-function-url-config --function-name $name --auth-type AWS_IAM"
        ;;
      codeengine)
        name="$(platform_name "$model" 35)"
        choose_codeengine_size "$MEMORY_MB"
        timeout="$(clamp "$seconds" 1 600)"
        command="ibmcloud ce application create --name $name --image $image --port $CONTAINER_PORT"
        command+=" --cpu $CE_CPU --memory $CE_MEMORY --request-timeout $timeout"
        command+=" --concurrency 1 --min-scale 0 --max-scale $MAX_INSTANCES"
        ;;
    esac
    DEPLOY_COMMANDS[$platform]+="$command"$'\n'
  done
}

# What to know before running a platform's commands.
platform_heading() {
  case "$1" in
    openwhisk) say "Apache OpenWhisk (memory MB, timeout ms; one activation per container; a stock deployment allows at most -m 512 -t 300000):" ;;
    cloudrun) say "Google Cloud Run (add --region; the image must be in Artifact Registry or Docker Hub; one request per instance; timeout at most 3600 s):" ;;
    knative) say "Knative Serving (one request per container; timeout at most 600 s unless the cluster raised max-revision-timeout-seconds):" ;;
    lambda) say "AWS Lambda (push the image to Amazon ECR in the function's region first: aws ecr create-repository, docker tag, docker push; LAMBDA_ROLE_ARN is its execution role; memory 128-10240 MB, timeout at most 900 s; the function URL is signed with IAM):" ;;
    codeengine) say "IBM Code Engine (in the selected project; the smallest CPU/memory pair that holds the model; one request per instance; timeout at most 600 s):" ;;
  esac
}

DEPLOY_DIRS=()
# Writes (or, in a dry run, prints) the model's deployment files into DEPLOY_DIR/MODEL, pinned to
# the registry digest when the image was pushed and its digest is known. Its status goes to LAST_STATUS.
write_deploy_files() {
  local model="$1" image="$2" digest=""
  local -a command
  if [[ "$DIGEST" =~ ^sha256:[a-f0-9]{64}$ ]]; then digest="$DIGEST"; fi
  command=(python3 "$DEPLOY_FILES" write --catalogue "$CATALOGUE" --out "$DEPLOY_DIR" --model "$model"
    --image "$image" --max-instances "$MAX_INSTANCES")
  if [[ -n "$digest" ]]; then command+=(--digest "$digest"); fi
  if ((DRY_RUN)); then command+=(--dry-run); fi
  LAST_STATUS=0
  "${command[@]}" || LAST_STATUS=$?
  if ((LAST_STATUS == 0)); then DEPLOY_DIRS+=("$DEPLOY_DIR/$model"); fi
}

SUMMARY_MODELS=()
SUMMARY_IMAGES=()
SUMMARY_RESULTS=()
SUMMARY_SECONDS=()
FAILURES=0
MODEL_FAILED=0

# Builds (and pushes) one model; records a summary row and sets MODEL_FAILED.
process_model() {
  local index="$1" total="$2" model="$3"
  local image started finished digest_file result base
  image="$(repository_of "$model"):$TAG"
  base="$(base_image_of "$model")"
  digest_file="$(mktemp)"
  started="$(date +%s)"
  MODEL_FAILED=0
  say "[$index/$total] $model: building $image from $base ..."
  build_image "$model" "$image" "$digest_file"
  if ((LAST_STATUS != 0)); then
    MODEL_FAILED=1
    result="error: build failed"
  elif ((PUSH)) && [[ -z "$PLATFORMS" ]]; then
    say "[$index/$total] $model: pushing $image ..."
    run "$ENGINE" push "$image"
    if ((LAST_STATUS != 0)); then
      MODEL_FAILED=1
      result="error: push failed"
    fi
  fi
  if ((MODEL_FAILED == 0)); then
    read_image_digest "$image" "$digest_file"
    result="$DIGEST"
    add_deploy_commands "$model" "$image"
    if [[ -n "$DEPLOY_DIR" ]]; then
      write_deploy_files "$model" "$image"
      if ((LAST_STATUS != 0)); then
        MODEL_FAILED=1
        result="error: deployment files not written"
      fi
    fi
  fi
  if ((MODEL_FAILED == 0)); then
    say "[$index/$total] $model: done"
  else
    say "[$index/$total] $model: FAILED ($result)"
  fi
  rm -f "$digest_file"
  finished="$(date +%s)"
  SUMMARY_MODELS+=("$model")
  SUMMARY_IMAGES+=("$image")
  SUMMARY_RESULTS+=("$result")
  SUMMARY_SECONDS+=("$((finished - started))")
}

print_summary() {
  local i width_model=5 width_image=5 platform line
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
  ((${#DEPLOY_COMMANDS[@]})) || return 0
  say ""
  if ((${#DEPLOY_DIRS[@]})); then
    local directory
    say "Next: deploy with the files (NEXT-STEPS.txt in each directory holds every platform's commands):"
    for directory in "${DEPLOY_DIRS[@]}"; do
      say "  $directory/"
    done
    return 0
  fi
  say "Next: deploy (memory and timeout from examples/catalogue.json, in each platform's units and bounds)."
  for platform in "${DEPLOY_PLATFORMS[@]}"; do
    say ""
    platform_heading "$platform"
    while IFS= read -r line; do
      say "  $line"
    done <<<"${DEPLOY_COMMANDS[$platform]%$'\n'}"
  done
}

main() {
  parse_args "$@"
  validate_inputs
  if ((DRY_RUN)); then
    say "dry run: the commands below are printed, not run"
  else
    check_environment
  fi
  local revision created
  revision="$(git -C "$ROOT_DIR" rev-parse --verify --quiet HEAD 2>/dev/null || printf 'unknown')"
  created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  BUILD_ARGS=(
    --build-arg "version=$SHIM_VERSION"
    --build-arg "created=$created"
    --build-arg "revision=$revision"
  )

  local index=0 total="${#MODEL_LIST[@]}" model
  for model in "${MODEL_LIST[@]}"; do
    index=$((index + 1))
    process_model "$index" "$total" "$model"
    if ((MODEL_FAILED)); then
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

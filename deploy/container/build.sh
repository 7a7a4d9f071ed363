#!/usr/bin/env bash
# `make image`: Penny's image and the compose stack's service images, built with podman, no registry involved.
#
#   deploy/container/build.sh            localhost/penny:<version> (+ :latest) and localhost/penny-{postgres,redis,haproxy}:<version>
#   REFERENCE_MODEL=true deploy/container/build.sh      also assemble the reference (paid stand-in) model
#
# Every step is cached: unchanged inputs reuse their layers (podman's layer cache keys on file contents), so a
# second build with nothing changed takes seconds. What this script sets up for the build:
#   - containers.conf for podman here: the runc runtime, and nofile/nproc ulimits this machine allows (the
#     defaults ask for more than its hard limits, and runc fails to start the container). Exported as
#     CONTAINERS_CONF, which the compose commands in docs/deploy/README.md use too.
#   - the base image (base.sh), then the host's pip configuration and CA bundle (pip_context.py).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
OUT=build/container
VERSION=$($PYTHON -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE=${PENNY_IMAGE:-localhost/penny}
REFERENCE_MODEL=${REFERENCE_MODEL:-false}
mkdir -p "$OUT"

tools=(podman buildah podman-compose runc mmdebstrap)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null && continue
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing Debian's ${tools[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tools[@]}"
    break
  fi
  echo "build.sh needs ${tools[*]} (Debian packages of the same names); $tool is missing" >&2
  exit 1
done

# The hard limits of this shell, and no more processes than the kernel has pids (runc refuses more here).
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max)
[[ $nproc == unlimited || $nproc -gt $pid_max ]] && nproc=$pid_max
[[ $nofile == unlimited ]] && nofile=1048576
cat >"$OUT/containers.conf" <<EOF
# Written by deploy/container/build.sh for this machine.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$PWD/$OUT/containers.conf

deploy/container/base.sh

mapfile -t pip_paths < <($PYTHON deploy/container/pip_context.py "$OUT/pip")
volumes=()
for path in "${pip_paths[@]}"; do
  [[ -n $path ]] && volumes+=(--volume "$path:$path:ro")
done

build() { # tag, Containerfile, context, extra args...
  local tag=$1 file=$2 context=$3
  shift 3
  echo "== $tag"
  podman build --format docker --layers --file "$file" --tag "$tag" "$@" "$context"
}

start=$SECONDS
build "$IMAGE:$VERSION" deploy/container/Containerfile . \
  --ignorefile deploy/container/Containerfile.dockerignore \
  --secret id=pip.conf,src="$OUT/pip/pip.conf" \
  --secret id=pip-ca.crt,src="$OUT/pip/pip-ca.crt" \
  --build-arg REFERENCE_MODEL="$REFERENCE_MODEL" \
  "${volumes[@]}"
podman tag "$IMAGE:$VERSION" "$IMAGE:latest"
for service in postgres redis haproxy; do
  build "$IMAGE-$service:$VERSION" "deploy/container/$service/Containerfile" "deploy/container/$service"
done
echo "built in $((SECONDS - start)) s:"
podman images --filter "reference=$IMAGE*:$VERSION" --format '{{.Repository}}:{{.Tag}}  {{.Size}}'

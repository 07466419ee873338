#!/usr/bin/env bash
# Build the operator image from the project's own Dockerfile without any container registry, and export
# it as a docker-archive that containerd imports (tests/node, `make demo IN_CLUSTER=1`).
#
#   tests/node/build_image.sh            # prints "<image name> <archive path>" on stdout
#   tests/node/build_image.sh pause      # the same for the Pod sandbox ("pause") image
#
# No registry is reachable here, so the Dockerfile's `FROM python:...` base is replaced, through its
# PYTHON_IMAGE build argument, by an equivalent made from Debian packages (mmdebstrap), cached outside
# the checkout. The Dockerfile itself is unchanged and still builds FROM the official image elsewhere.
# PyPI downloads in the build trust this machine's CA bundle through the Dockerfile's optional
# `ca-bundle` build secret: it is mounted for the RUN steps only and never lands in a layer.
#
# The image tag is a hash of everything the build reads (Dockerfile, .dockerignore, pyproject.toml,
# uv.lock, README.md, operator/), so a source change builds a new image and an unchanged tree reuses the
# archive. Needs root (buildah with chroot isolation, mmdebstrap).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/northflank-llm-operator"
image_dir="${NFLLM_IMAGE_DIR:-$cache_root/image}"
suite="${BASE_SUITE:-bookworm}"
base_name="localhost/nfllm-python-base:$suite"
image_repo="localhost/northflank-llm-operator"
ca_bundle="${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
log() { printf '[build-image] %s\n' "$*" >&2; }

mkdir -p "$image_dir"
# buildah keeps its own storage here instead of the machine-wide /var/lib/containers.
buildah=(buildah --root "$image_dir/storage" --runroot "$image_dir/run" --storage-driver overlay)

exec 9>"$image_dir/.build.lock"
flock 9

# ---- the pause image: no registry to pull it from, so busybox-static running `sleep`, tagged as the
# sandbox image the node's containerd expects. containerd stops sandboxes with SIGKILL.
PAUSE_IMAGE="${PAUSE_IMAGE:-registry.k8s.io/pause:3.10.1}"
if [ "${1:-}" = pause ]; then
  pause_archive="$image_dir/pause-${PAUSE_IMAGE##*:}.tar"
  if [ ! -s "$pause_archive" ]; then
    log "making $PAUSE_IMAGE from busybox-static"
    ctr_id="$("${buildah[@]}" from scratch)"
    "${buildah[@]}" copy "$ctr_id" /bin/busybox /bin/busybox >/dev/null
    "${buildah[@]}" config --entrypoint '["/bin/busybox", "sleep", "2147483647"]' --user 65535:65535 "$ctr_id"
    "${buildah[@]}" commit --quiet --rm "$ctr_id" "$PAUSE_IMAGE" >/dev/null
    "${buildah[@]}" push --quiet "$PAUSE_IMAGE" "docker-archive:$pause_archive.tmp:$PAUSE_IMAGE" >&2
    mv "$pause_archive.tmp" "$pause_archive"
  fi
  printf '%s %s\n' "$PAUSE_IMAGE" "$pause_archive"
  exit 0
fi

# ---- the Python base from Debian packages (cached; ~1 minute cold) --------------------------------
base_tar="$image_dir/python-base-$suite.tar"
if [ ! -s "$base_tar" ]; then
  log "making the Python base rootfs from Debian $suite packages (mmdebstrap)"
  # What the Dockerfile expects of the official python image: python3 at /usr/local/bin, a pip it may
  # uninstall (Debian's own cannot be), no EXTERNALLY-MANAGED marker, groupadd/useradd.
  mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates,passwd \
    --customize-hook='ln -sf /usr/bin/python3 "$1/usr/local/bin/python3"' \
    --customize-hook='ln -sf /usr/bin/python3 "$1/usr/local/bin/python"' \
    --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED' \
    --customize-hook='chroot "$1" sh -c '"'"'w=$(echo /usr/share/python-wheels/pip-*.whl); python3 "$w/pip" install --quiet --no-index --root-user-action=ignore "$w"'"'"'' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$suite" "$base_tar.tmp.tar"
  mv "$base_tar.tmp.tar" "$base_tar"
fi
base_id="$(sha256sum "$base_tar" | cut -c1-16)"
if [ "$("${buildah[@]}" inspect --type image --format '{{index .ImageAnnotations "nfllm.base"}}' "$base_name" 2>/dev/null)" != "$base_id" ]; then
  log "importing the base rootfs as $base_name"
  ctr_id="$("${buildah[@]}" from scratch)"
  "${buildah[@]}" add "$ctr_id" "$base_tar" / >/dev/null
  "${buildah[@]}" config --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd python3 --annotation "nfllm.base=$base_id" "$ctr_id"
  "${buildah[@]}" commit --quiet --rm "$ctr_id" "$base_name" >/dev/null
fi

# ---- the operator image from the project's Dockerfile ---------------------------------------------
src_hash="$(cd "$repo" && { cat Dockerfile .dockerignore pyproject.toml uv.lock README.md;
  find operator -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } \
  | sha256sum | cut -c1-12)"
tag="$src_hash-$base_id"
tag="${tag:0:24}"
image="$image_repo:$tag"
archive="$image_dir/northflank-llm-operator-$tag.tar"
if [ ! -s "$archive" ]; then
  secret=()
  [ -s "$ca_bundle" ] && secret=(--secret "id=ca-bundle,src=$ca_bundle")
  log "building $image from $repo/Dockerfile (buildah, chroot isolation)"
  "${buildah[@]}" bud --quiet --isolation chroot --layers --network host \
    --build-arg "PYTHON_IMAGE=$base_name" --build-arg "REVISION=$src_hash" "${secret[@]}" \
    --tag "$image" --file "$repo/Dockerfile" "$repo" >&2
  rm -f "$image_dir"/northflank-llm-operator-*.tar
  "${buildah[@]}" push --quiet "$image" "docker-archive:$archive.tmp:$image" >&2
  mv "$archive.tmp" "$archive"
  # Keep the layer cache small: drop images of older source trees.
  "${buildah[@]}" images --format '{{.Name}}:{{.Tag}}' | grep "^$image_repo:" | grep -v ":$tag$" \
    | xargs -r "${buildah[@]}" rmi >/dev/null 2>&1 || true
fi
printf '%s %s\n' "$image" "$archive"

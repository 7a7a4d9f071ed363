#!/usr/bin/env bash
# The base image every Penny image starts FROM: Debian bookworm made with mmdebstrap from the Debian mirror
# this host's apt uses, imported into the local image store. No container registry is involved.
#
#   deploy/container/base.sh [--force] [TAG]      (default TAG: localhost/penny-base:bookworm)
#
# Bookworm because Penny needs Python 3.11 (pyproject: >=3.11,<3.12), which is bookworm's python3. It is
# built when missing, or with --force (Debian's security updates, changed inputs): every layer above it is
# then rebuilt too, llama.cpp's long compile included, so changed inputs alone only warn (a label records
# the hash of the suite, packages, options and mirrors it was made from).
set -euo pipefail

FORCE=0
if [[ ${1:-} == --force ]]; then
  FORCE=1
  shift
fi
TAG=${1:-localhost/penny-base:bookworm}
SUITE=bookworm
# What every image needs: TLS roots, Python for Penny, its venv module, and OpenMP for llama.cpp.
PACKAGES=ca-certificates,python3,python3-venv,libgomp1

# The host's entries for bookworm's own suites (deb822 .sources or one-line .list), as one-line mirrors.
# Other repositories the host may have (vendors' suites) are left out: their keys are not in the image.
host_mirrors() {
  local files=()
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $file ]] && files+=("$file")
  done
  ((${#files[@]})) || return 0
  awk -v suite_re="^${SUITE}(-updates|-security)?\$" '
    function flush(   n, m, i, j, uris, suites) {
      if (types ~ /(^| )deb( |$)/ && uri != "") {
        n = split(uri, uris, " "); m = split(suites_field, suites, " ")
        for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
          if (suites[j] ~ suite_re) print "deb " uris[i] " " suites[j] " " (comps == "" ? "main" : comps)
      }
      types = ""; uri = ""; suites_field = ""; comps = ""
    }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[[:space:]]*$/) { flush(); next }
      if ($0 ~ /^#/) next
      key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
      if (key == "types") types = $0; else if (key == "uris") uri = $0
      else if (key == "suites") suites_field = $0; else if (key == "components") comps = $0
      next
    }
    /^deb[[:space:]]/ {
      line = $0; sub(/\[[^]]*\][[:space:]]*/, "", line); split(line, f, /[[:space:]]+/)
      if (f[3] ~ suite_re) { c = ""; for (i = 4; i in f; i++) c = c (c == "" ? "" : " ") f[i]; print "deb " f[2] " " f[3] " " (c == "" ? "main" : c) }
    }
    ENDFILE { if (FILENAME ~ /\.sources$/) flush() }
  ' "${files[@]}" | sort -u
}

mapfile -t MIRRORS < <(host_mirrors)
# Without bookworm entries on the host, mmdebstrap's default: deb.debian.org plus updates and security.
OPTIONS=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --aptopt='APT::Install-Recommends "false"'
)
INPUTS=$(printf '%s\n' "$SUITE" "$PACKAGES" "${OPTIONS[@]}" "${MIRRORS[@]}" | sha256sum | cut -c1-16)

if ((!FORCE)) && podman image exists "$TAG"; then
  made_from=$(podman image inspect --format '{{ index .Labels "penny.base.inputs" }}' "$TAG")
  [[ $made_from == "$INPUTS" ]] ||
    echo "warning: $TAG was made from other inputs ($made_from, now $INPUTS); $0 --force rebuilds it" >&2
  echo "base image $TAG is there"
  exit 0
fi

echo "building base image $TAG from ${MIRRORS[*]:-deb.debian.org (default)}"
mmdebstrap --variant=minbase --include="$PACKAGES" "${OPTIONS[@]}" "$SUITE" - "${MIRRORS[@]}" |
  podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL penny.base.inputs=$INPUTS" \
    --message "mmdebstrap $SUITE minbase + $PACKAGES" \
    - "$TAG"

# A private apt configuration for fetching Debian packages without installing them: the QEMU
# build (trixie-backports) and the guest's kernel, busybox and Python (bookworm). It names its
# suites explicitly, so what it fetches is the same whatever release the host runs. Source it
# after common.sh.

# The Debian mirror the host's own apt uses (deb.debian.org when none is found).
debian_mirror() {
  local m
  m=$(grep -h -o -E '(https?)://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v -- '-security' | head -n 1 | tr -d ' ') || true
  printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

# private_apt DIR SUITE...: set up DIR as an apt root naming SUITE... (component main) and fill
# the array APT_OPTS with the options that make apt-get use it. The status file is empty, so
# apt resolves the whole dependency closure, libc included.
private_apt() {
  local dir=$1; shift
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$keyring" ] || die "$keyring is missing (apt-get install debian-archive-keyring)"
  mkdir -p "$dir/lists/partial" "$dir/debs/partial" "$dir/etc"
  : >"$dir/status"
  cat >"$dir/etc/sources.sources" <<SRC
Types: deb
URIs: $(debian_mirror)
Suites: $*
Components: main
Architectures: amd64
Signed-By: $keyring
SRC
  APT_OPTS=(
    -o "Dir::Etc::sourcelist=$dir/etc/sources.sources" -o Dir::Etc::sourceparts=/dev/null
    -o Dir::Etc::preferences=/dev/null -o Dir::Etc::preferencesparts=/dev/null
    -o "Dir::State::Lists=$dir/lists" -o "Dir::State::status=$dir/status"
    -o "Dir::Cache=$dir/cache" -o "Dir::Cache::archives=$dir/debs"
    -o APT::Architecture=amd64 -o APT::Architectures::=amd64
    -o Debug::NoLocking=1
  )
  mkdir -p "$dir/cache"
  # apt drops to the _apt user for downloads; it must be able to write the private dirs.
  if [ "$(id -u)" = 0 ]; then APT_OPTS+=(-o APT::Sandbox::User=root); fi
}

# apt_update: refresh the private lists (quietly; apt prints its progress on stderr).
apt_update() {
  apt-get "${APT_OPTS[@]}" -q update >&2 || die "apt-get update failed (private lists)"
}

# apt_offers PKG: what the private lists offer for PKG, one "VERSION SUITE" line per version.
apt_offers() {
  apt-cache "${APT_OPTS[@]}" madison "$1" 2>/dev/null |
    awk -F'|' '{gsub(/ /, "", $2); split($3, u, " "); sub(/\/.*/, "", u[2]); print $2, u[2]}'
}

# apt_offers_version PKG VERSION [SUITE]: whether the lists offer PKG at VERSION (in SUITE).
apt_offers_version() {
  apt_offers "$1" | awk -v v="$2" -v s="${3:-}" '$1 "" == v "" && (s == "" || $2 "" == s "") { f = 1 } END { exit !f }'
}

# apt_candidate PKG: the version apt would pick for PKG (nothing when it has none).
apt_candidate() {
  apt-cache "${APT_OPTS[@]}" policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# newest_version: the newest of the Debian versions on stdin, one a line (dpkg's ordering);
# nothing (and status 0) when there are none.
newest_version() {
  local v best=
  while read -r v; do
    [ -n "$v" ] || continue
    if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
  done
  if [ -n "$best" ]; then printf '%s\n' "$best"; fi
}

# warn_fallback WHAT PINNED CHOSEN VARIABLE: say that the mirror dropped a pinned version.
warn_fallback() {
  log "warning: $1 $2 (pinned in ci/versions) is not on the mirror any more; using $3 instead (update $4 in ci/versions)"
}

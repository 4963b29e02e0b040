#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules for envtest and caches them outside the work tree.
#
# No prebuilt envtest binaries can be downloaded on our machines, so both are compiled from the
# Go module proxy: a wrapper module requires k8s.io/kubernetes with every ./staging/src/k8s.io/X
# replace rewritten to the published k8s.io/X module, and a second module wraps etcdmain.Main.
# The binaries land in $FTPOP_CACHE/control-plane/k8s-<v>_etcd-<v>/ and are reused while present.
#
# Usage: hack/control-plane.sh        # builds if needed, prints the directory holding the binaries
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"       # k8s.io/kubernetes
STAGING_VERSION="v0${KUBE_VERSION#v1}"         # k8s.io/api & co. are published as v0.<minor>.<patch>
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"         # go.etcd.io/etcd/server/v3

CACHE_ROOT="${FTPOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftp-operator}"
OUT="$CACHE_ROOT/control-plane/k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

log() { echo "control-plane: $*" >&2; }

# with_heartbeat runs a long, silent command and prints the elapsed time every 30s meanwhile, so a
# newcomer's first `make test` visibly makes progress.
with_heartbeat() {
  local what="$1"; shift
  local started=$SECONDS
  ( while sleep 30; do log "still building $what ($((SECONDS - started))s)"; done ) &
  local ticker=$!
  local status=0
  "$@" || status=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  return "$status"
}

build_kube_apiserver() {
  local work="$CACHE_ROOT/control-plane/src/kube-apiserver-$KUBE_VERSION"
  mkdir -p "$work"
  log "building kube-apiserver $KUBE_VERSION from Go modules (first time ~5-10 min on 2 cores)..."
  local gomod
  gomod="$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$KUBE_VERSION go.mod"; exit 1; }
  {
    echo "module ftpop.local/kube-apiserver-build"
    echo
    grep -E '^go [0-9]' "$gomod"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    # Every staging module becomes the published module at the matching v0 version.
    grep -oE 'k8s\.io/[a-z0-9._-]+ => \./staging/src/k8s\.io/[a-z0-9._-]+' "$gomod" \
      | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$work/go.mod"
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" with_heartbeat kube-apiserver \
     go build -trimpath -ldflags=-s -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
  log "kube-apiserver built"
}

build_etcd() {
  local work="$CACHE_ROOT/control-plane/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  log "building etcd $ETCD_VERSION from Go modules (~2 min)..."
  cat > "$work/go.mod" <<MOD
module ftpop.local/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat > "$work/main.go" <<'MAIN'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
MAIN
  (cd "$work" && go mod tidy >/dev/null && with_heartbeat etcd go build -trimpath -ldflags=-s -o "$OUT/etcd.tmp" .)
  mv "$OUT/etcd.tmp" "$OUT/etcd"
  log "etcd built"
}

mkdir -p "$OUT"
start=$SECONDS
[ -x "$OUT/kube-apiserver" ] || build_kube_apiserver
[ -x "$OUT/etcd" ] || build_etcd
if (( SECONDS - start > 1 )); then log "done in $((SECONDS - start))s"; else log "reusing cached binaries in $OUT"; fi
echo "$OUT"

#!/usr/bin/env bash
# Builds the Kubernetes components and etcd from Go modules and caches them outside the work tree:
# kube-apiserver and etcd (envtest), kube-controller-manager and kube-scheduler (every test
# cluster), kubelet and kube-proxy (the real node, as root), and kubectl (the demo, the logs).
#
# No prebuilt binaries can be downloaded on our machines, so all are compiled from the Go module
# proxy: a wrapper module requires k8s.io/kubernetes with every ./staging/src/k8s.io/X replace
# rewritten to the published k8s.io/X module, and a second module wraps etcdmain.Main. The
# version ldflags are the ones Kubernetes' own release build stamps, so every component reports
# KUBE_VERSION (without them they say v0.0.0-master, and the kubelet's node shows that).
# The binaries land in $FTPOP_CACHE/control-plane/k8s-<v>_etcd-<v>/ and are reused while present.
#
# Usage: hack/control-plane.sh        # builds if needed, prints the directory holding the binaries
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"       # k8s.io/kubernetes
STAGING_VERSION="v0${KUBE_VERSION#v1}"         # k8s.io/api & co. are published as v0.<minor>.<patch>
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"         # go.etcd.io/etcd/server/v3

CACHE_ROOT="${FTPOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftp-operator}"
# The directory name carries a layout version: bump it when the set of binaries or their build
# flags change, so a cache from an older script is not mistaken for a complete one.
OUT="$CACHE_ROOT/control-plane/k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_v2"
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

# The Kubernetes commands built from the wrapper module, all in one `go build` so that the
# packages they share compile once.
KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

kube_ldflags() {
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

build_kube() {
  local work="$CACHE_ROOT/control-plane/src/kube-$KUBE_VERSION"
  mkdir -p "$work"
  log "building ${KUBE_COMPONENTS[*]} $KUBE_VERSION from Go modules (first time ~20-25 min on 2 cores)..."
  local gomod
  gomod="$(cd "$work" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@$KUBE_VERSION go.mod"; exit 1; }
  {
    echo "module ftpop.local/kube-build"
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
  local pkgs=() c
  for c in "${KUBE_COMPONENTS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  rm -rf "$OUT/kube.tmp" && mkdir -p "$OUT/kube.tmp"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS="$GOFLAGS -mod=mod" with_heartbeat "Kubernetes components" \
     go build -trimpath -ldflags="$(kube_ldflags)" -o "$OUT/kube.tmp/" "${pkgs[@]}")
  for c in "${KUBE_COMPONENTS[@]}"; do mv "$OUT/kube.tmp/$c" "$OUT/$c"; done
  rmdir "$OUT/kube.tmp"
  log "Kubernetes components built"
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
for c in "${KUBE_COMPONENTS[@]}"; do
  [ -x "$OUT/$c" ] || { build_kube; break; }
done
[ -x "$OUT/etcd" ] || build_etcd
if (( SECONDS - start > 1 )); then log "done in $((SECONDS - start))s"; else log "reusing cached binaries in $OUT"; fi
echo "$OUT"

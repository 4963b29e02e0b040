#!/usr/bin/env bash
# Builds the container runtime of the real node (test/realnode): containerd, its runc shim and
# ctr, and the node's NetworkPolicy enforcer, kube-router (only its network policy controller
# runs: iptables and ipsets), from the Go module proxy, and caches them outside the work tree
# keyed by version.
#
# No prebuilt binaries can be downloaded on our machines and Debian's containerd is 1.6, which the
# kubelet of v1.37 warns about (1.x loses support in 1.38), so the 2.x release is compiled. CGO
# is off (static binaries, no C toolchain needed) and btrfs is left out: its snapshotter needs cgo
# headers, and the node uses the overlayfs or native snapshotter. runc and the CNI plugins come
# from Debian packages (hack/install-test-deps.sh installs them as root).
#
# The binaries land in $FTPOP_CACHE/node-runtime/containerd-<v>/ and are reused while present
# (kube-router beside them, built on its own when only it is missing).
#
# Usage: hack/node-runtime.sh        # builds if needed, prints the directory holding the binaries
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
# The only version the module proxy serves here. Advisories are reported against it; the tests
# run it only inside the node's own namespaces, on documentation addresses.
KUBE_ROUTER_VERSION="${KUBE_ROUTER_VERSION:-v2.1.0}"

CACHE_ROOT="${FTPOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftp-operator}"
OUT="$CACHE_ROOT/node-runtime/containerd-${CONTAINERD_VERSION}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

BINARIES=(containerd containerd-shim-runc-v2 ctr)

log() { echo "node-runtime: $*" >&2; }

# with_heartbeat prints the elapsed time every 30s while a long, silent build runs.
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

complete() {
  local b
  for b in "${BINARIES[@]}"; do [ -x "$OUT/$b" ] || return 1; done
}

# Its version is stamped beside it: a new KUBE_ROUTER_VERSION builds again without touching
# containerd.
kube_router_current() { [ -x "$OUT/kube-router" ] && [ "$(cat "$OUT/kube-router.version" 2>/dev/null)" = "$KUBE_ROUTER_VERSION" ]; }

start=$SECONDS
if ! complete; then
  log "building containerd $CONTAINERD_VERSION (containerd, containerd-shim-runc-v2, ctr) from Go modules (~2 min on 2 cores)..."
  mkdir -p "$OUT"
  # go install writes into GOBIN; a temporary one keeps a half-finished build out of $OUT.
  tmp="$OUT/gobin.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  pkgs=()
  for b in "${BINARIES[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$b@$CONTAINERD_VERSION"); done
  GOBIN="$tmp" CGO_ENABLED=0 with_heartbeat containerd \
    go install -trimpath -tags no_btrfs -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" "${pkgs[@]}"
  for b in "${BINARIES[@]}"; do mv "$tmp/$b" "$OUT/$b"; done
  rmdir "$tmp"
  log "done in $((SECONDS - start))s"
else
  log "reusing cached binaries in $OUT"
fi
if ! kube_router_current; then
  log "building kube-router $KUBE_ROUTER_VERSION from Go modules (a few minutes on 2 cores)..."
  kstart=$SECONDS
  tmp="$OUT/gobin-kube-router.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  GOBIN="$tmp" CGO_ENABLED=0 with_heartbeat kube-router \
    go install -trimpath -ldflags "-s -w" "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION"
  mv "$tmp/kube-router" "$OUT/kube-router"
  echo "$KUBE_ROUTER_VERSION" > "$OUT/kube-router.version"
  rmdir "$tmp"
  log "kube-router done in $((SECONDS - kstart))s"
fi
echo "$OUT"

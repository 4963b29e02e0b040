#!/usr/bin/env bash
# Installs the system tools the tests use, only when missing, so it is cheap to run every time.
# Go tools (controller-gen, kustomize, helm, promtool, golangci-lint) and the source-built
# kube-apiserver/etcd are installed by the Makefile into the cache outside the work tree.
#
# As root it also installs what the real node of test/realnode needs besides the source-built
# binaries: runc, the CNI plugins (bridge, host-local, loopback, portmap), and iptables and ipset,
# which its NetworkPolicy enforcer (kube-router's controller) drives. A normal user cannot
# run that node at all, so their absence is not an error there.
set -euo pipefail

need=()
# ip and nft (NAT test) live in sbin, which is not on every user's PATH.
PATH="$PATH:/usr/sbin:/sbin"
for tool in make git curl python3 gcc ip nft lftp lua5.1; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if ! command -v go >/dev/null 2>&1; then
  echo "install-test-deps: Go is not on PATH; install Go 1.26 (see go.mod) first" >&2
  exit 1
fi
# The real node's OCI runtime and CNI plugins, by the path Debian installs them at.
node_pkgs=()
if [ "$(id -u)" -eq 0 ]; then
  command -v runc >/dev/null 2>&1 || node_pkgs+=(runc)
  [ -x /usr/lib/cni/bridge ] || node_pkgs+=(containernetworking-plugins)
  command -v iptables >/dev/null 2>&1 || node_pkgs+=(iptables)
  command -v ipset >/dev/null 2>&1 || node_pkgs+=(ipset)
fi
if [ "${#need[@]}" -eq 0 ] && [ "${#node_pkgs[@]}" -eq 0 ]; then
  echo "install-test-deps: all system tools present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${need[*]}; install them with your package manager (needs root)" >&2
  exit 1
fi
echo "install-test-deps: installing ${need[*]} ${node_pkgs[*]} from Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
pkgs=()
for tool in "${need[@]}"; do
  case "$tool" in
    gcc) pkgs+=(build-essential) ;;
    ip) pkgs+=(iproute2) ;;
    nft) pkgs+=(nftables) ;;
    *) pkgs+=("$tool") ;;
  esac
done
pkgs+=("${node_pkgs[@]}")
apt-get install -y -qq --no-install-recommends "${pkgs[@]}"

#!/usr/bin/env bash
# Installs the system tools the tests use, only when missing, so it is cheap to run every time.
# Go tools (controller-gen, kustomize) and the source-built kube-apiserver/etcd are installed by
# the Makefile into the cache outside the work tree.
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
if [ "${#need[@]}" -eq 0 ]; then
  echo "install-test-deps: all system tools present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${need[*]}; install them with your package manager (needs root)" >&2
  exit 1
fi
echo "install-test-deps: installing ${need[*]} from Debian packages"
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
apt-get install -y -qq --no-install-recommends "${pkgs[@]}"

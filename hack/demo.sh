#!/usr/bin/env bash
# The local demo: the FTP daemon standalone on 127.0.0.1:2121, serving ./demo-data.
# Log in as demo/demo (read-write) or guest/guest (read-only). Ctrl-C drains and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

root="${DEMO_ROOT:-$PWD/demo-data}"
mkdir -p "$root/demo" "$root/guest"
[ -f "$root/demo/welcome.txt" ] || echo "Hello from ftp-operator's ftpd. Upload something!" > "$root/demo/welcome.txt"
[ -f "$root/guest/readme.txt" ] || echo "guest is read-only: downloads work, uploads are refused." > "$root/guest/readme.txt"

cat <<MSG
ftp-operator demo: FTP on 127.0.0.1:2121, files in $root
  curl ftp://demo:demo@127.0.0.1:2121/                      # list
  curl ftp://demo:demo@127.0.0.1:2121/welcome.txt           # download
  curl -T README.md ftp://demo:demo@127.0.0.1:2121/         # upload
  curl ftp://guest:guest@127.0.0.1:2121/readme.txt          # read-only user
  curl http://127.0.0.1:8081/readyz                         # readiness
Press Ctrl-C to stop (in-flight transfers are drained first).
MSG

exec bin/ftp-operator ftpd \
  --listen 127.0.0.1:2121 \
  --root "$root" \
  --user demo:demo \
  --user guest:guest:ro \
  --passive-ports 30000-30009 \
  --public-host 127.0.0.1 \
  --health-addr 127.0.0.1:8081 \
  --log-format text

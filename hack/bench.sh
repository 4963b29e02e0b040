#!/usr/bin/env bash
# Benchmarks `ftp-operator ftpd` side by side with vsftpd and pure-ftpd (Debian packages):
# 1 GiB RETR and STOR with curl over 127.0.0.1, the file served from the page cache, in plain
# FTP and in FTPS (explicit: AUTH TLS, PROT P; curl --ssl-reqd) against the same instances.
#
#   sudo hack/bench.sh            # or: make bench
#
# Environment:
#   BENCH_RUNS=5        runs per server and operation (interleaved between servers)
#   BENCH_SIZE_MIB=1024 size of the test file
#   BENCH_PORT_BASE=2201  control ports BASE, BASE+1, ... (one per server); passive ranges
#                       40000-40009, 40010-40019, ... (ten ports per server)
#   BENCH_DIR=...       where the test file goes (default: a new temporary directory)
#   BENCH_CACHE=...     where pure-ftpd is unpacked (default ~/.cache/ftp-operator/bench)
#   BENCH_RAW=FILE      also write every sample to FILE, one per line:
#                       server op run data_seconds total_seconds server_cpu_seconds client_cpu_seconds
#                       (op: RETR, STOR, RETR-TLS, STOR-TLS)
#   BENCH_WARMUP=1      one unrecorded round first (0 to skip)
#   BENCH_TLS=1         also the FTPS table (0: plain FTP only); every server gets a self-signed
#                       certificate made here (openssl), curl runs with --ssl-reqd -k
#   BENCH_OPS="RETR STOR RETR-TLS STOR-TLS"  the operations measured (default: all of them)
#   BENCH_OURS_VARIANTS="buffered/buffered sendfile/buffered ..."  also benchmark more instances
#                       of ours, with these --download-copy/--upload-copy settings
#   BENCH_EXPERIMENTS="splice/sendfile buf4m/buf1m ..."  also benchmark hack/bench/ftpexp with
#                       these UPLOAD/DOWNLOAD copy strategies (see its doc comment)
#   BENCH_OURS_BIN=...  benchmark this ftp-operator binary instead of building bin/ftp-operator
#   SESSIONS (in BENCH_OPS, and in the default) runs the sessions-at-scale benchmark first:
#                       N concurrent sessions against each server, see hack/bench-sessions.sh
#                       for it and its BENCH_SESSIONS_* settings; BENCH_OPS=SESSIONS runs only
#                       that (make bench-sessions), without the 1 GiB file
#
# Needs root: vsftpd is installed with apt-get (pure-ftpd conflicts with it as a package, so it
# is fetched with `apt-get download` and unpacked with `dpkg -x` into the cache), and both
# servers chroot. Note: on a host booted with systemd, installing vsftpd may enable its system
# service on port 21 (`systemctl disable --now vsftpd` if you do not want it); this script never
# uses that service, it starts its own instances on loopback.
#
# For each run the script records curl's data-phase time (time_total - time_pretransfer: from
# RETR/STOR to the final reply; this leaves out connect, login and a ~200 ms stall curl 7.88
# sometimes adds before opening the data connection, which hits every server at random), curl's
# total time, and the server's CPU time (its cgroup's usage when cgroup v2 is available, which
# also counts vsftpd's and pure-ftpd's per-session processes; else /proc/PID/stat with reaped
# children), and curl's own CPU time (user + system). It prints, per server and operation, the
# median time, the throughput, the ratio to ours (their median / our median: above 1 means we
# are faster) and the median server and client CPU seconds per GiB.
set -euo pipefail

RUNS=${BENCH_RUNS:-5}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
PORT_BASE=${BENCH_PORT_BASE:-2201}
CACHE=${BENCH_CACHE:-${FTPOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftp-operator}/bench}
CURL_MAX_TIME=${BENCH_CURL_MAX_TIME:-120}
TLS=${BENCH_TLS:-1}

cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MIB must be a positive integer"
[[ $TLS =~ ^[01]$ ]] || die "BENCH_TLS must be 0 or 1"
[ "$(id -u)" -eq 0 ] || die "needs root (apt-get, and vsftpd/pure-ftpd chroot): run it with sudo"

# The operations: the 1 GiB transfers (OPS) and the sessions-at-scale benchmark (SESSIONS=1).
OPS=(RETR STOR)
[ "$TLS" = 0 ] || OPS+=(RETR-TLS STOR-TLS)
SESSIONS=1
if [ -n "${BENCH_OPS:-}" ]; then
  read -r -a ops <<<"$BENCH_OPS"
  OPS=()
  SESSIONS=0
  for op in "${ops[@]}"; do
    case $op in
    RETR | STOR) OPS+=("$op") ;;
    RETR-TLS | STOR-TLS) [ "$TLS" = 1 ] || die "$op needs BENCH_TLS=1"; OPS+=("$op") ;;
    SESSIONS) SESSIONS=1 ;;
    *) die "unknown operation $op in BENCH_OPS (RETR STOR RETR-TLS STOR-TLS SESSIONS)" ;;
    esac
  done
fi

# ---------------------------------------------------------------------------------------------
# Install (idempotent).
PURE_ROOT=$CACHE/pure-ftpd
PURE_FTPD=$PURE_ROOT/usr/sbin/pure-ftpd
PURE_PW=$PURE_ROOT/usr/bin/pure-pw
apt_updated=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v vsftpd >/dev/null 2>&1 || [ -x /usr/sbin/vsftpd ] || need+=(vsftpd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian packages"
  apt_install "${need[@]}"
fi
VSFTPD=$(command -v vsftpd || echo /usr/sbin/vsftpd)
id ftp >/dev/null 2>&1 || die "no 'ftp' user: vsftpd's package normally creates it (reinstall vsftpd)"
if [ ! -x "$PURE_FTPD" ] || [ ! -x "$PURE_PW" ]; then
  log "fetching pure-ftpd with apt-get download + dpkg -x into $PURE_ROOT"
  mkdir -p "$CACHE"
  dl=$(mktemp -d "$CACHE/dl.XXXXXX")
  if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
  # Sandbox user root: the _apt user cannot write into a directory under root's home.
  (cd "$dl" && apt-get -qq -o APT::Sandbox::User=root download pure-ftpd pure-ftpd-common >/dev/null)
  rm -rf "$PURE_ROOT.new"
  for deb in "$dl"/*.deb; do dpkg -x "$deb" "$PURE_ROOT.new"; done
  rm -rf "$dl" "$PURE_ROOT"
  mv "$PURE_ROOT.new" "$PURE_ROOT"
fi
if ldd "$PURE_FTPD" | grep -q 'not found'; then
  log "installing pure-ftpd's shared libraries"
  apt_install libsodium23 libcap2 libssl3 libpam0g libcrypt1
fi

if [ -n "${BENCH_OURS_BIN:-}" ]; then
  OURS_BIN=$(realpath "$BENCH_OURS_BIN")
  OURS_VERSION="$OURS_BIN"
else
  log "building bin/ftp-operator"
  go build -trimpath -o bin/ftp-operator ./cmd
  OURS_BIN=$PWD/bin/ftp-operator
  OURS_VERSION="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo '+changes')"
fi

# ---------------------------------------------------------------------------------------------
# Work area, servers, cleanup.
if [ -n "${BENCH_DIR:-}" ]; then
  mkdir -p "$BENCH_DIR"
  WORK=$(mktemp -d "$BENCH_DIR/ftpbench.XXXXXX")
else
  WORK=$(mktemp -d -t ftpbench.XXXXXX)
fi
chmod 755 "$WORK"
declare -A PID=()
# CPU accounting: each server runs in its own cgroup (v2) when one can be created, so that the
# CPU of every process it forks counts, even of session processes that outlive their parent
# and are reaped by init. Without cgroup v2 the figure comes from /proc/PID/stat of the server
# (its own time plus that of the children it reaped), which can miss such orphans.
CG_BASE=
cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ -n "$cg2" ] && mkdir "$cg2/ftpbench.$$" 2>/dev/null; then
  CG_BASE=$cg2/ftpbench.$$
fi
# More cgroups the script made (cgroup v1 caps of the sessions benchmark), removed on exit.
CG_EXTRA=()
cleanup() {
  local s cg i
  for s in "${!PID[@]}"; do
    kill "${PID[$s]}" 2>/dev/null || true
  done
  for s in "${!PID[@]}"; do
    wait "${PID[$s]}" 2>/dev/null || true
  done
  for cg in "${CG_EXTRA[@]}"; do
    [ -d "$cg" ] || continue
    xargs -r kill -9 <"$cg/cgroup.procs" 2>/dev/null || true
    for i in $(seq 50); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
  done
  if [ -n "$CG_BASE" ]; then
    for cg in "$CG_BASE"/*/; do
      [ -d "$cg" ] || continue
      # Session processes the server left behind.
      if [ -e "$cg/cgroup.kill" ]; then echo 1 >"$cg/cgroup.kill" 2>/dev/null || true; fi
      xargs -r kill -9 <"$cg/cgroup.procs" 2>/dev/null || true
      for i in $(seq 50); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
    done
    rmdir "$CG_BASE" 2>/dev/null || echo "bench: warning: could not remove cgroup $CG_BASE" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One shared directory: vsftpd's anonymous root, pure-ftpd's user home, and our user's home
# (ours serves ROOT/NAME). Uploads go to its subdirectory up/, writable by everyone: vsftpd
# writes as ftp (the anonymous user the vsftpd package creates; vsftpd refuses a writable
# anonymous root), pure-ftpd as nobody, ours as root.
USER_NAME=bench
USER_PASS=bench-pass
SRV=$WORK/srv
DATA=$SRV/$USER_NAME
mkdir -p "$DATA/up" "$WORK/empty"
chmod 755 "$SRV" "$DATA" "$WORK/empty"
chmod 777 "$DATA/up"
# pure-ftpd virtual user. pure-pw hashes with a deliberately slow argon2id (seconds of server CPU
# per login, which would pollute the CPU figures), so the hash is a SHA-512 crypt instead.
hash=$(openssl passwd -6 "$USER_PASS")
echo "$USER_NAME:$hash:65534:65534::$DATA/./::::::::::::" >"$WORK/pure.passwd"
chmod 600 "$WORK/pure.passwd"
PURE_PASSWDFILE=$WORK/pure.passwd PURE_DBFILE=$WORK/pure.pdb "$PURE_PW" mkdb "$WORK/pure.pdb" -f "$WORK/pure.passwd"

# start_server NAME COMMAND...: in its own cgroup when there is one, and in the cgroups listed
# in $SERVER_JOIN (directories, e.g. of cgroup v1 controllers); with $SERVER_NOFILE as its
# open-files limit (soft and hard) when that is set.
start_server() {
  local name=$1 cg=
  shift
  if [ -n "$CG_BASE" ]; then
    mkdir "$CG_BASE/$name"
    cg=$CG_BASE/$name
  fi
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  bash -c 'for d in $1 $2; do echo $$ >"$d/cgroup.procs" || exit 1; done && { [ -z "$3" ] || ulimit -n "$3"; } && shift 3 && exec "$@"' \
    bash "$cg" "${SERVER_JOIN:-}" "${SERVER_NOFILE:-}" "$@" >"$WORK/$name.out" 2>&1 &
  PID[$name]=$!
}

# The sessions-at-scale benchmark (before the 1 GiB transfers: it is the headline).
if [ "$SESSIONS" = 1 ]; then
  # shellcheck source=hack/bench-sessions.sh
  . hack/bench-sessions.sh
fi
[ ${#OPS[@]} -gt 0 ] || exit 0

SIZE=$((SIZE_MIB * 1024 * 1024))
log "creating a $SIZE_MIB MiB test file in $DATA"
head -c "$SIZE" /dev/urandom >"$DATA/file.bin"
chmod 644 "$DATA/file.bin"
cat "$DATA/file.bin" >/dev/null # into the page cache before timing

# FTPS: one self-signed certificate for every server (key and certificate also in one PEM file
# for pure-ftpd).
if [ "$TLS" = 1 ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
  cat "$WORK/tls.key" "$WORK/tls.crt" >"$WORK/tls.pem"
  chmod 600 "$WORK/tls.key" "$WORK/tls.pem"
fi

VS_PORT=$PORT_BASE
PURE_PORT=$((PORT_BASE + 1))
OURS_PORT=$((PORT_BASE + 2))

cat >"$WORK/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$VS_PORT
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$DATA
ftp_username=ftp
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_other_write_enable=YES
anon_umask=022
secure_chroot_dir=$WORK/empty
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40009
port_enable=NO
connect_from_port_20=NO
xferlog_enable=NO
syslog_enable=NO
vsftpd_log_file=$WORK/vsftpd.log
dirmessage_enable=NO
use_localtime=YES
EOF
# vsftpd's own default cipher list is DES-CBC3-SHA; HIGH lets it pick AES-GCM like the others
# (TLS 1.3 suites are not affected by it). Plain FTP stays allowed (force_*_ssl=NO), so the
# same instance serves both tables.
if [ "$TLS" = 1 ]; then
  cat >>"$WORK/vsftpd.conf" <<EOF
ssl_enable=YES
allow_anon_ssl=YES
force_anon_logins_ssl=NO
force_anon_data_ssl=NO
require_ssl_reuse=NO
ssl_ciphers=HIGH
rsa_cert_file=$WORK/tls.crt
rsa_private_key_file=$WORK/tls.key
EOF
fi

PURE_TLS=()
OURS_TLS=()
if [ "$TLS" = 1 ]; then
  PURE_TLS=(-Y 1 -2 "$WORK/tls.pem")
  OURS_TLS=(--tls-mode explicit --tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key")
fi
start_server vsftpd "$VSFTPD" "$WORK/vsftpd.conf"
start_server pure-ftpd "$PURE_FTPD" -S "127.0.0.1,$PURE_PORT" -p 40010:40019 \
  -l "puredb:$WORK/pure.pdb" -E -H -4 "${PURE_TLS[@]}"
start_server ours "$OURS_BIN" ftpd --listen "127.0.0.1:$OURS_PORT" --root "$SRV" \
  --user "$USER_NAME:$USER_PASS" --passive-ports 40020-40029 --log-level warn "${OURS_TLS[@]}"

declare -A CIPHER=()
declare -A URL=(
  [vsftpd]="ftp://127.0.0.1:$VS_PORT"
  [pure-ftpd]="ftp://$USER_NAME:$USER_PASS@127.0.0.1:$PURE_PORT"
  [ours]="ftp://$USER_NAME:$USER_PASS@127.0.0.1:$OURS_PORT"
)
SERVERS=(vsftpd pure-ftpd ours)
# More instances of ours with other copy paths (BENCH_OURS_VARIANTS="DOWNLOAD/UPLOAD ..."), on
# control ports BASE+20, ... and passive ranges from 40200.
v=0
for spec in ${BENCH_OURS_VARIANTS:-}; do
  down=${spec%%/*}
  up=auto
  [ "$spec" = "$down" ] || up=${spec#*/}
  name="ours-$down-$up"
  port=$((PORT_BASE + 20 + v))
  first=$((40200 + 10 * v))
  start_server "$name" "$OURS_BIN" ftpd --listen "127.0.0.1:$port" --root "$SRV" \
    --user "$USER_NAME:$USER_PASS" --passive-ports "$first-$((first + 9))" --log-level warn \
    --download-copy "$down" --upload-copy "$up" "${OURS_TLS[@]}"
  URL[$name]="ftp://$USER_NAME:$USER_PASS@127.0.0.1:$port"
  SERVERS+=("$name")
  v=$((v + 1))
done

# Optional experiments (BENCH_EXPERIMENTS="UPLOAD/DOWNLOAD ..."): hack/bench/ftpexp, a minimal
# ftpserverlib server whose copy strategy is chosen by flags, benchmarked like the others.
i=0
for spec in ${BENCH_EXPERIMENTS:-}; do
  up=${spec%%/*}
  down=sendfile
  [ "$spec" = "$up" ] || down=${spec#*/}
  name="x-$up-$down"
  port=$((PORT_BASE + 3 + i))
  first=$((40030 + 10 * i))
  if [ ! -x "$WORK/ftpexp" ]; then go build -o "$WORK/ftpexp" ./hack/bench/ftpexp; fi
  start_server "$name" "$WORK/ftpexp" --listen "127.0.0.1:$port" --root "$DATA" \
    --user "$USER_NAME:$USER_PASS" --passive-ports "$first-$((first + 9))" --upload "$up" --download "$down"
  URL[$name]="ftp://$USER_NAME:$USER_PASS@127.0.0.1:$port"
  SERVERS+=("$name")
  i=$((i + 1))
done
NS=${#SERVERS[@]}

for s in "${SERVERS[@]}"; do
  ok=0
  for _ in $(seq 50); do
    if ! kill -0 "${PID[$s]}" 2>/dev/null; then
      die "$s exited at start: $(cat "$WORK/$s.out")"
    fi
    if curl -sS --max-time 5 -o /dev/null "${URL[$s]}/" 2>/dev/null; then ok=1; break; fi
    sleep 0.1
  done
  [ $ok -eq 1 ] || die "$s does not answer on ${URL[$s]#*@}: $(cat "$WORK/$s.out")"
done
log "servers up: vsftpd $(dpkg-query -W -f '${Version}' vsftpd 2>/dev/null || echo '?') (pid ${PID[vsftpd]}), pure-ftpd $("$PURE_FTPD" --help 2>&1 | head -1 | awk '{print $2}') (pid ${PID[pure-ftpd]}), ours $OURS_VERSION (pid ${PID[ours]})"

# ---------------------------------------------------------------------------------------------
# Measurement.
TCK=$(getconf CLK_TCK)
# CPU seconds used so far by a server (name).
cpu_seconds() {
  if [ -n "$CG_BASE" ]; then
    awk '$1 == "usage_usec" { printf "%.6f\n", $2 / 1e6 }' "$CG_BASE/$1/cpu.stat"
  else
    # Field 2 (comm) may contain spaces, so fields are counted after the last ')': state is 1,
    # utime 12, stime 13, cutime 14, cstime 15.
    sed 's/.*) //' "/proc/${PID[$1]}/stat" | awk -v k="$TCK" '{ printf "%.6f\n", ($12 + $13 + $14 + $15) / k }'
  fi
}
# Waits until the server's session processes are gone (at most 5 s), so that their CPU counts.
wait_sessions() {
  local i n
  for i in $(seq 100); do
    if [ -n "$CG_BASE" ]; then
      n=$(wc -l <"$CG_BASE/$1/cgroup.procs")
      [ "$n" -gt 1 ] || return 0
    else
      pgrep -P "${PID[$1]}" >/dev/null || return 0
    fi
    sleep 0.05
  done
  log "warning: $1 still has session processes; its CPU figure may be low"
}

RAW=$WORK/raw.txt
: >"$RAW"
# One sample: "server op run transfer_s total_s cpu_s client_cpu_s". transfer_s is curl's
# time_total minus time_pretransfer, i.e. from the RETR/STOR command to the end (the data
# phase); total_s includes connecting and logging in (and the TLS handshake); client_cpu_s is
# curl's user + system time. op RETR-TLS and STOR-TLS: explicit FTPS (AUTH TLS, PROT P).
run_one() { # server op run
  local s=$1 op=$2 run=$3 before after out pre total bytes ccpu tls=()
  case $op in *-TLS) tls=(--ssl-reqd -k) ;; esac
  wait_sessions "$s"
  before=$(cpu_seconds "$s")
  local TIMEFORMAT='%3U %3S'
  if [ "${op%-TLS}" = RETR ]; then
    { time curl -sS --fail --max-time "$CURL_MAX_TIME" "${tls[@]}" -o /dev/null \
      -w '%{time_pretransfer} %{time_total} %{size_download}' "${URL[$s]}/file.bin" >"$WORK/curl.out" 2>"$WORK/curl.err"; } 2>"$WORK/curl.time" ||
      die "$s $op: curl failed: $(cat "$WORK/curl.err")"
  else
    { time curl -sS --fail --max-time "$CURL_MAX_TIME" "${tls[@]}" -T "$DATA/file.bin" \
      -w '%{time_pretransfer} %{time_total} %{size_upload}' "${URL[$s]}/up/$s.bin" >"$WORK/curl.out" 2>"$WORK/curl.err"; } 2>"$WORK/curl.time" ||
      die "$s $op: curl failed: $(cat "$WORK/curl.err")"
  fi
  wait_sessions "$s"
  after=$(cpu_seconds "$s")
  out=$(cat "$WORK/curl.out")
  ccpu=$(awk '{ printf "%.3f", $1 + $2 }' "$WORK/curl.time")
  read -r pre total bytes <<<"$out"
  [ "$bytes" = "$SIZE" ] || die "$s $op moved $bytes bytes, want $SIZE"
  if [ "${op%-TLS}" = STOR ]; then
    local got
    got=$(stat -c %s "$DATA/up/$s.bin" 2>/dev/null || echo missing)
    [ "$got" = "$SIZE" ] || die "$s STOR left a file of $got bytes, want $SIZE"
    rm -f "$DATA/up/$s.bin" # before writeback; keeps the disk out of the next runs
  fi
  awk -v s="$s" -v o="$op" -v r="$run" -v p="$pre" -v t="$total" -v a="$before" -v b="$after" -v c="$ccpu" \
    'BEGIN { printf "%s %s %s %.4f %.4f %.3f %.3f\n", s, o, r, t - p, t, b - a, c }' | tee -a "$RAW" |
    awk '{ printf "bench: run %s %-8s %-9s data %.3f s, total %.3f s, server CPU %.2f s, curl CPU %.2f s\n", $3, $2, $1, $4, $5, $6, $7 }' >&2
}

# serves SERVER OP: whether the server takes part in OP (hack/bench/ftpexp has no TLS).
serves() { [[ $2 != *-TLS || $1 != x-* ]]; }

# The TLS version and cipher each server negotiates with curl (on the control connection; the
# data connections use the same configuration).
if [ "$TLS" = 1 ]; then
  for s in "${SERVERS[@]}"; do
    serves "$s" RETR-TLS || continue
    cipher=$(curl -sS -v --ssl-reqd -k -o /dev/null "${URL[$s]}/" 2>&1 | sed -n 's/.*SSL connection using //p' | head -1)
    [ -n "$cipher" ] || die "$s: no TLS connection with curl --ssl-reqd"
    CIPHER[$s]=$cipher
  done
fi

# One unrecorded round first: the first transfer of a fresh process (page faults, pool and
# buffer allocation, TCP memory) is not what a long-running server does.
if [ "${BENCH_WARMUP:-1}" != 0 ]; then
  log "warm-up round (not recorded)"
  for op in "${OPS[@]}"; do
    for s in "${SERVERS[@]}"; do serves "$s" "$op" && run_one "$s" "$op" 0; done
  done
  : >"$RAW"
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "$RUNS runs of ${OPS[*]} of $SIZE_MIB MiB per server, interleaved; load average: $LOAD_START"
for run in $(seq "$RUNS"); do
  for op in "${OPS[@]}"; do
    # Rotate the order so that no server always goes first (or right after another's STOR).
    for i in $(seq 0 $((NS - 1))); do
      s=${SERVERS[$(((run + i) % NS))]}
      serves "$s" "$op" && run_one "$s" "$op" "$run"
    done
  done
done
[ -z "${BENCH_RAW:-}" ] || cp "$RAW" "$BENCH_RAW"

# ---------------------------------------------------------------------------------------------
# Report.
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.6f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
col() { awk -v s="$1" -v o="$2" -v c="$3" '$1==s && $2==o {print $c}' "$RAW"; }
echo
echo "ftpd benchmark: $SIZE_MIB MiB over 127.0.0.1 with curl $(curl --version | head -1 | awk '{print $2}'), $RUNS runs each (medians), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r); load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: BENCH_RUNS=$RUNS BENCH_SIZE_MIB=$SIZE_MIB BENCH_TLS=$TLS${BENCH_OPS:+ BENCH_OPS=\"$BENCH_OPS\"}${BENCH_OURS_VARIANTS:+ BENCH_OURS_VARIANTS=\"$BENCH_OURS_VARIANTS\"}${BENCH_EXPERIMENTS:+ BENCH_EXPERIMENTS=\"$BENCH_EXPERIMENTS\"} hack/bench.sh; ours: $OURS_VERSION"
table() { # title, then the ops
  local title=$1 op s med tot cpu ccpu best runs ours_med
  shift
  echo
  echo "$title"
  echo
  printf '| %-22s | %-8s | %7s | %6s | %13s | %16s | %16s | %6s | %7s | %s |\n' server op "data s" "MiB/s" "ratio to ours" "server CPU s/GiB" "client CPU s/GiB" "best s" "total s" "data s of each run"
  printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------------------ ---------- --------: -------: --------------: -----------------: -----------------: -------: --------: -----
  for op in "$@"; do
    ours_med=$(col ours "$op" 4 | median)
    for s in "${SERVERS[@]}"; do
      serves "$s" "$op" || continue
      med=$(col "$s" "$op" 4 | median)
      tot=$(col "$s" "$op" 5 | median)
      cpu=$(col "$s" "$op" 6 | median)
      ccpu=$(col "$s" "$op" 7 | median)
      best=$(col "$s" "$op" 4 | sort -g | head -1)
      runs=$(col "$s" "$op" 4 | awk '{printf "%s%.3f", (NR > 1 ? " " : ""), $1}')
      awk -v s="$s" -v o="$op" -v m="$med" -v om="$ours_med" -v c="$cpu" -v cc="$ccpu" -v b="$best" -v t="$tot" -v mib="$SIZE_MIB" -v runs="$runs" 'BEGIN {
        printf "| %-22s | %-8s | %7.3f | %6.0f | %13.2f | %16.2f | %16.2f | %6.3f | %7.3f | %s |\n", s, o, m, mib / m, (om > 0 ? m / om : 0), c * 1024 / mib, cc * 1024 / mib, b, t, runs }'
    done
  done
}
has_op() { [[ " ${OPS[*]} " == *" $1 "* ]]; }
plain=() tlsops=()
for op in RETR STOR; do has_op "$op" && plain+=("$op"); done
for op in RETR-TLS STOR-TLS; do has_op "$op" && tlsops+=("$op"); done
[ ${#plain[@]} -eq 0 ] || table "Plain FTP:" "${plain[@]}"
if [ ${#tlsops[@]} -gt 0 ]; then
  table "FTPS (explicit, PROT P; curl --ssl-reqd -k):" "${tlsops[@]}"
  echo
  for s in "${SERVERS[@]}"; do serves "$s" RETR-TLS && echo "TLS of $s: ${CIPHER[$s]}"; done
fi
echo
echo "data s: curl time_total - time_pretransfer (from RETR/STOR to the end), median; MiB/s from it."
echo "ratio: that server's median data time / ours (above 1: we are faster)."
if [ -n "$CG_BASE" ]; then
  echo "server CPU: CPU time of the server's cgroup (all its processes) per GiB, median."
else
  echo "server CPU: utime+stime of the server (with its reaped per-session processes) per GiB, median."
fi
echo "client CPU: curl's user+system time per GiB, median (over loopback the kernel's TCP work is"
echo "  shared between both sides, so the sum of the two is the cost of a transfer)."
echo "best s: the fastest run's data time (other load on the machine only ever adds time)."
echo "total s: curl time_total (connect, login, EPSV, transfer), median."

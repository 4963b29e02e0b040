#!/usr/bin/env bash
# Benchmarks `ftp-operator ftpd` side by side with vsftpd and pure-ftpd (Debian packages):
# 1 GiB RETR and STOR with curl over 127.0.0.1, the file served from the page cache.
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
#                       server op run data_seconds total_seconds server_cpu_seconds
#   BENCH_WARMUP=1      one unrecorded round first (0 to skip)
#   BENCH_EXPERIMENTS="splice/sendfile buf4m/buf1m ..."  also benchmark hack/bench/ftpexp with
#                       these UPLOAD/DOWNLOAD copy strategies (see its doc comment)
#   BENCH_OURS_BIN=...  benchmark this ftp-operator binary instead of building bin/ftp-operator
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
# children). It prints, per server and operation, the median time, the throughput, the ratio to
# ours (their median / our median: above 1 means we are faster) and the median server CPU
# seconds per GiB.
set -euo pipefail

RUNS=${BENCH_RUNS:-5}
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
PORT_BASE=${BENCH_PORT_BASE:-2201}
CACHE=${BENCH_CACHE:-${FTPOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftp-operator}/bench}
CURL_MAX_TIME=${BENCH_CURL_MAX_TIME:-120}

cd "$(dirname "$0")/.."
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MIB must be a positive integer"
[ "$(id -u)" -eq 0 ] || die "needs root (apt-get, and vsftpd/pure-ftpd chroot): run it with sudo"

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
cleanup() {
  local s cg i
  for s in "${!PID[@]}"; do
    kill "${PID[$s]}" 2>/dev/null || true
  done
  for s in "${!PID[@]}"; do
    wait "${PID[$s]}" 2>/dev/null || true
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
SIZE=$((SIZE_MIB * 1024 * 1024))
log "creating a $SIZE_MIB MiB test file in $DATA"
head -c "$SIZE" /dev/urandom >"$DATA/file.bin"
chmod 644 "$DATA/file.bin"
cat "$DATA/file.bin" >/dev/null # into the page cache before timing

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

# pure-ftpd virtual user. pure-pw hashes with a deliberately slow argon2id (seconds of server CPU
# per login, which would pollute the CPU figures), so the hash is a SHA-512 crypt instead.
hash=$(openssl passwd -6 "$USER_PASS")
echo "$USER_NAME:$hash:65534:65534::$DATA/./::::::::::::" >"$WORK/pure.passwd"
chmod 600 "$WORK/pure.passwd"
PURE_PASSWDFILE=$WORK/pure.passwd PURE_DBFILE=$WORK/pure.pdb "$PURE_PW" mkdb "$WORK/pure.pdb" -f "$WORK/pure.passwd"

start_server() { # name, then the command
  local name=$1
  shift
  if [ -n "$CG_BASE" ]; then
    mkdir "$CG_BASE/$name"
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
    bash -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' bash "$CG_BASE/$name" "$@" >"$WORK/$name.out" 2>&1 &
  else
    "$@" >"$WORK/$name.out" 2>&1 &
  fi
  PID[$name]=$!
}
start_server vsftpd "$VSFTPD" "$WORK/vsftpd.conf"
start_server pure-ftpd "$PURE_FTPD" -S "127.0.0.1,$PURE_PORT" -p 40010:40019 \
  -l "puredb:$WORK/pure.pdb" -E -H -4
start_server ours "$OURS_BIN" ftpd --listen "127.0.0.1:$OURS_PORT" --root "$SRV" \
  --user "$USER_NAME:$USER_PASS" --passive-ports 40020-40029 --log-level warn

declare -A URL=(
  [vsftpd]="ftp://127.0.0.1:$VS_PORT"
  [pure-ftpd]="ftp://$USER_NAME:$USER_PASS@127.0.0.1:$PURE_PORT"
  [ours]="ftp://$USER_NAME:$USER_PASS@127.0.0.1:$OURS_PORT"
)
SERVERS=(vsftpd pure-ftpd ours)

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
# One sample: "server op run transfer_s total_s cpu_s". transfer_s is curl's time_total minus
# time_pretransfer, i.e. from the RETR/STOR command to the end (the data phase); total_s
# includes connecting and logging in.
run_one() { # server op run
  local s=$1 op=$2 run=$3 before after out pre total bytes
  wait_sessions "$s"
  before=$(cpu_seconds "$s")
  if [ "$op" = RETR ]; then
    out=$(curl -sS --fail --max-time "$CURL_MAX_TIME" -o /dev/null \
      -w '%{time_pretransfer} %{time_total} %{size_download}' "${URL[$s]}/file.bin")
  else
    out=$(curl -sS --fail --max-time "$CURL_MAX_TIME" -T "$DATA/file.bin" \
      -w '%{time_pretransfer} %{time_total} %{size_upload}' "${URL[$s]}/up/$s.bin")
  fi
  wait_sessions "$s"
  after=$(cpu_seconds "$s")
  read -r pre total bytes <<<"$out"
  [ "$bytes" = "$SIZE" ] || die "$s $op moved $bytes bytes, want $SIZE"
  if [ "$op" = STOR ]; then
    local got
    got=$(stat -c %s "$DATA/up/$s.bin" 2>/dev/null || echo missing)
    [ "$got" = "$SIZE" ] || die "$s STOR left a file of $got bytes, want $SIZE"
    rm -f "$DATA/up/$s.bin" # before writeback; keeps the disk out of the next runs
  fi
  awk -v s="$s" -v o="$op" -v r="$run" -v p="$pre" -v t="$total" -v a="$before" -v b="$after" \
    'BEGIN { printf "%s %s %s %.4f %.4f %.3f\n", s, o, r, t - p, t, b - a }' | tee -a "$RAW" |
    awk '{ printf "bench: run %s %s %-9s data %.3f s, total %.3f s, server CPU %.2f s\n", $3, $2, $1, $4, $5, $6 }' >&2
}

# One unrecorded round first: the first transfer of a fresh process (page faults, pool and
# buffer allocation, TCP memory) is not what a long-running server does.
if [ "${BENCH_WARMUP:-1}" != 0 ]; then
  log "warm-up round (not recorded)"
  for op in RETR STOR; do
    for s in "${SERVERS[@]}"; do run_one "$s" "$op" 0; done
  done
  : >"$RAW"
fi
log "$RUNS runs of RETR and STOR of $SIZE_MIB MiB per server, interleaved; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq "$RUNS"); do
  for op in RETR STOR; do
    # Rotate the order so that no server always goes first (or right after another's STOR).
    for i in $(seq 0 $((NS - 1))); do
      run_one "${SERVERS[$(((run + i) % NS))]}" "$op" "$run"
    done
  done
done
[ -z "${BENCH_RAW:-}" ] || cp "$RAW" "$BENCH_RAW"

# ---------------------------------------------------------------------------------------------
# Report.
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.6f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
col() { awk -v s="$1" -v o="$2" -v c="$3" '$1==s && $2==o {print $c}' "$RAW"; }
echo
echo "ftpd benchmark: $SIZE_MIB MiB over 127.0.0.1 with curl $(curl --version | head -1 | awk '{print $2}'), $RUNS runs each (medians)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r); load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-18s | %-4s | %7s | %6s | %13s | %16s | %6s | %7s | %s |\n' server op "data s" "MiB/s" "ratio to ours" "server CPU s/GiB" "best s" "total s" "data s of each run"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------------- ------ --------: -------: --------------: -----------------: -------: --------: -----
for op in RETR STOR; do
  ours_med=$(col ours "$op" 4 | median)
  for s in "${SERVERS[@]}"; do
    med=$(col "$s" "$op" 4 | median)
    tot=$(col "$s" "$op" 5 | median)
    cpu=$(col "$s" "$op" 6 | median)
    best=$(col "$s" "$op" 4 | sort -g | head -1)
    runs=$(col "$s" "$op" 4 | awk '{printf "%s%.3f", (NR > 1 ? " " : ""), $1}')
    awk -v s="$s" -v o="$op" -v m="$med" -v om="$ours_med" -v c="$cpu" -v b="$best" -v t="$tot" -v mib="$SIZE_MIB" -v runs="$runs" 'BEGIN {
      printf "| %-18s | %-4s | %7.3f | %6.0f | %13.2f | %16.2f | %6.3f | %7.3f | %s |\n", s, o, m, mib / m, (om > 0 ? m / om : 0), c * 1024 / mib, b, t, runs }'
  done
done
echo
echo "data s: curl time_total - time_pretransfer (from RETR/STOR to the end), median; MiB/s from it."
echo "ratio: that server's median data time / ours (above 1: we are faster)."
if [ -n "$CG_BASE" ]; then
  echo "server CPU: CPU time of the server's cgroup (all its processes) per GiB, median."
else
  echo "server CPU: utime+stime of the server (with its reaped per-session processes) per GiB, median."
fi
echo "best s: the fastest run's data time (other load on the machine only ever adds time)."
echo "total s: curl time_total (connect, login, EPSV, transfer), median."

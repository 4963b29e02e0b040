# shellcheck shell=bash
# The sessions-at-scale benchmark, sourced by hack/bench.sh (which has installed vsftpd and
# pure-ftpd, built ours, made the work area, the users and start_server): for each N and each
# server, a fresh instance with a 10-port passive range, and hack/bench/sessions against it: N
# concurrent sessions, each from its own address of 127.1.0.0/16 (all of 127.0.0.0/8 is local on
# Linux: nothing is added to the machine), all logged in, then BENCH_SESSIONS_ROUNDS rounds in
# which every session does PASV (even sessions) or EPSV (odd ones) and a RETR of a small file at
# the same moment, content checked. Then a table per server and N, and the plot.
#
#   sudo make bench-sessions      # = sudo BENCH_OPS=SESSIONS hack/bench.sh
#
# Environment:
#   BENCH_SESSIONS_N="1000 10000"     the session counts
#   BENCH_SESSIONS_ROUNDS=3           rounds of PASV/EPSV + RETR per run
#   BENCH_SESSIONS_SIZE=4096          bytes of the file each transfer downloads
#   BENCH_SESSIONS_SERVERS="ours vsftpd pure-ftpd"
#   BENCH_SESSIONS_SRC=127.1.0.0/16   the clients' source addresses (session i: address i+1)
#   BENCH_SESSIONS_PORT_BASE=2231     control ports BASE, BASE+1, ... (one per run)
#   BENCH_SESSIONS_PASV_BASE=31000    passive ranges BASE-BASE+9, BASE+10-BASE+19, ... (one per
#                                     run), below net.ipv4.ip_local_port_range so that no port
#                                     the kernel picks for a socket (a client's, or ftpserverlib's
#                                     throwaway passive listener) ever takes one of them
#   BENCH_SESSIONS_MAX_CLIENTS=100000 every server's own session limits (total and per IP)
#   BENCH_SESSIONS_SERVER_NOFILE=     the servers' open-files limit (soft and hard; empty: the
#                                     limit this script runs with, as for everything else)
#   BENCH_SESSIONS_SERVER_MEM_MIB=8192  memory cap of each server's processes together, and
#   BENCH_SESSIONS_SERVER_PIDS=22000    their process (and thread) cap: vsftpd forks two
#                                     processes per session, which at N=10000 would otherwise
#                                     take a shared machine's memory and PIDs (kernel.pid_max is
#                                     often 32768). A cgroup (v2 when its controllers are enabled,
#                                     else v1) enforces them; the table shows its peak and any OOM
#                                     kills and refused forks. 0: no cap.
#   BENCH_SESSIONS_OURS_ENV="GOMEMLIMIT=200MiB"  environment of ours (e.g. the Go runtime's)
#   BENCH_SESSIONS_SVG=docs/img/sessions-at-scale.svg   where the plot goes (empty: none)
#   BENCH_SESSIONS_OUT=DIR            also keep every run's result (JSON) in DIR
#   BENCH_SESSIONS_CLIENT_FLAGS=...   more flags for the client (e.g. -round-timeout 30s)

S_NS=${BENCH_SESSIONS_N:-1000 10000}
S_ROUNDS=${BENCH_SESSIONS_ROUNDS:-3}
S_SIZE=${BENCH_SESSIONS_SIZE:-4096}
S_SERVERS=${BENCH_SESSIONS_SERVERS:-ours vsftpd pure-ftpd}
S_SRC=${BENCH_SESSIONS_SRC:-127.1.0.0/16}
S_PORT_BASE=${BENCH_SESSIONS_PORT_BASE:-2231}
S_PASV_BASE=${BENCH_SESSIONS_PASV_BASE:-31000}
S_MAX=${BENCH_SESSIONS_MAX_CLIENTS:-100000}
S_NOFILE=${BENCH_SESSIONS_SERVER_NOFILE:-}
S_MEM_MIB=${BENCH_SESSIONS_SERVER_MEM_MIB:-8192}
S_PIDS=${BENCH_SESSIONS_SERVER_PIDS:-22000}
S_SVG=${BENCH_SESSIONS_SVG-docs/img/sessions-at-scale.svg}
S_OUT=${BENCH_SESSIONS_OUT:-}
read -r -a S_OURS_ENV <<<"${BENCH_SESSIONS_OURS_ENV:-}"
read -r -a S_CLIENT_FLAGS <<<"${BENCH_SESSIONS_CLIENT_FLAGS:-}"

for v in $S_NS $S_ROUNDS $S_SIZE $S_PORT_BASE $S_PASV_BASE $S_MAX ${S_NOFILE:+$S_NOFILE}; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "BENCH_SESSIONS_*: $v is not a positive integer"
done
[[ $S_MEM_MIB =~ ^[0-9]+$ && $S_PIDS =~ ^[0-9]+$ ]] || die "BENCH_SESSIONS_SERVER_MEM_MIB and _PIDS must be numbers"
for s in $S_SERVERS; do
  case $s in ours | vsftpd | pure-ftpd) ;; *) die "BENCH_SESSIONS_SERVERS: unknown server $s" ;; esac
done

S_START=$(date +%s)
S_LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "sessions at scale: building the client (hack/bench/sessions)"
go build -trimpath -o "$WORK/sessions" ./hack/bench/sessions
S_RES=$WORK/sessions-results
mkdir -p "$S_RES"
head -c "$S_SIZE" /dev/urandom >"$DATA/small.bin"
chmod 644 "$DATA/small.bin"
S_SHA=$(sha256sum "$DATA/small.bin" | cut -d' ' -f1)
read -r EPH_LO EPH_HI </proc/sys/net/ipv4/ip_local_port_range

# The processes of a server: its PID and all their descendants (without cgroups).
tree_pids() {
  local p
  echo "$1"
  for p in $(pgrep -P "$1" || true); do tree_pids "$p"; done
}
# make_caps NAME: the cgroups that cap the server's memory and processes. With cgroup v2
# controllers, its own cgroup (start_server makes it; the caps are written after the start,
# before any session); else cgroup v1 directories it joins at start (SERVER_JOIN). Sets
# S_MEMCG and S_PIDSCG (empty when not capped) and SERVER_JOIN.
make_caps() {
  local name=$1 d
  S_MEMCG= S_PIDSCG= SERVER_JOIN=
  if [ -n "$CG_BASE" ] && grep -qw memory "$CG_BASE/cgroup.subtree_control" 2>/dev/null; then
    [ "$S_MEM_MIB" = 0 ] || S_MEMCG=$CG_BASE/$name
  elif [ "$S_MEM_MIB" != 0 ] && [ -d /sys/fs/cgroup/memory ] && d=/sys/fs/cgroup/memory/ftpbench.$$.$name && mkdir "$d" 2>/dev/null; then
    CG_EXTRA+=("$d")
    echo $((S_MEM_MIB * 1048576)) >"$d/memory.limit_in_bytes"
    S_MEMCG=$d SERVER_JOIN="$SERVER_JOIN $d"
  fi
  if [ -n "$CG_BASE" ] && grep -qw pids "$CG_BASE/cgroup.subtree_control" 2>/dev/null; then
    [ "$S_PIDS" = 0 ] || S_PIDSCG=$CG_BASE/$name
  elif [ "$S_PIDS" != 0 ] && [ -d /sys/fs/cgroup/pids ] && d=/sys/fs/cgroup/pids/ftpbench.$$.$name && mkdir "$d" 2>/dev/null; then
    CG_EXTRA+=("$d")
    echo "$S_PIDS" >"$d/pids.max"
    S_PIDSCG=$d SERVER_JOIN="$SERVER_JOIN $d"
  fi
  if { [ "$S_MEM_MIB" != 0 ] && [ -z "$S_MEMCG" ]; } || { [ "$S_PIDS" != 0 ] && [ -z "$S_PIDSCG" ]; }; then
    log "warning: no cgroup to cap $name's memory or processes; it runs uncapped"
  fi
}
# set_v2_caps NAME: the caps in the server's own cgroup v2, when that is where they live.
set_v2_caps() {
  local cg=$CG_BASE/$1
  [ "$S_MEMCG" != "$cg" ] || echo $((S_MEM_MIB * 1048576)) >"$cg/memory.max"
  [ "$S_PIDSCG" != "$cg" ] || echo "$S_PIDS" >"$cg/pids.max"
}

stop_server() { # name
  local name=$1 cg i pids
  if [ -z "$CG_BASE" ]; then
    pids=$(tree_pids "${PID[$name]}")
    # shellcheck disable=SC2086 # a list of PIDs
    kill -9 $pids 2>/dev/null || true
  fi
  kill "${PID[$name]}" 2>/dev/null || true
  wait "${PID[$name]}" 2>/dev/null || true
  if [ -n "$CG_BASE" ]; then
    cg=$CG_BASE/$name
    if [ -e "$cg/cgroup.kill" ]; then echo 1 >"$cg/cgroup.kill" 2>/dev/null || true; fi
    xargs -r kill -9 <"$cg/cgroup.procs" 2>/dev/null || true
    for i in $(seq 100); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
  fi
  for cg in $SERVER_JOIN; do
    xargs -r kill -9 <"$cg/cgroup.procs" 2>/dev/null || true
    for i in $(seq 100); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
  done
  unset "PID[$name]"
}

run=0
S_FILES=()
for n in $S_NS; do
  for s in $S_SERVERS; do
    port=$((S_PORT_BASE + run))
    first=$((S_PASV_BASE + 10 * run))
    last=$((first + 9))
    run=$((run + 1))
    if [ "$last" -ge "$EPH_LO" ] && [ "$first" -le "$EPH_HI" ]; then
      log "warning: passive range $first-$last overlaps ip_local_port_range $EPH_LO-$EPH_HI"
    fi
    name=sessions-$s-$n
    make_caps "$name"
    case $s in
    ours)
      user=$USER_NAME pass=$USER_PASS
      conf="${S_OURS_ENV[*]:+${S_OURS_ENV[*]} }ftp-operator ftpd --max-sessions $S_MAX --max-sessions-per-ip $S_MAX --passive-ports $first-$last (multiplexed by client address, the default with a range) --log-level warn"
      SERVER_NOFILE=$S_NOFILE start_server "$name" env "${S_OURS_ENV[@]}" "$OURS_BIN" ftpd --listen "127.0.0.1:$port" --root "$SRV" \
        --user "$USER_NAME:$USER_PASS" --passive-ports "$first-$last" --max-sessions "$S_MAX" \
        --max-sessions-per-ip "$S_MAX" --log-level warn
      ;;
    vsftpd)
      user=anonymous pass=bench
      conf="vsftpd.conf: max_clients=$S_MAX max_per_ip=$S_MAX pasv_min_port=$first pasv_max_port=$last, anonymous, no logging, default process model (one_process_model=NO); its listen backlog is fixed at 32"
      cat >"$WORK/$name.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$port
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=$DATA
ftp_username=ftp
local_enable=NO
write_enable=NO
secure_chroot_dir=$WORK/empty
pasv_enable=YES
pasv_min_port=$first
pasv_max_port=$last
port_enable=NO
connect_from_port_20=NO
xferlog_enable=NO
syslog_enable=NO
vsftpd_log_file=$WORK/$name.log
dirmessage_enable=NO
use_localtime=YES
max_clients=$S_MAX
max_per_ip=$S_MAX
EOF
      SERVER_NOFILE=$S_NOFILE start_server "$name" "$VSFTPD" "$WORK/$name.conf"
      ;;
    pure-ftpd)
      user=$USER_NAME pass=$USER_PASS
      # pure-ftpd lowers its client limit to half the passive range ("so we don't run out of
      # ports", src/ftpd.c) and listens with a backlog of 3 + limit / 8.
      cap=$(((last - first + 1) / 2))
      conf="pure-ftpd -c $S_MAX -C $S_MAX -p $first:$last -l puredb -E -H -4; it lowers -c to half the passive range, $cap, and listens with a backlog of 3 + $cap / 8 = $((3 + cap / 8))"
      SERVER_NOFILE=$S_NOFILE start_server "$name" "$PURE_FTPD" -S "127.0.0.1,$port" -p "$first:$last" \
        -l "puredb:$WORK/pure.pdb" -E -H -4 -c "$S_MAX" -C "$S_MAX"
      ;;
    esac
    set_v2_caps "$name"
    url="ftp://$user:$pass@127.0.0.1:$port/"
    ok=0
    for _ in $(seq 50); do
      kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited at start: $(cat "$WORK/$name.out")"
      if curl -sS --max-time 5 -o /dev/null "$url" 2>/dev/null; then ok=1; break; fi
      sleep 0.1
    done
    [ $ok -eq 1 ] || die "$name does not answer on 127.0.0.1:$port: $(cat "$WORK/$name.out")"
    cg=
    [ -z "$CG_BASE" ] || cg=$CG_BASE/$name
    log "sessions at scale: $s, N=$n, control port $port, passive $first-$last (pid ${PID[$name]})"
    "$WORK/sessions" run -server "$s" -config "$conf" -addr "127.0.0.1:$port" -user "$user" -pass "$pass" \
      -file small.bin -size "$S_SIZE" -sha256 "$S_SHA" -passive "$first-$last" -n "$n" -rounds "$S_ROUNDS" \
      -src "$S_SRC" ${cg:+-cgroup "$cg"} ${S_MEMCG:+-memcg "$S_MEMCG"} ${S_PIDSCG:+-pidscg "$S_PIDSCG"} \
      -pid "${PID[$name]}" -out "$S_RES/$s-$n.json" "${S_CLIENT_FLAGS[@]}" ||
      log "warning: the client reported an error for $s N=$n (its result says what)"
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      log "warning: $name died during the run: $(tail -5 "$WORK/$name.out")"
    fi
    [ -s "$WORK/$name.out" ] && log "$name said: $(tail -c 2000 "$WORK/$name.out")"
    stop_server "$name"
    [ -e "$S_RES/$s-$n.json" ] && S_FILES+=("$S_RES/$s-$n.json")
  done
done
SERVER_JOIN=
[ -z "$S_OUT" ] || { mkdir -p "$S_OUT" && cp "${S_FILES[@]}" "$S_OUT/"; }

S_WHEN=$(date -u '+%Y-%m-%d %H:%M UTC')
S_MACHINE="$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
echo
echo "ftpd sessions at scale: N = ${S_NS// /, } concurrent sessions per server, each from its own address of $S_SRC; 10-port passive range per server; $S_ROUNDS rounds of PASV/EPSV + RETR of $S_SIZE bytes, all sessions at once; $S_WHEN"
echo "machine: $S_MACHINE; load average at start: $S_LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "limits: this shell's open files $(ulimit -Sn)/$(ulimit -Hn) (soft/hard), servers' ${S_NOFILE:-the same}; each server capped at $S_MEM_MIB MiB and $S_PIDS processes (0: no cap); net.core.somaxconn $(cat /proc/sys/net/core/somaxconn), tcp_max_syn_backlog $(cat /proc/sys/net/ipv4/tcp_max_syn_backlog), ip_local_port_range $EPH_LO-$EPH_HI, tcp_max_tw_buckets $(cat /proc/sys/net/ipv4/tcp_max_tw_buckets), tcp_tw_reuse $(cat /proc/sys/net/ipv4/tcp_tw_reuse), kernel.pid_max $(cat /proc/sys/kernel/pid_max)"
echo "command: ${BENCH_OPS:+BENCH_OPS=\"$BENCH_OPS\" }BENCH_SESSIONS_N=\"$S_NS\" BENCH_SESSIONS_ROUNDS=$S_ROUNDS BENCH_SESSIONS_SIZE=$S_SIZE${S_NOFILE:+ BENCH_SESSIONS_SERVER_NOFILE=$S_NOFILE}${BENCH_SESSIONS_OURS_ENV:+ BENCH_SESSIONS_OURS_ENV=\"$BENCH_SESSIONS_OURS_ENV\"}${BENCH_SESSIONS_SERVERS:+ BENCH_SESSIONS_SERVERS=\"$S_SERVERS\"}${BENCH_SESSIONS_CLIENT_FLAGS:+ BENCH_SESSIONS_CLIENT_FLAGS=\"$BENCH_SESSIONS_CLIENT_FLAGS\"} hack/bench.sh; ours: $OURS_VERSION; took $(($(date +%s) - S_START)) s"
echo
svg=()
if [ -n "$S_SVG" ]; then
  mkdir -p "$(dirname "$S_SVG")"
  svg=(-svg "$S_SVG")
fi
"$WORK/sessions" report "${svg[@]}" -title "Sessions at scale: ours, vsftpd and pure-ftpd, 10-port passive range each" \
  -subtitle "N concurrent sessions, each from its own address of $S_SRC, all logged in; $S_ROUNDS rounds: all do PASV or EPSV + RETR of $S_SIZE bytes at once, content checked" \
  -subtitle "$S_WHEN; $S_MACHINE; load average at start $S_LOAD_START; ours $OURS_VERSION; ${BENCH_OPS:+BENCH_OPS=$BENCH_OPS }hack/bench.sh" "${S_FILES[@]}"
echo
echo "p50/p99/max: one transfer, from sending PASV/EPSV to reading the 226, over the transfers that succeeded."
echo "peak RSS: the sum of the RSS of all the server's processes (its cgroup, or its process tree), sampled"
echo "  every 200 ms from /proc/PID/statm; anon: without file-backed and shared pages (forked servers share"
echo "  their text, which the plain sum counts once per process). processes: at most at one sample."
echo "TIME_WAIT: sockets in TIME_WAIT whose local port is the server's control port or passive range (server"
echo "  side: the server closed first) or whose remote port is (client side), from /proc/net/tcp{,6}."
[ -z "$S_SVG" ] || echo "plot: $S_SVG"

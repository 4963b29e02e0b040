package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// portSet is the server's TCP ports: its control port and its passive range.
type portSet struct {
	control    uint16
	first, end uint16 // passive range, inclusive
}

func (p portSet) has(port uint16) bool {
	return port == p.control || (port >= p.first && port <= p.end)
}

// tcpStateTimeWait is TIME_WAIT in /proc/net/tcp's "st" column (include/net/tcp_states.h).
const tcpStateTimeWait = 0x06

// timeWaits counts the TIME_WAIT sockets of one /proc/net/tcp or /proc/net/tcp6 listing on the
// server's ports: server side, the socket's local port is one of them (the server closed
// first); client side, its remote port is (the client closed first). Both ends of a loopback
// connection are in the same listing. Sockets whose addresses ("local remote", as listed) are
// in exclude are not counted (those of before the run); those counted are added to collect
// when it is not nil.
func timeWaits(r io.Reader, ports portSet, exclude, collect map[string]bool) (server, client int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	header := true
	for sc.Scan() {
		if header { // "  sl  local_address rem_address   st ..."
			header = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return 0, 0, fmt.Errorf("bad state %q in %q", f[3], sc.Text())
		}
		if st != tcpStateTimeWait {
			continue
		}
		local, err1 := hexPort(f[1])
		remote, err2 := hexPort(f[2])
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("bad address in %q", sc.Text())
		}
		if !ports.has(local) && !ports.has(remote) {
			continue
		}
		key := f[1] + " " + f[2]
		if exclude[key] {
			continue
		}
		if collect != nil {
			collect[key] = true
		}
		if ports.has(local) {
			server++
		} else {
			client++
		}
	}
	return server, client, sc.Err()
}

// hexPort is the port of an address of /proc/net/tcp ("0100007F:0016": hex IP, hex port).
func hexPort(addr string) (uint16, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return 0, fmt.Errorf("no port in %q", addr)
	}
	p, err := strconv.ParseUint(addr[i+1:], 16, 16)
	return uint16(p), err
}

// countTimeWaits reads /proc/net/tcp and /proc/net/tcp6 of this network namespace (see
// timeWaits).
func countTimeWaits(ports portSet, exclude, collect map[string]bool) (server, client int, err error) {
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			if os.IsNotExist(err) { // no IPv6
				continue
			}
			return 0, 0, err
		}
		s, c, err := timeWaits(f, ports, exclude, collect)
		_ = f.Close()
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		server += s
		client += c
	}
	return server, client, nil
}

// allTimeWaits is the number of TIME_WAIT sockets in the namespace, on any port (against
// net.ipv4.tcp_max_tw_buckets).
func allTimeWaits() (int, error) {
	s, _, err := countTimeWaits(portSet{first: 1, end: math.MaxUint16}, nil, nil)
	return s, err
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of sorted samples: the smallest
// sample such that at least p% of the samples are at or below it. NaN without samples.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func sortedCopy(v []float64) []float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s
}

// memSample is the memory of the server's processes at one moment.
type memSample struct {
	procs int
	rss   int64 // sum of the processes' resident set sizes, bytes
	anon  int64 // sum of resident minus resident shared (file-backed and shmem) pages
	fds   int   // open file descriptors of the main process (-pid)
}

// statm parses /proc/PID/statm: "size resident shared text lib data dt" in pages.
func statm(b []byte, pageSize int64) (rss, anon int64, err error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("short statm %q", b)
	}
	res, err1 := strconv.ParseInt(f[1], 10, 64)
	shared, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad statm %q", b)
	}
	return res * pageSize, max(res-shared, 0) * pageSize, nil
}

// serverProcs lists the server's processes: those of its cgroup (cgroup.procs, which also
// holds session processes that outlived their parent), or else rootPID and its descendants.
func serverProcs(cgroup string, rootPID int) ([]int, error) {
	if cgroup != "" {
		b, err := os.ReadFile(filepath.Join(cgroup, "cgroup.procs"))
		if err != nil {
			return nil, err
		}
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return pids, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited
		}
		if ppid, ok := statPPID(b); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	pids := []int{rootPID}
	for i := 0; i < len(pids); i++ {
		pids = append(pids, children[pids[i]]...)
	}
	return pids, nil
}

// statPPID is the parent PID in /proc/PID/stat (field 4; the command, field 2, may hold spaces
// and parentheses, so fields are counted after the last ')').
func statPPID(b []byte) (int, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

func sampleMemory(cgroup string, rootPID int, pageSize int64) (memSample, error) {
	pids, err := serverProcs(cgroup, rootPID)
	if err != nil {
		return memSample{}, err
	}
	var m memSample
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
		if err != nil {
			continue // exited meanwhile
		}
		rss, anon, err := statm(b, pageSize)
		if err != nil {
			continue
		}
		m.procs++
		m.rss += rss
		m.anon += anon
	}
	if rootPID > 0 {
		if fds, err := os.ReadDir("/proc/" + strconv.Itoa(rootPID) + "/fd"); err == nil {
			m.fds = len(fds)
		}
	}
	return m, nil
}

// memSampler samples the server's memory every interval (stretched to twice the cost of
// one sample when reading thousands of processes takes long, so that sampling stays a small
// part of the machine's load), and when asked, and keeps the peaks.
type memSampler struct {
	cgroup   string
	rootPID  int
	pageSize int64

	mu          sync.Mutex
	peak        memSample // field-wise maxima
	samples     int
	maxInterval time.Duration
	lastErr     string
	stop, done  chan struct{}
}

func startMemSampler(cgroup string, rootPID int, interval time.Duration) *memSampler {
	s := &memSampler{cgroup: cgroup, rootPID: rootPID, pageSize: int64(os.Getpagesize()), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			cost := s.sample()
			wait := max(interval, 2*cost)
			s.mu.Lock()
			s.maxInterval = max(s.maxInterval, wait)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(wait):
			}
		}
	}()
	return s
}

// sample takes one sample now and returns what it cost.
func (s *memSampler) sample() time.Duration {
	t0 := time.Now()
	m, err := sampleMemory(s.cgroup, s.rootPID, s.pageSize)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err.Error()
	} else {
		s.samples++
		s.peak.rss = max(s.peak.rss, m.rss)
		s.peak.anon = max(s.peak.anon, m.anon)
		s.peak.procs = max(s.peak.procs, m.procs)
		s.peak.fds = max(s.peak.fds, m.fds)
	}
	return time.Since(t0)
}

func (s *memSampler) finish() (memSample, int, time.Duration, string) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.samples, s.maxInterval, s.lastErr
}

// openFilesLimit is the "Max open files" line of /proc/PID/limits ("soft/hard").
func openFilesLimit(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) >= 2 {
				return f[0] + "/" + f[1]
			}
		}
	}
	return "?"
}

// capFigures are what the cgroups capping the server (-memcg, -pidscg) recorded: limits
// (0: none), peaks, OOM kills and refused forks.
type capFigures struct {
	MemLimit    int64 `json:"memLimit,omitempty"`
	MemPeak     int64 `json:"memPeak,omitempty"`
	OOMKills    int64 `json:"oomKills,omitempty"`
	PidsLimit   int64 `json:"pidsLimit,omitempty"`
	PidsPeak    int64 `json:"pidsPeak,omitempty"`
	PidsRefused int64 `json:"pidsRefused,omitempty"`
}

// readCaps reads the memory cgroup memcg and the pids cgroup pidscg (either may be ""), in the
// v2 layout (memory.max, memory.peak, memory.events) or the v1 one (memory.limit_in_bytes,
// memory.max_usage_in_bytes, memory.oom_control); pids.max, pids.peak and pids.events are the
// same in both.
func readCaps(memcg, pidscg string) (capFigures, error) {
	var c capFigures
	var errs []error
	num := func(dir, file string) int64 {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			errs = append(errs, err)
			return 0
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", dir, file, err))
		}
		return n
	}
	keyed := func(dir, file, key string) int64 {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			errs = append(errs, err)
			return 0
		}
		n, ok := keyedValue(string(b), key)
		if !ok {
			errs = append(errs, fmt.Errorf("%s/%s: no %q", dir, file, key))
		}
		return n
	}
	if memcg != "" {
		if _, err := os.Stat(filepath.Join(memcg, "memory.max")); err == nil {
			c.MemLimit, c.MemPeak, c.OOMKills = num(memcg, "memory.max"), num(memcg, "memory.peak"), keyed(memcg, "memory.events", "oom_kill")
		} else {
			c.MemLimit, c.MemPeak, c.OOMKills = num(memcg, "memory.limit_in_bytes"), num(memcg, "memory.max_usage_in_bytes"), keyed(memcg, "memory.oom_control", "oom_kill")
			if c.MemLimit >= 1<<62 { // v1's "no limit"
				c.MemLimit = 0
			}
		}
	}
	if pidscg != "" {
		c.PidsLimit, c.PidsPeak, c.PidsRefused = num(pidscg, "pids.max"), num(pidscg, "pids.peak"), keyed(pidscg, "pids.events", "max")
	}
	return c, errors.Join(errs...)
}

// keyedValue finds "key value" in a flat-keyed cgroup file ("oom_kill 3\n...").
func keyedValue(text, key string) (int64, bool) {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == key {
			n, err := strconv.ParseInt(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// serverCPU is the CPU time the server has used so far, in seconds: its cgroup's usage_usec
// (all its processes, reaped or not), else utime + stime + cutime + cstime of its main process.
func serverCPU(cgroup string, pid int) float64 {
	if cgroup != "" {
		if b, err := os.ReadFile(filepath.Join(cgroup, "cpu.stat")); err == nil {
			if us, ok := keyedValue(string(b), "usage_usec"); ok {
				return float64(us) / 1e6
			}
		}
	}
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	return statCPU(b, clockTicks)
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// statCPU is utime + stime + cutime + cstime of /proc/PID/stat (fields 14-17; counted after
// the command's closing parenthesis, which may hold spaces), in seconds.
func statCPU(b []byte, ticks float64) float64 {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0
	}
	var sum float64
	for _, v := range f[11:15] {
		n, _ := strconv.ParseFloat(v, 64)
		sum += n
	}
	return sum / ticks
}

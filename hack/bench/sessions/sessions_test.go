package main

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestParsePASV(t *testing.T) {
	tests := []struct {
		text    string
		want    string
		wantErr bool
	}{
		{text: "Entering Passive Mode (127,0,0,1,121,24).", want: "127.0.0.1:31000"},
		{text: "Entering Passive Mode (127,0,0,1,121,33)", want: "127.0.0.1:31009"},
		{text: "Entering passive mode (10, 1, 2, 3, 4, 5)", want: "10.1.2.3:1029"},
		{text: "=127,0,0,1,156,64", want: "127.0.0.1:40000"},           // no parentheses (RFC 1123 allows it)
		{text: "Entering Passive Mode (127,0,0,1,0,0)", wantErr: true}, // port 0
		{text: "Entering Passive Mode (127,0,0,1,256,1)", wantErr: true},
		{text: "Entering Passive Mode (127,0,0,1,121)", wantErr: true},
		{text: "Entering Passive Mode (127,0,0,1,121,24,7)", wantErr: true},
		{text: "Entering Passive Mode", wantErr: true},
		{text: "Entering Passive Mode (a,b,c,d,e,f)", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := parsePASV(tt.text)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parsePASV = %v, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("parsePASV = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestParseEPSV(t *testing.T) {
	tests := []struct {
		text    string
		want    uint16
		wantErr bool
	}{
		{text: "Entering Extended Passive Mode (|||31000|)", want: 31000},
		{text: "Entering Extended Passive Mode (|||31009|).", want: 31009},
		{text: "EPSV ok (!!!6446!)", want: 6446}, // another delimiter (RFC 2428)
		{text: "Entering Extended Passive Mode (|||0|)", wantErr: true},
		{text: "Entering Extended Passive Mode (|||65536|)", wantErr: true},
		{text: "Entering Extended Passive Mode (|1|127.0.0.1|31000|)", wantErr: true}, // address fields must be empty
		{text: "Entering Extended Passive Mode (|||31000)", wantErr: true},
		{text: "Entering Extended Passive Mode", wantErr: true},
		{text: "Entering Extended Passive Mode (|||x|)", wantErr: true},
		{text: "Entering Extended Passive Mode ( 31000 )", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := parseEPSV(tt.text)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseEPSV = %d, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseEPSV = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantCode int
		wantText string
		wantErr  error
	}{
		{name: "one line", in: "220 ready\r\n", wantCode: 220, wantText: "ready"},
		{name: "multi-line", in: "230-Welcome\r\n230-more\r\n230 Logged in\r\n", wantCode: 230, wantText: "Logged in"},
		{name: "multi-line with other codes inside", in: "211-Features\r\n 200 not the end\r\n211 End\r\n", wantCode: 211, wantText: "End"},
		{name: "bare code", in: "200\r\n", wantCode: 200},
		{name: "not a reply", in: "hello\r\n", wantErr: errBadReply},
		{name: "code out of range", in: "999 what\r\n", wantErr: errBadReply},
		{name: "closed", in: "", wantErr: io.EOF},
		{name: "cut in a multi-line reply", in: "230-Welcome\r\n", wantErr: io.EOF},
		{name: "endless line", in: strings.Repeat("x", 2*maxLine), wantErr: errBadReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readReply(bufio.NewReaderSize(strings.NewReader(tt.in), 16))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("readReply = %+v, %v; want %v", r, err, tt.wantErr)
				}
				return
			}
			if err != nil || r.code != tt.wantCode || r.text != tt.wantText {
				t.Fatalf("readReply = %+v, %v; want %d %q", r, err, tt.wantCode, tt.wantText)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1) // 1..100
	}
	tests := []struct {
		name    string
		samples []float64
		p       float64
		want    float64
	}{
		{name: "p50 of 1..100", samples: hundred, p: 50, want: 50},
		{name: "p99 of 1..100", samples: hundred, p: 99, want: 99},
		{name: "p100 is the maximum", samples: hundred, p: 100, want: 100},
		{name: "p1", samples: hundred, p: 1, want: 1},
		{name: "p99 of 10 samples is the largest", samples: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, p: 99, want: 10},
		{name: "p50 of an even count is the lower middle", samples: []float64{1, 2, 3, 4}, p: 50, want: 2},
		{name: "one sample", samples: []float64{7}, p: 99, want: 7},
		{name: "unsorted input is sorted first", samples: []float64{5, 1, 4, 2, 3}, p: 50, want: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(sortedCopy(tt.samples), tt.p); got != tt.want {
				t.Fatalf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	if got := percentile(nil, 50); !math.IsNaN(got) {
		t.Fatalf("percentile of no samples = %v, want NaN", got)
	}
}

// A /proc/net/tcp sample: the server listens on 127.0.0.1:2211 (0x08A3) with passive range
// 31000-31009 (0x7918-0x7921); clients connect from 127.1.0.x.
const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:08A3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1000 1 0000000000000000 100 0 0 10 0
   1: 0100007F:7918 0100017F:9C40 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
   2: 0100007F:7921 0200017F:9C41 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
   3: 0100007F:08A3 0300017F:9C42 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
   4: 0400017F:9C43 0100007F:791A 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
   5: 0100007F:7922 0500017F:9C44 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
   6: 0100007F:7919 0600017F:9C45 01 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 20 4 30 10 -1
   7: 0100007F:0016 0700017F:9C46 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
`

func TestTimeWaits(t *testing.T) {
	ports := portSet{control: 2211, first: 31000, end: 31009}
	tests := []struct {
		name               string
		in                 string
		ports              portSet
		exclude            map[string]bool
		wantServer, wantCl int
		wantErr            bool
	}{
		// Lines 1-3: TIME_WAIT on the server's passive ports and control port (local side);
		// line 4: on the client's side (remote port 31002); line 5: port 31010, outside the
		// range; line 6: ESTABLISHED; line 7: another server's port.
		{name: "sample", in: procNetTCP, ports: ports, wantServer: 3, wantCl: 1},
		{name: "only the control port", in: procNetTCP, ports: portSet{control: 2211}, wantServer: 1},
		{name: "sockets of before the run left out", in: procNetTCP, ports: ports, wantServer: 2, wantCl: 0,
			exclude: map[string]bool{"0100007F:7918 0100017F:9C40": true, "0400017F:9C43 0100007F:791A": true}},
		{name: "header only", in: strings.SplitAfter(procNetTCP, "\n")[0], ports: ports},
		{name: "tcp6 addresses", in: "  sl  local_address                         remote_address                        st\n" +
			"   0: 00000000000000000000000001000000:7918 00000000000000000000000001000000:9C40 06 0:0 0:0 0 0 0 0 3\n", ports: ports, wantServer: 1},
		{name: "bad state", in: "header\n   0: 0100007F:7918 0100017F:9C40 ZZ 0\n", ports: ports, wantErr: true},
		{name: "bad port", in: "header\n   0: 0100007F:XYZ 0100017F:9C40 06 0\n", ports: ports, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c, err := timeWaits(strings.NewReader(tt.in), tt.ports, tt.exclude, nil)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("timeWaits = %d, %d; want an error", s, c)
				}
				return
			}
			if err != nil || s != tt.wantServer || c != tt.wantCl {
				t.Fatalf("timeWaits = %d, %d, %v; want %d, %d", s, c, err, tt.wantServer, tt.wantCl)
			}
		})
	}
}

// TestTimeWaitsOfThisHost checks the parser against the kernel's own listing: a loopback
// connection that the server side closes first leaves a TIME_WAIT on the server's port.
func TestTimeWaitsOfThisHost(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp (not Linux)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ports := portSet{control: port}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close() // the server closes first
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("client read: %v, want EOF", err)
	}
	_ = c.Close()
	seen := map[string]bool{}
	server, client, err := countTimeWaits(ports, nil, seen)
	if err != nil || server != 1 || client != 0 || len(seen) != 1 {
		t.Fatalf("countTimeWaits = %d, %d, %v (%d collected); want 1 on the server side", server, client, err, len(seen))
	}
	if server, client, err := countTimeWaits(ports, seen, nil); err != nil || server+client != 0 {
		t.Fatalf("countTimeWaits without the one seen = %d, %d, %v; want none", server, client, err)
	}
}

func TestReason(t *testing.T) {
	opErr := func(e error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{Port: 31000}, Err: &os.SyscallError{Syscall: "connect", Err: e}}
	}
	tests := []struct {
		err  error
		want string
	}{
		{err: opErr(syscall.ECONNREFUSED), want: "connection refused"},
		{err: opErr(syscall.ECONNRESET), want: "connection reset"},
		{err: opErr(syscall.EADDRNOTAVAIL), want: "address not available (client)"},
		{err: opErr(syscall.EMFILE), want: "too many open files (client)"},
		{err: fmt.Errorf("read: %w", os.ErrDeadlineExceeded), want: "timeout"},
		{err: io.EOF, want: "closed by the server"},
		{err: fmt.Errorf("%w: %q", errBadReply, "x"), want: "malformed reply"},
		{err: opErr(syscall.EHOSTUNREACH), want: "connect: no route to host"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := reason(tt.err); got != tt.want {
				t.Fatalf("reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestSourceAddr(t *testing.T) {
	p := netip.MustParsePrefix("127.1.0.0/16")
	tests := []struct {
		i       int
		want    string
		wantErr bool
	}{
		{i: 0, want: "127.1.0.1"},
		{i: 254, want: "127.1.0.255"},
		{i: 9999, want: "127.1.39.16"},
		{i: 65533, want: "127.1.255.254"},
		{i: 65534, wantErr: true}, // 127.1.255.255 would be the last; keep it free
	}
	for _, tt := range tests {
		got, err := sourceAddr(p, tt.i)
		if tt.wantErr != (err != nil) || (!tt.wantErr && got.String() != tt.want) {
			t.Errorf("sourceAddr(%d) = %v, %v; want %s (error %v)", tt.i, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestStatm(t *testing.T) {
	rss, anon, err := statm([]byte("12345 300 100 50 0 200 0\n"), 4096)
	if err != nil || rss != 300*4096 || anon != 200*4096 {
		t.Fatalf("statm = %d, %d, %v", rss, anon, err)
	}
	if _, _, err := statm([]byte("1 2"), 4096); err == nil {
		t.Fatal("short statm: no error")
	}
	const stat = "42 (a) b) c) S 17 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 1 0 100 1000 10\n"
	if ppid, ok := statPPID([]byte(stat)); !ok || ppid != 17 {
		t.Fatalf("statPPID = %d, %v; want 17", ppid, ok)
	}
	// utime 250 + stime 50 + cutime 30 + cstime 20 ticks.
	if got := statCPU([]byte(stat), 100); got != 3.5 {
		t.Fatalf("statCPU = %v, want 3.5", got)
	}
}

// TestPlotIsWellFormed renders a plot and parses it as XML (an SVG with a stray '<' or '&' in
// a server name or reason would not display at all).
func TestPlotIsWellFormed(t *testing.T) {
	results := []*result{
		{Server: "ours", N: 1000, Transfers: 3000, OK: 3000, P99ms: 40, PeakRSS: 50 << 20},
		{Server: "vs<ftpd>&", N: 1000, Transfers: 3000, OK: 90, P99ms: 20000, PeakRSS: 1400 << 20},
		{Server: "pure-ftpd", N: 10000, Transfers: 30000, OK: 0, P99ms: -1, PeakRSS: 0},
	}
	svg := plot(results, "Sessions & scale", []string{"2026-12-01 <machine>"}, 250, 200)
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := d.Token(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("plot is not well-formed XML: %v", err)
		}
	}
	for _, want := range []string{"N = 1,000", "N = 10,000", ">250 ms<", ">200 MiB<", "n/a", ">2.9k<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
}

func TestBadCode(t *testing.T) {
	tests := []struct {
		cmd  string
		r    reply
		want failure
	}{
		{cmd: "PASV", r: reply{code: 200, text: "what"}, want: "PASV 200"},
		{cmd: "PASV", r: reply{code: 500, text: "OOPS: vsf_sysutil_bind"}, want: "PASV 500 OOPS: vsf_sysutil_bind"},
		{cmd: "greeting", r: reply{code: 421, text: "Too many connections (server limit 100000), try again later."}, want: "greeting 421 Too many connections (server limit N), try again later."},
		{cmd: "EPSV", r: reply{code: 425, text: "listen tcp 127.0.0.1:31005: bind: address already in use"}, want: "EPSV 425 listen tcp ADDR: bind: address already in use"},
		{cmd: "RETR", r: reply{code: 550, text: strings.Repeat("x", 100)}, want: failure("RETR 550 " + strings.Repeat("x", maxReasonText) + "...")},
	}
	for _, tt := range tests {
		if got := badCode(tt.cmd, tt.r); got != tt.want {
			t.Errorf("badCode(%s, %+v) = %q, want %q", tt.cmd, tt.r, got, tt.want)
		}
	}
}

func TestCompact(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1.0k", 2913: "2.9k", 9949: "9.9k", 9950: "10k", 30000: "30k", 29499: "29k"} {
		if got := compact(n); got != want {
			t.Errorf("compact(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestKeyedValue(t *testing.T) {
	const oomControl = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
	tests := []struct {
		text, key string
		want      int64
		ok        bool
	}{
		{text: oomControl, key: "oom_kill", want: 3, ok: true},
		{text: oomControl, key: "under_oom", want: 0, ok: true},
		{text: "max 12\n", key: "max", want: 12, ok: true},
		{text: oomControl, key: "oom", ok: false},
		{text: "oom_kill x\n", key: "oom_kill", ok: false},
	}
	for _, tt := range tests {
		got, ok := keyedValue(tt.text, tt.key)
		if got != tt.want || ok != tt.ok {
			t.Errorf("keyedValue(%q, %q) = %d, %v; want %d, %v", tt.text, tt.key, got, ok, tt.want, tt.ok)
		}
	}
}

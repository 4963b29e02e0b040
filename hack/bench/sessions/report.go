package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// reportMain prints the table of the results (markdown) and writes the plot.
func reportMain(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	svgFile := fs.String("svg", "", "write the plot (SVG) here")
	title := fs.String("title", "Sessions at scale", "the plot's title")
	var subtitles lines
	fs.Var(&subtitles, "subtitle", "a line under the plot's title (repeatable: date, machine, ...)")
	goalP99 := fs.Float64("goal-p99-ms", 250, "the goal line for ours' p99 (ms)")
	goalRSS := fs.Float64("goal-rss-mib", 200, "the goal line for ours' peak RSS (MiB)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var results []*result
	for _, name := range fs.Args() {
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results = append(results, &r)
	}
	if len(results) == 0 {
		return fmt.Errorf("no results")
	}
	writeTable(os.Stdout, results)
	if *svgFile != "" {
		svg := plot(results, *title, subtitles, *goalP99, *goalRSS)
		if err := os.WriteFile(*svgFile, []byte(svg), 0o644); err != nil {
			return err
		}
	}
	return nil
}

type lines []string

func (l *lines) String() string     { return strings.Join(*l, "; ") }
func (l *lines) Set(v string) error { *l = append(*l, v); return nil }

// serverOrder is the servers in the order they first appear; nOrder the sizes, ascending.
func serverOrder(results []*result) (servers []string, ns []int) {
	seenS, seenN := map[string]bool{}, map[int]bool{}
	for _, r := range results {
		if !seenS[r.Server] {
			seenS[r.Server] = true
			servers = append(servers, r.Server)
		}
		if !seenN[r.N] {
			seenN[r.N] = true
			ns = append(ns, r.N)
		}
	}
	sort.Ints(ns)
	return servers, ns
}

func find(results []*result, server string, n int) *result {
	for _, r := range results {
		if r.Server == server && r.N == n {
			return r
		}
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(v float64) string {
	if v < 0 || math.IsNaN(v) {
		return "-"
	}
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// reasons lists failure counts, most frequent first: "PASV 425: 2000, data connect: timeout: 7".
func reasons(c counts) string {
	if len(c) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if c[keys[i]] != c[keys[j]] {
			return c[keys[i]] > c[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, c[k])
	}
	return strings.Join(parts, ", ")
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, " / ")
}

func failed(r *result) int { return r.Transfers - r.OK }

func floats(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(s, " / ")
}

func writeTable(w io.Writer, results []*result) {
	servers, ns := serverOrder(results)
	fmt.Fprintln(w, "| server | N | logged in | transfers ok | failed | p50 ms | p99 ms | max ms | round s | CPU ms per transfer: server / client | peak RSS MiB (anon) | cgroup peak MiB | processes | TIME_WAIT server side after each round | TIME_WAIT at the end: server / client side |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|")
	for _, n := range ns {
		for _, s := range servers {
			r := find(results, s, n)
			if r == nil {
				continue
			}
			cgPeak := "-"
			if r.Caps.MemPeak > 0 {
				cgPeak = fmt.Sprintf("%.1f", mib(r.Caps.MemPeak))
			}
			perT := 1000 / float64(max(r.Transfers, 1))
			fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %s | %s | %s | %s | %.2f / %.2f | %.1f (%.1f) | %s | %d | %s | %d / %d |\n",
				r.Server, r.N, r.LoggedIn, r.OK, failed(r), ms(r.P50ms), ms(r.P99ms), ms(r.Maxms), floats(r.RoundSeconds),
				r.ServerCPU*perT, r.ClientCPU*perT,
				mib(r.PeakRSS), mib(r.PeakAnon), cgPeak, r.PeakProcs, ints(r.TimeWaitServer), r.TimeWaitServerEnd, r.TimeWaitClientEnd)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Failures, by reason (login failures count once in \"logged in\"; a session that lost its")
	fmt.Fprintln(w, "connection logs in again before the next round, and if it cannot, that round's transfer")
	fmt.Fprintln(w, "fails as \"no session: ...\"):")
	fmt.Fprintln(w)
	for _, n := range ns {
		for _, s := range servers {
			r := find(results, s, n)
			if r == nil {
				continue
			}
			line := fmt.Sprintf("- %s, N=%d: login: %s; transfers: %s", r.Server, r.N, reasons(r.LoginFailures), reasons(r.Failures))
			if r.Relogins > 0 {
				line += fmt.Sprintf("; %d re-logins", r.Relogins)
			}
			if r.PeakFDs > 0 {
				line += fmt.Sprintf("; main process: at most %d open files seen (limit %s)", r.PeakFDs, r.ServerNofile)
			}
			if r.Caps.OOMKills > 0 {
				line += fmt.Sprintf("; %d processes killed at the memory cap (OOM)", r.Caps.OOMKills)
			}
			if r.Caps.PidsRefused > 0 {
				line += fmt.Sprintf("; %d forks refused at the process cap", r.Caps.PidsRefused)
			}
			if len(r.QuitFailures) > 0 {
				line += "; QUIT: " + reasons(r.QuitFailures)
			}
			if r.Aborted != "" {
				line += "; ABORTED: " + r.Aborted
			}
			fmt.Fprintln(w, line)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Configuration and limits in effect:")
	fmt.Fprintln(w)
	for _, s := range servers {
		for _, n := range ns {
			if r := find(results, s, n); r != nil {
				caps := ""
				if r.Caps.MemLimit > 0 {
					caps += fmt.Sprintf("; memory capped at %.0f MiB", mib(r.Caps.MemLimit))
				}
				if r.Caps.PidsLimit > 0 {
					caps += fmt.Sprintf("; processes capped at %d", r.Caps.PidsLimit)
				}
				fmt.Fprintf(w, "- %s: %s; server open-files limit (soft/hard) %s%s\n", r.Server, r.Config, r.ServerNofile, caps)
				break
			}
		}
	}
	for _, n := range ns {
		for _, s := range servers {
			if r := find(results, s, n); r != nil {
				fmt.Fprintf(w, "- client, N=%d: %d worker process(es), open files %s each; sources %s; %s; %d rounds of RETR of %d bytes; memory sampled every %.1f s at most\n",
					r.N, r.Workers, r.ClientNofile, r.Src, r.Mode, r.Rounds, r.FileSize, r.MemInterval)
				break
			}
		}
	}
}

// Plot geometry.
const (
	plotW     = 1060
	plotH     = 494
	panelTop  = 132
	panelH    = 240
	panelW    = 290
	panelGap  = 62
	panelLeft = 62
	barW      = 22
	barGap    = 5
)

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"}

const failColor = "#d62728"

type svgBuf struct{ strings.Builder }

func (b *svgBuf) f(format string, a ...any) { fmt.Fprintf(&b.Builder, format, a...) }

func esc(s string) string { return html.EscapeString(s) }

// plot draws three panels, each with one group of bars per N and one bar per server: the
// transfers that succeeded and failed (share of those attempted), the p99 of one transfer and
// the peak RSS (both on log scales), with the goals of ours as dashed lines.
func plot(results []*result, title string, subtitles []string, goalP99, goalRSS float64) string {
	servers, ns := serverOrder(results)
	var b svgBuf
	b.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	b.f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	b.f(`<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", panelLeft-40, esc(title))
	for i, line := range subtitles[:min(len(subtitles), 2)] {
		b.f(`<text x="%d" y="%d" fill="#444">%s</text>`+"\n", panelLeft-40, 42+16*i, esc(line))
	}
	// Legend.
	x := panelLeft - 40
	for i, s := range servers {
		b.f(`<rect x="%d" y="68" width="12" height="12" fill="%s"/><text x="%d" y="78">%s</text>`+"\n", x, palette[i%len(palette)], x+16, esc(s))
		x += 24 + 8*len(s)
	}
	b.f(`<rect x="%d" y="68" width="12" height="12" fill="%s"/><text x="%d" y="78">failed transfers</text>`+"\n", x, failColor, x+16)

	groupW := len(servers)*(barW+barGap) + 24
	type panel struct {
		title  [2]string
		log    bool
		lo, hi float64
		unit   string
		value  func(*result) (float64, bool)
		goal   float64
		label  func(*result) string
	}
	p99Hi := 1000.0
	rssHi := 100.0
	for _, r := range results {
		p99Hi = math.Max(p99Hi, r.P99ms)
		rssHi = math.Max(rssHi, mib(r.PeakRSS))
	}
	panels := []panel{
		{
			title: [2]string{"Transfers: ok (server's colour) and failed (red)", "% of N sessions x rounds; failed ones over the bars"}, lo: 0, hi: 100, unit: "% of the transfers",
			value: func(r *result) (float64, bool) { return 100 * float64(r.OK) / float64(max(r.Transfers, 1)), true },
			label: func(r *result) string { return compact(failed(r)) },
		},
		{
			title: [2]string{"p99 of one transfer (PASV/EPSV sent to 226 read)", "ms, log scale; over the bars: p99, n = transfers ok"}, log: true, lo: 1, hi: math.Pow(10, math.Ceil(math.Log10(p99Hi))), unit: "ms",
			value: func(r *result) (float64, bool) { return r.P99ms, r.P99ms > 0 },
			goal:  goalP99,
			label: func(r *result) string { return ms(r.P99ms) },
		},
		{
			title: [2]string{"Peak RSS of the server (all its processes)", "MiB, log scale; over the bars: MiB"}, log: true, lo: 1, hi: math.Pow(10, math.Ceil(math.Log10(rssHi))), unit: "MiB",
			value: func(r *result) (float64, bool) { return mib(r.PeakRSS), r.PeakRSS > 0 },
			goal:  goalRSS,
			label: func(r *result) string { return fmt.Sprintf("%.0f", mib(r.PeakRSS)) },
		},
	}
	for pi, p := range panels {
		left := panelLeft + pi*(panelW+panelGap)
		bottom := panelTop + panelH
		y := func(v float64) float64 {
			if p.log {
				v = math.Max(v, p.lo)
				return float64(bottom) - float64(panelH)*(math.Log10(v)-math.Log10(p.lo))/(math.Log10(p.hi)-math.Log10(p.lo))
			}
			return float64(bottom) - float64(panelH)*(v-p.lo)/(p.hi-p.lo)
		}
		b.f(`<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", left-30, panelTop-34, esc(p.title[0]))
		b.f(`<text x="%d" y="%d" fill="#444" font-size="11">%s</text>`+"\n", left-30, panelTop-20, esc(p.title[1]))
		// Axis and grid.
		var ticks []float64
		if p.log {
			for v := p.lo; v <= p.hi*1.001; v *= 10 {
				ticks = append(ticks, v)
			}
		} else {
			for v := p.lo; v <= p.hi; v += 25 {
				ticks = append(ticks, v)
			}
		}
		for _, t := range ticks {
			b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(t), left+panelW, y(t))
			b.f(`<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", left-4, y(t)+4, tick(t))
		}
		b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, panelTop, left, bottom)
		b.f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, bottom, left+panelW, bottom)
		b.f(`<text transform="translate(%d,%d) rotate(-90)" text-anchor="middle" fill="#444">%s</text>`+"\n", left-44, panelTop+panelH/2, p.unit)
		if p.goal > 0 {
			b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-dasharray="5,4"/>`+"\n", left, y(p.goal), left+panelW, y(p.goal), palette[0])
			b.f(`<text x="%d" y="%.1f" text-anchor="end" fill="%s" font-size="11">goal of ours:</text>`+"\n", left+panelW-2, y(p.goal)-17, palette[0])
			b.f(`<text x="%d" y="%.1f" text-anchor="end" fill="%s" font-size="11">%s %s</text>`+"\n", left+panelW-2, y(p.goal)-4, palette[0], tick(p.goal), p.unit)
		}
		for gi, n := range ns {
			gx := left + 14 + gi*groupW
			b.f(`<text x="%d" y="%d" text-anchor="middle" font-weight="bold">N = %s</text>`+"\n", gx+groupW/2-12, bottom+62, thousands(n))
			for si, s := range servers {
				bx := gx + si*(barW+barGap)
				r := find(results, s, n)
				if r == nil {
					continue
				}
				color := palette[si%len(palette)]
				b.f(`<text transform="translate(%d,%d) rotate(-40)" text-anchor="end" font-size="10" fill="#444">%s</text>`+"\n", bx+barW/2+4, bottom+12, esc(s))
				v, ok := p.value(r)
				if !ok {
					b.f(`<text x="%d" y="%d" text-anchor="middle" font-size="10">n/a</text>`+"\n", bx+barW/2, bottom-4)
					continue
				}
				top := y(v)
				b.f(`<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s N=%d: %s</title></rect>`+"\n", bx, top, barW, float64(bottom)-top, color, esc(s), n, esc(p.label(r)))
				if pi == 2 && r.Caps.MemPeak > 0 {
					// The cgroup's own peak: pages shared between forked processes count once.
					ty := y(mib(r.Caps.MemPeak))
					b.f(`<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black" stroke-width="3"><title>%s N=%d: cgroup memory peak %.0f MiB</title></line>`+"\n", bx-3, ty, bx+barW+3, ty, esc(s), n, mib(r.Caps.MemPeak))
				}
				if pi == 0 && failed(r) > 0 {
					b.f(`<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"/>`+"\n", bx, y(100), barW, top-y(100), failColor)
				}
				labelY := top - 3
				if pi == 0 {
					labelY = y(100) - 3 // over the red part
				}
				if pi == 1 {
					// A p99 is only as good as the number of transfers behind it.
					b.f(`<text x="%d" y="%.1f" text-anchor="middle" font-size="9" fill="#444">n=%s</text>`+"\n", bx+barW/2, labelY, compact(r.OK))
					labelY -= 11
				}
				b.f(`<text x="%d" y="%.1f" text-anchor="middle" font-size="10">%s</text>`+"\n", bx+barW/2, labelY, esc(p.label(r)))
			}
		}
	}
	b.f(`<text x="%d" y="%d" fill="#444" font-size="11">Dashed: the goals for ours (issue 13). n/a: no transfer succeeded. RSS: summed over the server's processes (vsftpd and pure-ftpd fork per session);</text>`+"\n", panelLeft-40, plotH-26)
	b.f(`<text x="%d" y="%d" fill="#444" font-size="11">black tick: the peak of the server's memory cgroup, which counts pages shared between processes once (and no file-backed pages loaded before).</text>`+"\n", panelLeft-40, plotH-12)
	b.f("</svg>\n")
	return b.String()
}

// compact writes a count in at most four characters: 950, 2.2k, 30k.
func compact(n int) string {
	switch {
	case n < 1000:
		return strconv.Itoa(n)
	case n < 9950:
		return strconv.FormatFloat(float64(n)/1000, 'f', 1, 64) + "k"
	default:
		return strconv.Itoa((n+500)/1000) + "k"
	}
}

func tick(v float64) string {
	if v >= 1000 {
		return thousands(int(v))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// thousands writes n with a comma every three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// reply is one FTP reply: its code and the text of its last line.
type reply struct {
	code int
	text string
}

// errBadReply is a line that is not an FTP reply ("ddd text" or "ddd-text").
var errBadReply = errors.New("malformed reply")

// readReply reads one reply, multi-line ones ("ddd-" ... "ddd ") included.
func readReply(r *bufio.Reader) (reply, error) {
	first, err := readLine(r)
	if err != nil {
		return reply{}, err
	}
	code, sep, err := replyCode(first)
	if err != nil {
		return reply{}, err
	}
	last := first
	for sep == '-' {
		if last, err = readLine(r); err != nil {
			return reply{}, err
		}
		if c, s, err := replyCode(last); err == nil && c == code && s == ' ' {
			break
		}
	}
	return reply{code: code, text: strings.TrimSpace(last[3:])}, nil
}

// maxLine bounds one reply line: a server that sends an endless line fails the session instead
// of growing the client's memory.
const maxLine = 4096

func readLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) && b.Len() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		b.Write(chunk)
		if b.Len() > maxLine {
			return "", fmt.Errorf("%w: line longer than %d bytes", errBadReply, maxLine)
		}
		if !isPrefix {
			return b.String(), nil
		}
	}
}

func replyCode(line string) (code int, sep byte, err error) {
	if len(line) < 4 || (line[3] != ' ' && line[3] != '-') {
		if len(line) == 3 {
			line += " "
		} else {
			return 0, 0, fmt.Errorf("%w: %q", errBadReply, line)
		}
	}
	code, err = strconv.Atoi(line[:3])
	if err != nil || code < 100 || code > 599 {
		return 0, 0, fmt.Errorf("%w: %q", errBadReply, line)
	}
	return code, line[3], nil
}

// parsePASV returns the address of a 227 reply's text, "Entering Passive Mode
// (h1,h2,h3,h4,p1,p2)" (RFC 959; the parentheses are optional in practice, as is text after
// them).
func parsePASV(text string) (netip.AddrPort, error) {
	start := strings.IndexAny(text, "0123456789")
	if open := strings.IndexByte(text, '('); open >= 0 {
		start = open + 1
	}
	if start < 0 {
		return netip.AddrPort{}, fmt.Errorf("PASV reply without an address: %q", text)
	}
	end := start
	for end < len(text) && (text[end] == ',' || (text[end] >= '0' && text[end] <= '9') || text[end] == ' ') {
		end++
	}
	parts := strings.Split(text[start:end], ",")
	if len(parts) != 6 {
		return netip.AddrPort{}, fmt.Errorf("PASV reply without six numbers: %q", text)
	}
	var b [6]byte
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 || n > 255 {
			return netip.AddrPort{}, fmt.Errorf("PASV reply with a bad number %q: %q", p, text)
		}
		b[i] = byte(n)
	}
	port := uint16(b[4])<<8 | uint16(b[5])
	if port == 0 {
		return netip.AddrPort{}, fmt.Errorf("PASV reply with port 0: %q", text)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port), nil
}

// parseEPSV returns the port of a 229 reply's text, "Entering Extended Passive Mode
// (|||port|)" (RFC 2428: the delimiter is the character after '(', any of 33-126).
func parseEPSV(text string) (uint16, error) {
	open := strings.IndexByte(text, '(')
	if open < 0 || open+1 >= len(text) {
		return 0, fmt.Errorf("EPSV reply without (|||port|): %q", text)
	}
	d := text[open+1]
	if d < 33 || d > 126 {
		return 0, fmt.Errorf("EPSV reply with a bad delimiter: %q", text)
	}
	rest := text[open+1:]
	closing := strings.IndexByte(rest, ')')
	if closing < 0 {
		return 0, fmt.Errorf("EPSV reply without ')': %q", text)
	}
	fields := strings.Split(rest[:closing], string(d))
	// "|||6446|" splits into "", "", "", "6446", "".
	if len(fields) != 5 || fields[1] != "" || fields[2] != "" || fields[4] != "" {
		return 0, fmt.Errorf("EPSV reply not of the form (|||port|): %q", text)
	}
	p, err := strconv.Atoi(fields[3])
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("EPSV reply with a bad port: %q", text)
	}
	return uint16(p), nil
}

// reason names why one step failed, for the failure counts: "timeout", "connection refused",
// ..., without addresses or ports, so that equal causes count together.
func reason(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.ETIMEDOUT):
		return "TCP timed out"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "address not available (client)"
	case errors.Is(err, syscall.EADDRINUSE):
		return "address in use (client)"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files (client)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by the server"
	case errors.Is(err, errBadReply):
		return "malformed reply"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

package ftpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// hostnameLookupTimeout bounds one DNS lookup made while answering PASV.
const hostnameLookupTimeout = 3 * time.Second

// lookupFunc resolves a hostname to addresses (net.DefaultResolver.LookupNetIP in production).
type lookupFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

// passiveAddr chooses the address written in a 227 PASV reply for one client. It is immutable
// apart from its hostname caches; a reload builds a new one.
type passiveAddr struct {
	overrides []passiveRule
	static    string     // Config.PublicHost
	hostname  *hostCache // Config.PassiveAddress.Hostname
}

type passiveRule struct {
	prefixes []netip.Prefix
	static   string // an IPv4 address, or
	host     *hostCache
}

func newPassiveAddr(cfg *Config, lookup lookupFunc) *passiveAddr {
	ttl := cfg.PassiveAddress.HostnameTTL
	if ttl == 0 {
		ttl = time.Minute
	}
	p := &passiveAddr{static: cfg.PublicHost}
	if h := cfg.PassiveAddress.Hostname; h != "" {
		p.hostname = &hostCache{name: h, ttl: ttl, lookup: lookup}
	}
	for _, o := range cfg.PassiveAddress.Overrides {
		r := passiveRule{prefixes: o.Prefixes}
		if ip, err := netip.ParseAddr(o.Address); err == nil {
			r.static = ip.String()
		} else {
			r.host = &hostCache{name: o.Address, ttl: ttl, lookup: lookup}
		}
		p.overrides = append(p.overrides, r)
	}
	return p
}

// forClient returns the IPv4 address to advertise to a client connected from client to local.
// Order: the first override whose prefixes contain the client; the static address; the
// hostname; the control connection's local address. PASV can only carry IPv4, so an IPv6 local
// address is an error (such clients use EPSV, which carries no address).
func (p *passiveAddr) forClient(ctx context.Context, client netip.Addr, local net.Addr) (string, error) {
	client = client.Unmap()
	for _, r := range p.overrides {
		for _, prefix := range r.prefixes {
			if prefix.Contains(client) {
				if r.host != nil {
					return r.host.get(ctx)
				}
				return r.static, nil
			}
		}
	}
	if p.static != "" {
		return p.static, nil
	}
	if p.hostname != nil {
		return p.hostname.get(ctx)
	}
	addr, ok := local.(*net.TCPAddr)
	if !ok {
		return "", fmt.Errorf("unexpected local address %v", local)
	}
	ip4 := addr.IP.To4()
	if ip4 == nil {
		return "", fmt.Errorf("control connection is IPv6 (%v): PASV needs IPv4, use EPSV", addr.IP)
	}
	return ip4.String(), nil
}

// hostCache resolves a hostname to one IPv4 address and keeps it for ttl. When a refresh fails
// the previous address is kept (a DNS hiccup should not break PASV); with no previous address
// the lookup error is returned, which fails that PASV rather than advertise a wrong address.
type hostCache struct {
	name   string
	ttl    time.Duration
	lookup lookupFunc

	mu      sync.Mutex
	addr    string
	expires time.Time
}

func (h *hostCache) get(ctx context.Context) (string, error) {
	h.mu.Lock()
	addr, fresh := h.addr, time.Now().Before(h.expires)
	h.mu.Unlock()
	if fresh {
		return addr, nil
	}
	ctx, cancel := context.WithTimeout(ctx, hostnameLookupTimeout)
	defer cancel()
	ips, err := h.lookup(ctx, "ip4", h.name)
	if err == nil && len(ips) == 0 {
		err = errors.New("no IPv4 address")
	}
	if err != nil {
		if addr != "" {
			return addr, nil
		}
		return "", fmt.Errorf("resolve passive hostname %s: %w", h.name, err)
	}
	addr = ips[0].Unmap().String()
	h.mu.Lock()
	h.addr, h.expires = addr, time.Now().Add(h.ttl)
	h.mu.Unlock()
	return addr, nil
}

// publicIP is ftpserverlib's PublicIPResolver: the current passive-address policy applied to
// this client.
func (s *Server) publicIP(cc ftpserver.ClientContext) (string, error) {
	client, err := addrIP(cc.RemoteAddr())
	if err != nil {
		return "", err
	}
	return s.dyn.Load().passive.forClient(s.ctx, client, cc.LocalAddr())
}

// addrIP extracts the IP of a TCP address.
func addrIP(a net.Addr) (netip.Addr, error) {
	if tcp, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(tcp.IP); ok {
			return ip.Unmap(), nil
		}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %v: %w", a, err)
	}
	return ap.Addr().Unmap(), nil
}

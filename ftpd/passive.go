package ftpd

import (
	"fmt"
	"net"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// passivePorts converts the configured range into ftpserverlib's port getter (nil: any port).
// Exposed and listened ports are the same in standalone mode; the config file will add an offset
// mapping (ftpserverlib's PortMappingRange) for Services that translate ports.
func passivePorts(r PortRange) ftpserver.PasvPortGetter {
	if r.IsZero() {
		return nil
	}
	return ftpserver.PortRange{Start: r.Start, End: r.End}
}

// publicIP chooses the address written in a 227 PASV reply for one client: the configured public
// host, else the local address of the client's control connection (the address the client
// reached us on). PASV can only carry IPv4; IPv6 clients use EPSV, which carries no address.
func (s *Server) publicIP(cc ftpserver.ClientContext) (string, error) {
	if s.cfg.PublicHost != "" {
		return s.cfg.PublicHost, nil
	}
	addr, ok := cc.LocalAddr().(*net.TCPAddr)
	if !ok {
		return "", fmt.Errorf("unexpected local address %v", cc.LocalAddr())
	}
	ip4 := addr.IP.To4()
	if ip4 == nil {
		return "", fmt.Errorf("control connection is IPv6 (%v): PASV needs IPv4, use EPSV", addr.IP)
	}
	return ip4.String(), nil
}

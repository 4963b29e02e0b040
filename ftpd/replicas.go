package ftpd

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Several daemons can serve one FTP address: each replica owns a slice of the passive range and
// answers PASV/EPSV only with its own ports, and every replica listens on the whole range, so
// that a data connection the load balancer brings to the wrong replica is relayed to the owner
// (relay.go; the design is docs/design/multi-replica.md).

// MinRelayKeyBytes is the shortest relay key accepted: an HMAC-SHA256 key below the hash's size
// weakens it.
const MinRelayKeyBytes = 32

// Replicas shares the passive range between the replicas of one server.
type Replicas struct {
	// Self is this daemon's name among Peers.
	Self string
	// PortsPerReplica is the size of each slice: Peers[i] owns the listened ports
	// PassivePorts.Start + i*PortsPerReplica up to the next slice.
	PortsPerReplica int
	// Peers are the replicas in slice order, this daemon included.
	Peers []Peer
	// RelayListen is the address (host:port) of this daemon's relay endpoint, where peers bring
	// the data connections of its sessions. Read at start.
	RelayListen string
	// Key signs the relay headers (at least MinRelayKeyBytes); every replica holds the same.
	Key []byte
}

// Peer is one replica as the others reach it.
type Peer struct {
	Name string
	// RelayAddress is where the peer's relay endpoint is reached (host:port), e.g. a Service
	// in front of that one pod.
	RelayAddress string
}

// replicaSet is a validated Replicas with this daemon's index resolved.
type replicaSet struct {
	Replicas
	self  int
	first int // PassivePorts.Start: slices count from there
}

func (c *Config) validateReplicas() error {
	r := c.Replicas
	if r == nil {
		return nil
	}
	if c.PassivePorts.IsZero() {
		return errors.New("replicas need a passive port range to share")
	}
	if len(r.Peers) == 0 {
		return errors.New("replicas: no peers listed")
	}
	if r.PortsPerReplica < 1 {
		return fmt.Errorf("replicas: portsPerReplica %d must be at least 1", r.PortsPerReplica)
	}
	if need := r.PortsPerReplica * len(r.Peers); need > c.PassivePorts.Count() {
		return fmt.Errorf("replicas: %d peers of %d ports need %d passive ports, the range %v has %d",
			len(r.Peers), r.PortsPerReplica, need, c.PassivePorts, c.PassivePorts.Count())
	}
	if len(r.Key) < MinRelayKeyBytes {
		return fmt.Errorf("replicas: the relay key has %d bytes, want at least %d", len(r.Key), MinRelayKeyBytes)
	}
	if _, _, err := net.SplitHostPort(r.RelayListen); err != nil {
		return fmt.Errorf("replicas: invalid relay listen address %q: %w", r.RelayListen, err)
	}
	if _, err := newReplicaSet(r, c.PassivePorts); err != nil {
		return err
	}
	return nil
}

// newReplicaSet checks the peers and finds this daemon among them.
func newReplicaSet(r *Replicas, listened PortRange) (*replicaSet, error) {
	rs := &replicaSet{Replicas: *r, self: -1, first: listened.Start}
	seen := map[string]bool{}
	for i, p := range r.Peers {
		if p.Name == "" || seen[p.Name] {
			return nil, fmt.Errorf("replicas: peer %d has an empty or repeated name %q", i, p.Name)
		}
		seen[p.Name] = true
		if p.Name == r.Self {
			rs.self = i
			continue // this daemon does not dial itself
		}
		if _, _, err := net.SplitHostPort(p.RelayAddress); err != nil {
			return nil, fmt.Errorf("replicas: peer %q: invalid relay address %q: %w", p.Name, p.RelayAddress, err)
		}
	}
	if rs.self < 0 {
		names := make([]string, len(r.Peers))
		for i, p := range r.Peers {
			names[i] = p.Name
		}
		return nil, fmt.Errorf("replicas: this daemon (%q) is not among the peers %s", r.Self, strings.Join(names, ", "))
	}
	return rs, nil
}

// slice is the listened ports replica i owns.
func (rs *replicaSet) slice(i int) PortRange {
	start := rs.first + i*rs.PortsPerReplica
	return PortRange{Start: start, End: start + rs.PortsPerReplica - 1}
}

// own is this daemon's slice.
func (rs *replicaSet) own() PortRange { return rs.slice(rs.self) }

// owner is the index of the replica that owns listened port p, or -1 for a port of the range
// that no replica owns (the range can be larger than the slices).
func (rs *replicaSet) owner(p int) int {
	i := (p - rs.first) / rs.PortsPerReplica
	if p < rs.first || i >= len(rs.Peers) {
		return -1
	}
	return i
}

// owns reports whether this daemon owns listened port p.
func (rs *replicaSet) owns(p int) bool { return rs.owner(p) == rs.self }

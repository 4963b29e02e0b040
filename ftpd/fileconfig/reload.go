package fileconfig

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Reload says how a running daemon takes a change of one setting of ftpd.yaml. The daemon's
// reload and the operator's restart checksum both read this one table, so the operator rolls the
// pods for exactly the changes the daemon cannot apply live.
type Reload int

const (
	// HotReload: applied to what happens next (a login, a PASV, an upload); sessions stay.
	HotReload Reload = iota + 1
	// NeedsRestart: read only at start (sockets, TLS mode, settings ftpserverlib reads once).
	NeedsRestart
)

// settingReload classifies every setting by its JSON path; a path classifies everything under
// it. TestEverySettingIsClassified walks Config's type and fails on a setting missing here, so a
// new field cannot be forgotten.
var settingReload = map[string]Reload{
	"listen":                       NeedsRestart,
	"opsListen":                    NeedsRestart,
	"dataRoot":                     NeedsRestart,
	"usersFile":                    NeedsRestart, // the file's content is hot; its path is not
	"passive.listenedPorts":        NeedsRestart,
	"passive.exposedPorts":         NeedsRestart,
	"passive.multiplexing":         NeedsRestart,
	"passive.allowDataFromOtherIP": NeedsRestart,
	"passive.address":              HotReload,
	// Membership and slices change when the server scales: applied to the next PASV and the
	// next relayed connection. The relay endpoint and the key are sockets and files read once.
	"passive.replicas.self":            NeedsRestart,
	"passive.replicas.portsPerReplica": HotReload,
	"passive.replicas.peers":           HotReload,
	"passive.replicas.relayListen":     NeedsRestart,
	"passive.replicas.keyFile":         NeedsRestart,
	"active.enabled":                   NeedsRestart,
	"tls":                              NeedsRestart, // the certificate's content is hot; mode and paths are not
	"limits.idleTimeout":               NeedsRestart, // ftpserverlib reads it when the server starts
	"limits.maxSessions":               HotReload,
	"limits.maxSessionsPerIP":          HotReload,
	"limits.loginTimeout":              HotReload,
	"limits.failedLoginDelay":          HotReload,
	"limits.banAfterFailures":          HotReload,
	"limits.banDuration":               HotReload,
	"limits.maxCommandLength":          HotReload,
	"limits.ipv6PrefixLength":          HotReload,
	"limits.dataTimeout":               HotReload,
	"limits.tcpKeepAlive":              HotReload, // set on each connection when it is accepted
	"uploads.atomic":                   HotReload,
	"drainTimeout":                     NeedsRestart,
	"shutdownDelay":                    NeedsRestart,
	"log":                              NeedsRestart,
}

// ReloadOf classifies a setting by its JSON path ("limits.maxSessions"); 0 when unknown.
func ReloadOf(path string) Reload {
	for p := path; p != ""; {
		if r, ok := settingReload[p]; ok {
			return r
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// RestartChanges names the settings that differ between the running config and the next one and
// need a restart.
func RestartChanges(running, next *Config) ([]string, error) {
	a, err := flatten(running)
	if err != nil {
		return nil, err
	}
	b, err := flatten(next)
	if err != nil {
		return nil, err
	}
	var changed []string
	for path := range union(a, b) {
		if ReloadOf(path) != HotReload && !reflect.DeepEqual(a[path], b[path]) {
			changed = append(changed, path)
		}
	}
	sort.Strings(changed)
	return changed, nil
}

// RestartDigest digests the settings of c that need a restart (and any unclassified one, to be
// safe): equal digests mean a daemon running with one config can take the other live.
func RestartDigest(c *Config) (string, error) {
	flat, err := flatten(c)
	if err != nil {
		return "", err
	}
	restart := map[string]any{}
	for path, v := range flat {
		if ReloadOf(path) != HotReload {
			restart[path] = v
		}
	}
	data, err := json.Marshal(restart) // maps marshal with sorted keys: stable
	if err != nil {
		return "", err
	}
	return ContentDigest(data), nil
}

// flatten renders c as JSON paths to values: objects are walked, everything else (lists,
// strings, numbers) is a value.
func flatten(c *Config) (map[string]any, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("flatten %s: %w", ConfigFileName, err)
	}
	var tree map[string]any
	if err := json.Unmarshal(data, &tree); err != nil {
		return nil, fmt.Errorf("flatten %s: %w", ConfigFileName, err)
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", tree)
	return out, nil
}

func union(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

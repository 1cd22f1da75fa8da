package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// Whether a key can take a new value from a configuration reload (SIGHUP)
// or only at start-up. Every key of Config is in keyClass: a test walks
// Config and fails on a key that is not, so a new key must be classified
// here (and in the reload table of docs/CONFIG.md) before it can ship.
type reloadClass int

const (
	// reloadable: the running sipedge applies the new value: to the next
	// message, registration, call or TLS handshake.
	reloadable reloadClass = iota + 1
	// restart: the value is built into sockets, threads, files or kernel
	// state when sipedge starts; changing it needs a restart.
	restart
)

var keyClass = map[string]reloadClass{
	"listen":                               restart, // sockets are bound at start
	"tls.cert":                             reloadable,
	"tls.key":                              reloadable,
	"tls.ca_file":                          reloadable, // read again, like the certificate
	"tls.verify_clients":                   reloadable,
	"tls.verify_server":                    reloadable,
	"tls.min_version":                      reloadable,
	"domains":                              reloadable,
	"log.level":                            reloadable,
	"log.format":                           restart, // the log handler is built once
	"limits.max_message_size":              restart, // the transport sizes its reads with it
	"limits.max_headers":                   reloadable,
	"limits.max_vias":                      reloadable,
	"registrar.min_expires":                reloadable,
	"registrar.max_expires":                reloadable,
	"registrar.default_expires":            reloadable,
	"registrar.max_contacts":               reloadable,
	"hep.collectors":                       restart, // the sockets and the tap are set up at start
	"hep.capture_id":                       restart,
	"hep.collector":                        restart, // the former name of collectors (always empty once loaded)
	"hep.id":                               restart, // the former name of capture_id (always nil once loaded)
	"hep.password":                         restart,
	"hep.node":                             restart,
	"call_log.file":                        restart,    // the feature is in the pipeline or not (SIGHUP reopens the file)
	"call_log.flush":                       reloadable, // set on the call log at each reload
	"admin.listen":                         restart,    // the socket is bound at start
	"admin.token":                          reloadable,
	"store.sync":                           restart, // the store is opened with it
	"store.sync_delay":                     restart, // the store is opened with it
	"store.dir":                            restart, // the store's files are open
	"store.redis":                          restart, // the cluster is joined at start
	"transport.udp_readers":                restart, // one socket and goroutine each
	"transport.idle_timeout":               restart, // each connection's reader has it
	"outbound_proxy":                       reloadable,
	"routes":                               reloadable,
	"media.relay":                          restart, // whether the relay exists at all
	"media.ports":                          restart, // the relay's port pool
	"media.kernel":                         restart, // the nftables table of the in-kernel path
	"media.latch":                          restart, // the relay threads' mode; running streams would change behaviour mid-call
	"media.inactivity":                     reloadable,
	"media.max_calls":                      reloadable,
	"media.max_streams_per_call":           reloadable,
	"media.max_calls_per_user":             reloadable,
	"media.firewall":                       restart, // the nftables set and rule
	"nat.keepalive":                        reloadable,
	"nat.keepalive_interval":               reloadable,
	"nat.keepalive_failures":               reloadable,
	"sessions.min_se":                      reloadable,
	"sessions.interval":                    reloadable,
	"dns.servers":                          restart, // the resolver's sockets and cache
	"shutdown.drain":                       reloadable,
	"memory_limit_mb":                      reloadable,
	"symmetric_responses":                  reloadable,
	"trusted_networks":                     reloadable,
	"mime.inbound":                         reloadable,
	"mime.outbound":                        reloadable,
	"server_header":                        restart, // the core is built with it
	"limits.max_transactions":              restart, // the transaction layer is built with it
	"transport.message_timeout":            restart, // each connection's reader has it
	"transport.max_connections":            reloadable,
	"transport.max_connections_per_source": reloadable,
	"transport.websocket_origins":          restart, // fixed in each WebSocket listener's handshake options
	"auth.realm":                           reloadable,
	"auth.users_file":                      restart, // auth on or off: the pipeline is built at start (the file itself is read again on SIGHUP)
	"auth.algorithms":                      reloadable,
	"auth.allow_unauthenticated_to_local":  reloadable,
	"auth.identities":                      reloadable,
	"security.rate.requests":               reloadable,
	"security.rate.window":                 reloadable,
	"security.rate.ban":                    reloadable,
	"security.auth_failures.per_source":    reloadable,
	"security.auth_failures.per_user":      reloadable,
	"security.auth_failures.window":        reloadable,
	"security.auth_failures.ban":           reloadable,
	"security.limit_trusted":               reloadable,
	"security.lift_bans":                   reloadable,
	"security.max_tracked_sources":         reloadable,
	"topology_hiding.peers":                restart,
	"topology_hiding.via":                  restart,
	"topology_hiding.contact":              restart,
	"topology_hiding.record_route":         restart,
	"topology_hiding.call_id":              restart,
	"trunks":                               restart,    // each trunk's registration runs from start; a new list needs a restart
	"dial_plan":                            reloadable, // the next request outside a dialog uses the new rules
	"pools":                                reloadable, // replaced whole; targets that stay keep their health
	"survival.enabled":                     reloadable, // off: back to normal mode at once
	"survival.upstream":                    reloadable, // a new upstream starts again in normal mode
	"survival.upstream_domains":            reloadable,
	"survival.probe.interval":              reloadable, // from the next probe
	"survival.probe.timeout":               reloadable,
	"survival.probe.down_after":            reloadable, // the counts in a row are kept
	"survival.probe.up_after":              reloadable,
	"survival.register_expires":            reloadable, // from the next REGISTER answered
	"survival.fallback":                    reloadable, // the next call sent there
}

// Diff returns the YAML key paths ("store.dir", "media.ports", "listen")
// whose values differ between old and cur and that a running sipedge
// cannot take over: a reload that changes them must be refused
// (RestartError) and the running configuration kept. Keys that can change
// while sipedge runs (domains, routes, trusted_networks, registrar.*, ...;
// see the reload table in docs/CONFIG.md) are never reported. Keys come in
// the order of Config's fields. A nil Config stands for Default().
//
// Lists compare in order, except listen, which compares as the set of
// sockets it asks for: reordering it or writing "0.0.0.0:5060" as
// "udp:0.0.0.0:5060" and "tcp:0.0.0.0:5060" changes nothing.
func Diff(old, cur *Config) []string {
	if old == nil {
		old = Default()
	}
	if cur == nil {
		cur = Default()
	}
	var out []string
	a, b := reflect.ValueOf(old).Elem(), reflect.ValueOf(cur).Elem()
	walkKeys(a.Type(), "", nil, func(path string, index []int) {
		if keyClass[path] != restart {
			return
		}
		va, vb := a.FieldByIndex(index), b.FieldByIndex(index)
		if path == "listen" {
			if !slices.Equal(listenSet(old.Listen), listenSet(cur.Listen)) {
				out = append(out, path)
			}
			return
		}
		if !sameValue(va, vb) {
			out = append(out, path)
		}
	})
	return out
}

// RestartError is the one-line error for keys reported by Diff, nil when
// there are none:
//
//	config: store.dir, media.ports cannot change while sipedge runs; restart to apply (the running configuration is kept)
func RestartError(keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	return fmt.Errorf("config: %s cannot change while sipedge runs; restart to apply (the running configuration is kept)", strings.Join(keys, ", "))
}

// walkKeys calls fn with the YAML path and field index of every key of
// struct type t: nested structs are walked (except Duration, a value),
// lists and pointers are single keys.
func walkKeys(t reflect.Type, prefix string, index []int, fn func(path string, index []int)) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		path := prefix + name
		idx := append(slices.Clip(index), i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Duration]() {
			walkKeys(f.Type, path+".", idx, fn)
			continue
		}
		fn(path, idx)
	}
}

// sameValue compares two values of one key; an empty list equals a
// missing one, and pointers compare what they point to.
func sameValue(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// listenSet is the sorted set of "proto ip:port" sockets a listen list
// asks for; a value that does not parse stands for itself.
func listenSet(listen []string) []string {
	var out []string
	for _, l := range listen {
		protos, addr, err := ParseListen(l)
		if err != nil {
			out = append(out, l)
			continue
		}
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			addr = ap.String()
		}
		for _, p := range protos {
			out = append(out, p+" "+addr)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

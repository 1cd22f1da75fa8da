package main

import (
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/prometheus/client_golang/prometheus"

	"sipedge/metrics"

	"net/http"

	"sipedge/hep"

	"sipedge/admin"
	"sipedge/capture"

	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"sipedge/cluster"
	"sipedge/config"
	"sipedge/digest"
	"sipedge/features/auth"
	"sipedge/features/calllog"
	"sipedge/features/callmedia"
	"sipedge/features/dialogs"
	"sipedge/features/dialplan"
	"sipedge/features/gateway"
	"sipedge/features/guard"
	"sipedge/features/keepalive"
	"sipedge/features/mime"
	"sipedge/features/natalias"
	"sipedge/features/peerflow"
	"sipedge/features/pool"
	"sipedge/features/topohide"
	"sipedge/features/trunk"
	"sipedge/media"
	"sipedge/proxy"
	"sipedge/registrar"
	"sipedge/resolve"
	"sipedge/sip"
	"sipedge/store"
	"sipedge/transport"
	"sipedge/txn"
)

// app owns sipedge's components: it builds them from a configuration in
// dependency order (store, registrar, resolver, core and its features,
// media relay, transport), starts them, applies a new configuration to the
// running ones (reload), drains calls, and closes them in reverse order.
type app struct {
	log   *slog.Logger
	level *slog.LevelVar
	cfg   *config.Config // the configuration in force
	o     options        // command-line flags, applied over every reload

	store *store.Store
	reg   *registrar.Registrar
	res   *resolve.Resolver
	core  *proxy.Core
	layer *transport.Layer
	relay *media.Relay
	media *callmedia.Feature
	dlg   *dialogs.Feature
	ka    *keepalive.Feature
	mime  *mime.Feature
	auth  *auth.Feature
	admin *admin.Server
	hep   *hep.Sender
	// routes counts routed requests by route across reloads.
	routes proxy.RouteCounters
	calls  *calllog.Feature
	guard  *guard.Guard
	trunks *trunk.Feature // nil without trunks
	dial   *dialplan.Feature
	closer []func() // in the order to run them

	// capture keeps calls' SIP messages for the operations page (when
	// the operations server is on).
	capture *capture.Capture

	// pools are the pools of upstreams (features/pool); poolSet the
	// pools of the configuration being loaded, whose routers the
	// routing table gets (named).
	pools   *pool.Feature
	poolSet *pool.Set

	// gw is the passive registrar and its survival mode.
	gw *gateway.Feature

	// cluster is the connection to the other instances (store.redis);
	// nil on a single instance. locs are the bindings kept in Redis,
	// flows the requests handed to the instance owning a phone's flow.
	cluster *cluster.Cluster
	locs    *cluster.Locations
	passive *cluster.Locations // the gateway's passive bindings, shared
	bans    *cluster.Bans
	flows   *peerflow.Feature
}

// errStart is a start-up failure that is not the configuration's fault
// (exit status 1 rather than 2).
type errStart struct{ err error }

func (e errStart) Error() string { return e.err.Error() }
func (e errStart) Unwrap() error { return e.err }

// newApp builds every component from cfg; nothing listens yet.
func newApp(cfg *config.Config, o options, log *slog.Logger, level *slog.LevelVar) (a *app, err error) {
	built := &app{log: log, level: level, cfg: cfg, o: o}
	a = built
	defer func() {
		// A failed start returns a nil app: close what was built (the
		// named result is nil by then).
		if err != nil {
			built.close()
		}
	}()
	specs, err := listenSpecs(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen: %v", err)
	}
	for _, s := range specs {
		if s.Proto.Secure() && (cfg.TLS.Cert == "" || cfg.TLS.Key == "") {
			return nil, fmt.Errorf("--listen %s:%s needs --tls-cert and --tls-key (or tls.cert and tls.key in the configuration)", s.Proto.Param(), s.Addr)
		}
	}
	if a.store, err = store.Open(cfg.Store.Dir, storeOptions(cfg, log)); err != nil {
		return nil, errStart{fmt.Errorf("store.dir %q: %v", cfg.Store.Dir, err)}
	}
	a.closer = append(a.closer, func() { built.store.Close() })
	secret, err := loadSecret(cfg.Store.Dir)
	if err != nil {
		return nil, errStart{fmt.Errorf("store.dir %q: %v", cfg.Store.Dir, err)}
	}
	var regStore registrar.Persister = a.store
	node := ""
	if rc := cfg.Store.Redis; rc != nil {
		if node, err = clusterNode(rc, specs); err != nil {
			return nil, err
		}
		a.cluster, err = cluster.Open(cluster.Config{Addrs: rc.Addrs, MasterName: rc.Sentinel.Master, Password: rc.Password,
			DB: rc.DB, Prefix: rc.Prefix, Node: node, WaitReplicas: rc.WaitReplicas, Logger: log})
		if err != nil {
			return nil, errStart{fmt.Errorf("store.redis: %v", err)}
		}
		a.closer = append([]func(){func() { built.cluster.Close() }}, a.closer...)
		// Nonces, Record-Route signatures and flow tokens of one
		// instance are checked by the others.
		if secret, err = a.cluster.Secret(secret); err != nil {
			return nil, errStart{fmt.Errorf("store.redis: %v", err)}
		}
		a.locs = a.cluster.Locations(cfg.Registrar.MaxExpires.Duration + 5*time.Minute)
		regStore = a.locs
		a.flows = peerflow.New(a.cluster, secret)
		log.Info("cluster: bindings, bans and the secret shared through Redis", "node", node, "redis", strings.Join(rc.Addrs, ","), "peers", len(a.cluster.Nodes()))
	}
	a.reg, err = registrar.New(registrar.Config{
		MinExpires: cfg.Registrar.MinExpires.Duration, MaxExpires: cfg.Registrar.MaxExpires.Duration,
		DefaultExpires: cfg.Registrar.DefaultExpires.Duration, MaxContacts: cfg.Registrar.MaxContacts,
		Store: regStore, Logger: log, Node: node,
	})
	if err != nil {
		return nil, errStart{fmt.Errorf("registrar: %v", err)}
	}
	a.closer = append([]func(){func() { built.reg.Close() }}, a.closer...)
	if a.locs != nil {
		a.locs.Bind(a.reg)
	}
	if a.res, err = resolve.New(resolve.Config{Servers: cfg.DNS.Servers, Logger: log}); err != nil {
		return nil, fmt.Errorf("dns: %v", err)
	}
	if len(cfg.Trunks) > 0 {
		// Before the routing table, which names them (trunk:NAME).
		tcs, err := trunkConfig(cfg)
		if err != nil {
			return nil, err
		}
		if a.trunks, err = trunk.New(tcs, dnsResolver{a.res}, log); err != nil {
			return nil, fmt.Errorf("trunks: %v", err)
		}
	}
	// Pools are routes' named destinations: built before the routing
	// table that names them; they probe once the core is attached.
	a.pools = pool.New(originator{a}, log)
	if a.poolSet, err = a.pools.Prepare(poolConfigs(cfg)); err != nil {
		return nil, fmt.Errorf("config: %v", err)
	}
	pol, err := a.policy(cfg)
	if err != nil {
		return nil, err
	}
	a.core, err = proxy.New(proxy.Config{
		Secret: secret,
		Logger: log,
		// The version stays out of the Server header unless the
		// configuration writes it there (server_header).
		UserAgent:   cfg.ServerHeader,
		NoUserAgent: cfg.ServerHeader == "",
		Registrar:   a.reg,
		Resolver:    dnsResolver{a.res},
		Policy:      pol,
		Txn:         txn.Config{MaxServers: cfg.Limits.MaxTransactions},
	})
	if err != nil {
		return nil, errStart{err}
	}
	a.closer = append([]func(){a.core.Close}, a.closer...)
	a.dlg = dialogs.New(a.core, dialogsConfig(cfg))
	if a.cluster != nil {
		// The calls of an instance that dies are ended by another when
		// their session timers expire.
		shared := a.cluster.Dialogs()
		a.dlg.SetShared(shared)
		shared.Bind(a.dlg)
	}
	// Passive bindings (gateway) have a store of their own beside the
	// registrar's: the registrar's store snapshots what the registrar
	// owns, and nothing else.
	pst, err := store.Open(filepath.Join(cfg.Store.Dir, "passive"), storeOptions(cfg, log))
	if err != nil {
		return nil, errStart{fmt.Errorf("store.dir %q: %v", filepath.Join(cfg.Store.Dir, "passive"), err)}
	}
	a.closer = append([]func(){func() { pst.Close() }}, a.closer...)
	// Each group commit's 200s leave together from the committer.
	hooks := store.BatchHooks{Begin: a.core.BeginQueued, End: a.core.EndQueued}
	a.store.SetBatchHooks(hooks)
	pst.SetBatchHooks(hooks)
	if a.locs != nil {
		a.locs.SetBatchHooks(hooks)
	}
	var passive gateway.Persister = pst
	if a.cluster != nil {
		// A phone registered with its provider through one instance
		// is reached through any other: the provider may call any.
		a.passive = a.cluster.Passive(passiveTTL)
		passive = a.passive
	}
	gw, err := gateway.New(a.core, passive)
	if err != nil {
		if a.passive != nil {
			return nil, errStart{fmt.Errorf("store.redis: passive bindings: %v", err)}
		}
		return nil, errStart{fmt.Errorf("passive bindings in %q: %v", filepath.Join(cfg.Store.Dir, "passive"), err)}
	}
	if a.passive != nil {
		a.passive.Bind(gw)
		gw.SetTokenKey(passiveTokenKey(secret))
	}
	a.gw = gw
	sc, err := a.survivalConfig(cfg)
	if err != nil {
		return nil, err
	}
	gw.SetSurvival(sc)
	if a.mime, err = mime.New(mimeConfig(cfg)); err != nil {
		return nil, err
	}
	a.guard = guard.New(guardConfig(cfg), log)
	a.liftBans(cfg)
	features := []proxy.Feature{a.guard, natalias.New(), gw, a.dlg, a.mime}
	if a.cluster != nil {
		// The other instances are served like a trusted network; a
		// ban made on one is a ban on all.
		a.core.SetPeers(a.cluster)
		a.bans = a.cluster.Bans(a.guard)
		a.guard.OnChange(func(c guard.Change) { a.bans.Publish(c.Lift, c.Source, c.Reason, c.Until) })
		features = append(features, a.flows)
	}
	// Always built: the operations API shows the calls; the file is
	// written only when call_log.file is set.
	if a.calls, err = calllog.New(a.core, cfg.CallLog.File, log); err != nil {
		return nil, errStart{err}
	}
	a.calls.SetFlush(cfg.CallLog.Flush.Duration)
	features = append(features, a.calls)
	if cfg.Auth.UsersFile != "" {
		ac, err := authConfig(cfg)
		if err != nil {
			return nil, err
		}
		if w := ac.Users.Warning(); w != "" {
			log.Warn("auth.users_file: " + w)
		}
		// The guard counts failures per source and per user, bans, and
		// writes the fail2ban line.
		a.auth = auth.New(a.core, ac, secret, a.guard, log)
		if a.cluster != nil {
			a.auth.SetCluster(a.cluster, secret)
		}
		features = append(features, a.auth)
	}
	mode, _ := callmedia.ParseMode(cfg.Media.Relay)
	if mode != callmedia.Never {
		if err := a.startRelay(cfg, mode); err != nil {
			return nil, err
		}
		features = append(features, a.media)
	}
	// Each call of the call log shows what the relay saw of its media.
	a.calls.SetMedia(a.callMedia)
	if a.media != nil {
		a.calls.SetMediaWait(a.media.WhenFinal)
	}
	if a.media != nil {
		a.media.OnEnd(a.mediaQoS)
	}
	// Always built (it sleeps while off): a reload may turn it on.
	a.ka = keepalive.New(a.core, a.reg, keepaliveConfig(cfg))
	features = append(features, a.ka)
	// Always in the pipeline (its stage costs a method check): a reload
	// may add pools.
	a.pools.Use(a.poolSet)
	features = append(features, a.pools)
	if th := cfg.TopologyHiding; th.On() {
		f, err := topoHiding(a.core, cfg)
		if err != nil {
			return nil, errStart{err}
		}
		features = append(features, f)
	}
	if a.trunks != nil {
		a.trunks.Use(a.core)
		features = append(features, a.trunks)
	}
	// Always built (without rules it costs one atomic load per request):
	// a reload may add rules.
	if a.dial, err = dialplan.New(a.core, cfg.DialPlan, a.dialEnv()); err != nil {
		return nil, fmt.Errorf("config: %v", err)
	}
	features = append(features, a.dial)
	if err := a.core.Use(features...); err != nil {
		return nil, errStart{err}
	}
	if cfg.Admin.Listen != "off" {
		a.capture = capture.New(capture.Config{})
		if a.admin, err = admin.New(admin.Config{Listen: cfg.Admin.Listen, Token: cfg.Admin.Token, Logger: log,
			Metrics: a.metricsHandler(log), Messages: a.capture, Trunks: a.trunkList(), Pools: poolView{a.pools}, Survival: survivalView{a.gw}}, guardBans{a.guard}, a.core, registrations{a.reg}, callList{a.calls}, connList{a}); err != nil {
			return nil, errStart{err}
		}
		a.closer = append([]func(){a.admin.Close}, a.closer...)
	}
	tlsPol, err := tlsPolicy(cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.TLS.VerifyServer {
		log.Warn("tls.verify_server is false: the certificates of TLS next hops are not verified; anyone on the path can impersonate them (for labs only)")
	}
	a.layer, err = transport.New(transport.Config{
		Listen:            specs,
		TLSCertFile:       cfg.TLS.Cert,
		TLSKeyFile:        cfg.TLS.Key,
		TLS:               tlsPol,
		UDPReaders:        cfg.Transport.UDPReaders,
		IdleTimeout:       cfg.Transport.IdleTimeout.Duration,
		MessageTimeout:    cfg.Transport.MessageTimeout.Duration,
		MaxConns:          cfg.Transport.MaxConnections,
		MaxConnsPerSource: cfg.Transport.MaxConnectionsPerSource,
		Refuse:            a.guard.Banned,
		WSOrigins:         cfg.Transport.WebSocketOrigins,
		Limits:            pol.Limits,
		Logger:            log,
	}, a.core)
	if err != nil {
		return nil, errStart{err}
	}
	if cfg.Store.Sync == "write" {
		// Without an fsync to share, a reader writes the bindings of what
		// it read and sends their 200s itself (store.Store.Enter).
		st := a.store
		a.layer.SetReadHooks(&transport.ReadHooks{
			Enter: func() { st.Enter(); pst.Enter() },
			Leave: func() { st.Leave(); pst.Leave() },
		})
	}
	return a, nil
}

// tlsPolicy is the transport's verification policy for cfg; the CA file
// is read here, at start and at each reload.
func tlsPolicy(cfg *config.Config) (transport.TLSPolicy, error) {
	p := transport.TLSPolicy{SkipServerVerify: !cfg.TLS.VerifyServer, MinVersion: tls.VersionTLS12}
	if cfg.TLS.MinVersion == "1.3" {
		p.MinVersion = tls.VersionTLS13
	}
	switch cfg.TLS.VerifyClients {
	case "request":
		p.VerifyClients = transport.ClientCertRequest
	case "require":
		p.VerifyClients = transport.ClientCertRequire
	}
	if cfg.TLS.CAFile != "" {
		pool, err := transport.LoadCAFile(cfg.TLS.CAFile)
		if err != nil {
			return p, fmt.Errorf("tls.ca_file: %v", err)
		}
		p.CAs = pool
	}
	return p, nil
}

// startRelay opens the media relay (and its firewall pinholes).
func (a *app) startRelay(cfg *config.Config, mode callmedia.Mode) error {
	lo, hi, _ := cfg.Media.PortRange()
	latch, _ := media.ParseLatchMode(cfg.Media.Latch)
	var fw media.Firewall
	if cfg.Media.Firewall != "" {
		nft, err := media.OpenNFTables(cfg.Media.Firewall)
		if err != nil {
			return errStart{fmt.Errorf("media.firewall: %v", err)}
		}
		a.closer = append([]func(){func() { nft.Remove() }}, a.closer...)
		fw = nft
		a.log.Info("media pinholes in nftables", "chain", cfg.Media.Firewall, "set", media.SetName)
	}
	relay, err := media.New(media.Config{
		Firewall: fw,
		Kernel:   cfg.Media.Kernel != "off", KernelForward: cfg.Media.Firewall, KernelForce: cfg.Media.Kernel == "on",
		PortMin: lo, PortMax: hi, Latch: latch, Inactivity: cfg.Media.Inactivity.Duration,
		MaxCalls: cfg.Media.MaxCalls, MaxStreamsPerCall: cfg.Media.MaxStreamsPerCall,
		OnInactive: func(id string) {
			a.log.Info("media stopped in both directions; relay ports freed", "call_id", strings.ReplaceAll(id, "\x00", " "))
			a.media.Inactive(id)
		},
	})
	if err != nil {
		return errStart{fmt.Errorf("media relay: %v", err)}
	}
	a.relay = relay
	a.closer = append([]func(){func() { relay.Close() }}, a.closer...)
	switch ks := relay.Kernel(); {
	case ks.Active:
		a.log.Info("media: in-kernel path on: latched streams are forwarded by nftables", "table", "ip sipedge_media_"+strconv.Itoa(lo)+"_"+strconv.Itoa(hi))
	case cfg.Media.Kernel == "on":
		return errStart{fmt.Errorf("media.kernel: on, but the in-kernel path is not available: %s (use auto to relay in userspace instead)", ks.Reason)}
	case cfg.Media.Kernel == "auto":
		a.log.Info("media: in-kernel path off, relaying in userspace", "reason", ks.Reason)
	}
	a.media = callmedia.New(a.core, relay, callmedia.Config{Mode: mode, MaxCallsPerUser: cfg.Media.MaxCallsPerUser})
	return nil
}

// policy builds the reloadable part of the core's configuration: routing
// table, domains, trusted networks, parser limits.
func (a *app) policy(cfg *config.Config) (proxy.Policy, error) {
	domains := proxy.NewDomains(cfg.Domains)
	isSelf := func(u *sip.URI) bool { return a.core != nil && a.core.IsSelfURI(u) }
	location := &proxy.LocationRouter{Registrar: a.reg, Domains: domains, Flows: flows{a}, IsSelf: isSelf}
	if a.flows != nil {
		location.Owners = a.flows
	}
	table := &proxy.Table{Domains: domains, OutboundProxy: cfg.OutboundProxy, Location: location,
		Resolver: dnsResolver{a.res}, IsSelf: isSelf, Counters: &a.routes, Named: a.named()}
	for _, r := range cfg.Routes {
		table.Routes = append(table.Routes, proxy.StaticRoute{Name: r.Name, Domain: r.Domain, Prefix: r.Prefix, To: r.To, Stateless: r.Stateless})
	}
	if err := table.Compile(); err != nil {
		return proxy.Policy{}, fmt.Errorf("config: %v", err)
	}
	limits := &sip.Limits{MaxMessageSize: cfg.Limits.MaxMessageSize, MaxHeaders: cfg.Limits.MaxHeaders, MaxVias: cfg.Limits.MaxVias}
	return proxy.Policy{Limits: limits, AllowSources: cfg.Trusted(), Router: table, Domains: domains,
		SymmetricResponses: cfg.SymmetricResponses == nil || *cfg.SymmetricResponses}, nil
}

// named collects the destinations features own, by "KIND:NAME" (routes
// may send to them: proxy.Table.Named). Each feature that owns some adds
// them here.
func (a *app) named() map[string]proxy.Router {
	m := map[string]proxy.Router{}
	if a.trunks != nil {
		for k, r := range a.trunks.Routers() {
			m[k] = r
		}
	}
	if a.poolSet != nil {
		maps.Copy(m, a.poolSet.Routers())
	}
	return m
}

// trunkConfig reads trunks, with each password_file.
func trunkConfig(cfg *config.Config) ([]trunk.Trunk, error) {
	var out []trunk.Trunk
	for i, t := range cfg.Trunks {
		pw := t.Password
		if t.PasswordFile != "" {
			b, err := os.ReadFile(t.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("trunks[%d].password_file: %v", i, err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		out = append(out, trunk.Trunk{Name: t.Name, Registrar: t.RegistrarURI(), Proxy: t.Proxy, Domain: t.Domain,
			Username: t.Username, Password: pw, Realm: t.Realm, Expires: t.Expires.Duration, ContactUser: t.ContactUser,
			NoRegister: t.Register != nil && !*t.Register, Inbound: t.Inbound, RetryMin: t.RetryMin.Duration, RetryMax: t.RetryMax.Duration})
	}
	return out, nil
}

// trunkList shows the trunks to the operations API; nil without trunks.
func (a *app) trunkList() admin.Trunks {
	if a.trunks == nil {
		return nil
	}
	return trunkStates{a.trunks}
}

type trunkStates struct{ f *trunk.Feature }

func (x trunkStates) Trunks() []admin.Trunk {
	var out []admin.Trunk
	now := time.Now()
	for _, s := range x.f.States() {
		t := admin.Trunk{Name: s.Name, Registrar: s.Registrar, State: string(s.Status), Registered: s.Status == trunk.StatusRegistered,
			Since: s.Since, Contact: s.Contact, LastError: s.LastError, Failures: s.Failures}
		if t.Registered && s.Expires.After(now) {
			t.ExpiresIn = int64(s.Expires.Sub(now).Round(time.Second) / time.Second)
		}
		if !s.LastErrorAt.IsZero() {
			at := s.LastErrorAt
			t.LastErrAt = &at
		}
		if !s.NextAttempt.IsZero() {
			at := s.NextAttempt
			t.NextAt = &at
		}
		out = append(out, t)
	}
	return out
}

// dialEnv is what dial-plan rules route to: the same named destinations
// as the routes, and the resolver for next hops given by host name.
func (a *app) dialEnv() dialplan.Env {
	return dialplan.Env{Named: a.named(), Resolver: dnsResolver{a.res}}
}

// flows lets the location service ask the transport (built after it)
// whether a registration's connection is still open.
type flows struct{ a *app }

func (f flows) HasConn(p transport.Proto, ap netip.AddrPort) bool {
	if f.a.layer == nil {
		return false
	}
	return f.a.layer.HasConn(p, ap)
}

// storeOptions: store.sync and store.sync_delay.
func storeOptions(cfg *config.Config, log *slog.Logger) store.Options {
	return store.Options{Logger: log, SyncInterval: cfg.Store.SyncDelay.Duration, NoSync: cfg.Store.Sync == "write"}
}

// authConfig reads the users file: an error names the file and line.
func authConfig(cfg *config.Config) (auth.Config, error) {
	users, err := digest.LoadUsers(cfg.Auth.UsersFile)
	if err != nil {
		return auth.Config{}, fmt.Errorf("auth.users_file: %v", err)
	}
	ac := auth.Config{Realm: cfg.AuthRealm(), Users: users,
		AllowUnauthenticatedToLocal: cfg.Auth.AllowUnauthenticatedToLocal, Identities: cfg.Auth.Identities}
	for _, n := range cfg.Auth.Algorithms {
		a, _ := digest.ParseAlgorithm([]byte(n))
		ac.Algorithms = append(ac.Algorithms, a)
	}
	return ac, nil
}

func dialogsConfig(cfg *config.Config) dialogs.Config {
	return dialogs.Config{MinSE: cfg.Sessions.MinSE.Duration, Interval: cfg.Sessions.Interval.Duration}
}

func mimeConfig(cfg *config.Config) mime.Config {
	return mime.Config{Inbound: cfg.MIME.Inbound, Outbound: cfg.MIME.Outbound}
}

func keepaliveConfig(cfg *config.Config) keepalive.Config {
	method, _ := keepalive.ParseMethod(cfg.NAT.Keepalive)
	return keepalive.Config{Interval: cfg.NAT.KeepaliveInterval.Duration, Method: method, MaxFailures: cfg.NAT.KeepaliveFailures}
}

func guardConfig(cfg *config.Config) guard.Config {
	s := cfg.Security
	return guard.Config{
		RateRequests: s.Rate.Requests, RateWindow: s.Rate.Window.Duration, RateBan: s.Rate.Ban.Duration,
		AuthPerSource: s.AuthFailures.PerSource, AuthPerUser: s.AuthFailures.PerUser,
		AuthWindow: s.AuthFailures.Window.Duration, AuthBan: s.AuthFailures.Ban.Duration,
		LimitTrusted: s.LimitTrusted, MaxTrackedSources: s.MaxTrackedSources,
	}
}

// liftBans lifts the bans security.lift_bans names: until an operations
// API exists, this (and SIGHUP) is how an admin lifts a ban.
func (a *app) liftBans(cfg *config.Config) {
	n := 0
	for _, p := range cfg.Security.LiftPrefixes() {
		n += a.guard.Lift(p)
	}
	if len(cfg.Security.LiftBans) > 0 {
		a.log.Info("security.lift_bans applied", "lifted", n, "sources", strings.Join(cfg.Security.LiftBans, ","))
	}
}

// start binds the listeners and starts serving.
func (a *app) start() error {
	// HEP first: the capture sees the first message, and a.hep is set
	// before any call can end. It closes after the listeners.
	if c := a.cfg.HEP; len(c.Collectors) > 0 {
		s, err := hep.Dial(c.Collectors, hep.Agent{ID: uint32(c.CaptureID), Password: c.Password, Node: c.Node}, a.log)
		if err != nil {
			return errStart{err}
		}
		cancel := a.layer.Subscribe(s.Tap)
		a.hep = s
		a.closer = append([]func(){func() { cancel(); s.Close() }}, a.closer...)
		a.log.Info("HEP capture", "collectors", strings.Join(c.Collectors, ","), "capture_id", c.CaptureID)
	}
	// The calls' messages for the operations page, from the first one.
	if a.capture != nil {
		cancel := a.layer.Subscribe(a.capture.Tap)
		a.closer = append([]func(){cancel}, a.closer...)
	}
	if err := a.layer.Start(); err != nil {
		return errStart{err}
	}
	a.closer = append([]func(){func() {
		if err := a.layer.Close(); err != nil {
			a.log.Warn("shutdown", "err", err)
		}
	}}, a.closer...)
	for _, l := range a.layer.Addrs() {
		a.log.Info("listening", "proto", l.Proto.String(), "addr", l.Addr.String())
	}
	a.core.Attach(a.layer, a.cfg.Domains)
	if a.cluster != nil {
		a.cluster.Start()
	}
	if a.admin != nil {
		go a.admin.Serve()
		a.log.Info("operations HTTP server", "addr", a.admin.Addr().String(), "token", a.cfg.Admin.Token != "")
	}
	return nil
}

// metricsHandler is GET /metrics: every component's Stats() through
// package metrics, plus the Go runtime and the process (CPU, memory,
// file descriptors), on a registry of sipedge's own.
func (a *app) metricsHandler(log *slog.Logger) http.Handler {
	src := []metrics.Source{
		{Name: "proxy", Stats: func() any { return a.core.Stats() }},
		{Name: "txn", Stats: func() any { return a.core.Transactions() }},
		{Name: "transport", Stats: func() any { return a.layer.Stats() }},
		{Name: "registrar", Stats: func() any { return a.reg.Stats() }},
		{Name: "store", Stats: func() any { return a.store.Stats() }},
		{Name: "resolve", Stats: func() any { return a.res.Stats() }},
		{Name: "dialogs", Stats: func() any { return a.dlg.Stats() }},
		{Name: "keepalive", Stats: func() any { return a.ka.Stats() }},
		{Name: "mime", Stats: func() any { return a.mime.Stats() }},
		{Name: "dialplan", Stats: func() any { return a.dial.Stats() }},
		{Name: "guard", Stats: func() any { return a.guard.Stats() }},
		{Name: "pool", Stats: func() any { return a.pools.Stats() }},
		{Name: "survival", Stats: func() any { return a.gw.Stats() }},
	}
	if a.cluster != nil {
		src = append(src, metrics.Source{Name: "cluster", Stats: func() any { return a.cluster.Stats() }},
			metrics.Source{Name: "peerflow", Stats: func() any { return a.flows.Stats() }})
	}
	if a.relay != nil {
		src = append(src, metrics.Source{Name: "media", Stats: func() any { return a.relay.Stats() }},
			metrics.Source{Name: "callmedia", Stats: func() any { return a.media.Stats() }})
	}
	if a.auth != nil {
		src = append(src, metrics.Source{Name: "auth", Stats: func() any { return a.auth.Stats() }})
	}
	src = append(src, metrics.Source{Name: "calllog", Stats: func() any { return a.calls.Stats() }})
	src = append(src, metrics.Source{Name: "routing", Stats: func() any { return a.routes.Stats() }})
	if a.trunks != nil {
		src = append(src, metrics.Source{Name: "trunk", Stats: func() any { return a.trunks.Stats() }})
	}
	if a.capture != nil {
		src = append(src, metrics.Source{Name: "capture", Stats: func() any { return a.capture.Stats() }})
	}
	if len(a.cfg.HEP.Collectors) > 0 {
		src = append(src, metrics.Source{Name: "hep", Stats: func() any {
			if a.hep == nil {
				return hep.Stats{}
			}
			return a.hep.Stats()
		}})
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(log, src...), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
}

// registrations shows the registrar's bindings to the operations API.
type registrations struct{ r *registrar.Registrar }

func (x registrations) Registrations(filter string, limit int) ([]admin.Registration, int) {
	var out []admin.Registration
	total := 0
	now := time.Now()
	x.r.Range(func(b registrar.Binding) bool {
		if filter != "" && !strings.Contains(b.AOR, filter) {
			return true
		}
		total++
		if len(out) < limit {
			out = append(out, admin.Registration{AOR: b.AOR, Contact: b.URI, Source: b.Source.String(), Transport: b.Proto.String(),
				NAT: b.NAT, ExpiresIn: int64(b.Expires.Sub(now).Round(time.Second) / time.Second), UserAgent: b.UserAgent,
				Instance: b.Instance, RegID: b.RegID, Q: float64(b.Q) / 1000})
		}
		return true
	})
	return out, total
}

// connList shows the transport's connections to the operations API (the
// layer is made after the API server, hence the app).
type connList struct{ a *app }

func (c connList) Connections(limit int) ([]admin.Connection, int) {
	if c.a.layer == nil {
		return nil, 0
	}
	list, total := c.a.layer.Connections(limit)
	out := make([]admin.Connection, 0, len(list))
	for _, ci := range list {
		x := admin.Connection{ID: ci.ID, Transport: ci.Proto.String(), Local: ci.Local.String(), Remote: ci.Remote.String(),
			Inbound: ci.Inbound, Name: ci.Name, Usable: ci.Published}
		if !ci.LastWrite.IsZero() {
			lw := ci.LastWrite
			x.LastWrite = &lw
		}
		out = append(out, x)
	}
	return out, total
}

// callMedia is a call's media for the call log: what the relay saw, or
// why it saw nothing.
func (a *app) callMedia(callID string) (any, bool) {
	if a.media == nil {
		return callmedia.NotRelayed("media.relay is never"), true
	}
	return a.media.MediaOf(callID), true
}

// mediaQoS sends an ended relayed call's media quality to the HEP
// collectors (nothing when HEP is off): one report per stream direction,
// what each side sent as measured on arrival at the relay.
func (a *app) mediaQoS(callID string, m callmedia.Media) {
	if a.hep == nil {
		return
	}
	var r hep.QoSReport
	for _, st := range m.Streams {
		for _, l := range st.Legs {
			q := hep.QoSLeg{Src: l.Source, Dst: l.Relay, Packets: l.Packets - l.RTCPPackets, Bytes: l.Bytes,
				Lost: l.Lost, Jitter: time.Duration(l.JitterMS * float64(time.Millisecond)), Codec: l.Codec}
			if !q.Src.IsValid() {
				q.Src = l.SDP
			}
			if l.Side == "callee" {
				q.Party = 1
			}
			if l.MOS != nil {
				q.MOS = *l.MOS
			}
			if l.First != nil {
				q.Start = *l.First
			}
			if l.Last != nil {
				q.End = *l.Last
			}
			r.Legs = append(r.Legs, q)
		}
	}
	if len(r.Legs) > 0 {
		a.hep.QoS(callID, r)
	}
}

// callList shows the call log's calls to the operations API.
type callList struct{ f *calllog.Feature }

func (c callList) CallsSince(limit int, mark, since uint64) (active, ended [][]byte, next, seq uint64, full bool, err error) {
	return c.f.CallsSince(limit, mark, since)
}

func (c callList) Call(callID string) (any, bool) {
	r, ok := c.f.Call(callID)
	return r, ok
}

// guardBans shows the guard's bans to the operations API.
type guardBans struct{ g *guard.Guard }

func (b guardBans) List() []admin.Ban {
	var out []admin.Ban
	for _, x := range b.g.Bans() {
		out = append(out, admin.Ban{Source: x.Source.String(), Reason: x.Reason, Since: x.Since, Until: x.Until, Dropped: x.Count})
	}
	return out
}

func (b guardBans) Lift(p netip.Prefix) int { return b.g.Lift(p) }

// reload reads the configuration file again and applies what may change
// while sipedge runs; new transactions use it, calls, registrations,
// relays and connections in progress are untouched. A file with an error,
// or one that changes a key that needs a restart, is refused whole with
// one line, and the configuration in force stays.
func (a *app) reload() error {
	cfg := config.Default()
	if a.o.configFile != "" {
		c, err := config.Load(a.o.configFile)
		if err != nil {
			return err
		}
		cfg = c
	}
	if err := applyFlags(cfg, &a.o); err != nil {
		return err
	}
	if keys := config.Diff(a.cfg, cfg); len(keys) > 0 {
		return config.RestartError(keys)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("log.level %q: use debug, info, warn or error", cfg.Log.Level)
	}
	set, err := a.pools.Prepare(poolConfigs(cfg))
	if err != nil {
		return fmt.Errorf("config: %v", err)
	}
	a.poolSet = set
	pol, err := a.policy(cfg)
	if err != nil {
		return err
	}
	sc, err := a.survivalConfig(cfg)
	if err != nil {
		return err
	}
	// The CA file, like the certificate, is read again even when its path
	// did not change: a renewed bundle is usually written over the old.
	// Both are read before either is applied, so a bad one changes nothing.
	tlsPol, err := tlsPolicy(cfg)
	if err != nil {
		return err
	}
	// The lists were validated with the file; a failure here leaves
	// everything as it was.
	if err := a.mime.SetConfig(mimeConfig(cfg)); err != nil {
		return err
	}
	if cfg.TLS.Cert != "" && cfg.TLS.Key != "" {
		if err := a.layer.ReloadTLS(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return fmt.Errorf("tls: %v", err)
		}
	}
	if err := a.layer.SetTLSPolicy(tlsPol); err != nil {
		return fmt.Errorf("tls: %v", err)
	}
	if !cfg.TLS.VerifyServer && a.cfg.TLS.VerifyServer {
		a.log.Warn("tls.verify_server is now false: the certificates of TLS next hops are not verified (for labs only)")
	}
	dial, err := dialplan.Compile(cfg.DialPlan, a.dialEnv())
	if err != nil {
		return fmt.Errorf("config: %v", err)
	}
	if err := a.reg.SetLimits(registrar.Limits{MinExpires: cfg.Registrar.MinExpires.Duration, MaxExpires: cfg.Registrar.MaxExpires.Duration,
		DefaultExpires: cfg.Registrar.DefaultExpires.Duration, MaxContacts: cfg.Registrar.MaxContacts}); err != nil {
		return fmt.Errorf("registrar: %v", err)
	}
	var ac auth.Config
	if a.auth != nil {
		if ac, err = authConfig(cfg); err != nil {
			return err
		}
	}
	a.core.SetPolicy(pol)
	a.dial.Use(dial)
	a.pools.Use(set)
	if a.calls != nil {
		a.calls.SetFlush(cfg.CallLog.Flush.Duration)
		if err := a.calls.Reopen(); err != nil {
			a.log.Warn("call log not reopened; writing on to the old file", "err", err)
		}
	}
	if a.admin != nil {
		a.admin.SetToken(cfg.Admin.Token)
	}
	a.layer.SetConnLimits(cfg.Transport.MaxConnections, cfg.Transport.MaxConnectionsPerSource)
	if a.auth != nil {
		a.auth.SetConfig(ac)
	}
	a.dlg.SetConfig(dialogsConfig(cfg))
	if a.media != nil {
		mode, _ := callmedia.ParseMode(cfg.Media.Relay)
		a.media.SetConfig(callmedia.Config{Mode: mode, MaxCallsPerUser: cfg.Media.MaxCallsPerUser})
	}
	a.ka.SetConfig(keepaliveConfig(cfg))
	a.gw.SetSurvival(sc)
	a.guard.SetConfig(guardConfig(cfg))
	a.liftBans(cfg)
	if a.relay != nil {
		a.relay.SetLimits(cfg.Media.MaxCalls, cfg.Media.MaxStreamsPerCall, cfg.Media.Inactivity.Duration)
	}
	if cfg.MemoryLimitMB != a.cfg.MemoryLimitMB {
		limit := int64(math.MaxInt64) // none
		if cfg.MemoryLimitMB > 0 {
			limit = int64(cfg.MemoryLimitMB) << 20
		}
		debug.SetMemoryLimit(limit)
	}
	a.level.Set(lv)
	a.cfg = cfg
	return nil
}

// idle reports whether no call sipedge knows of is in progress: no
// forwarded request waits for its final response, no dialog is followed,
// no media is relayed.
func (a *app) idle() bool {
	if a.core.Pending() > 0 || a.dlg.Active() > 0 {
		return false
	}
	return a.media == nil || a.media.Calls() == 0
}

// drain refuses new dialogs and waits until the calls in progress end or
// d passes, or stop is closed (a second signal).
func (a *app) drain(d time.Duration, stop <-chan struct{}) {
	a.core.Drain()
	a.log.Info("draining: new calls refused, calls in progress go on", "deadline", d.String())
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	last := time.Now()
	for !a.idle() {
		select {
		case <-deadline.C:
			a.log.Warn("drain deadline reached; stopping with calls in progress",
				"pending", a.core.Pending(), "dialogs", a.dlg.Active())
			return
		case <-stop:
			a.log.Info("second signal: stopping now")
			return
		case <-tk.C:
			if time.Since(last) >= 5*time.Second {
				last = time.Now()
				a.log.Info("draining", "pending", a.core.Pending(), "dialogs", a.dlg.Active())
			}
		}
	}
}

// close stops everything in reverse order of start: transport, features
// and core, relay, registrar, store (flushed).
func (a *app) close() {
	for _, f := range a.closer {
		f()
	}
	a.closer = nil
}

// topoHiding builds topology hiding from topology_hiding, with its key
// kept in the store directory (made at first start).
func topoHiding(core *proxy.Core, cfg *config.Config) (*topohide.Feature, error) {
	th := cfg.TopologyHiding
	peers, err := cfg.PeerNetworks()
	if err != nil {
		return nil, fmt.Errorf("topology_hiding.peers: %v", err)
	}
	key, err := topohide.LoadKey(cfg.Store.Dir)
	if err != nil {
		return nil, fmt.Errorf("topology_hiding key in store.dir %q: %v", cfg.Store.Dir, err)
	}
	on := func(b *bool) bool { return b == nil || *b }
	return topohide.New(core, topohide.Config{Peers: peers, Via: on(th.Via), Contact: on(th.Contact),
		RecordRoute: on(th.RecordRoute), CallID: on(th.CallID)}, key)
}

// poolConfigs converts the configuration's pools (validated by config).
func poolConfigs(cfg *config.Config) []pool.Config {
	var out []pool.Config
	for _, p := range cfg.Pools {
		alg, _ := pool.ParseAlgorithm(p.Algorithm)
		pc := pool.Config{Name: p.Name, Algorithm: alg, AnswerTimeout: p.AnswerTimeout.Duration,
			Probe: pool.Probe{Interval: p.Probe.Interval.Duration, Timeout: p.Probe.Timeout.Duration, DownAfter: p.Probe.DownAfter, UpAfter: p.Probe.UpAfter}}
		for _, t := range p.Targets {
			pc.Targets = append(pc.Targets, pool.TargetConfig{URI: t.URI, Weight: t.Weight, Priority: t.Priority})
		}
		out = append(out, pc)
	}
	return out
}

// originator sends the pools' probes through the core, built after them.
type originator struct{ a *app }

func (o originator) Originate(r *proxy.Originate, h txn.ClientHandler) error {
	return o.a.core.Originate(r, h)
}

// poolView shows the pools to the operations API.
type poolView struct{ f *pool.Feature }

func (v poolView) View() any { return v.f.View() }

// survivalConfig builds the gateway's survival mode from cfg: the
// upstream's next hop, and the fallback as a one-route table (a SIP URI,
// or a destination a feature owns, pool:NAME or trunk:NAME).
func (a *app) survivalConfig(cfg *config.Config) (gateway.SurvivalConfig, error) {
	s := cfg.Survival
	pr := s.Probe
	sc := gateway.SurvivalConfig{Enabled: s.Enabled, Upstream: s.Upstream, Domains: s.UpstreamDomains,
		Interval: pr.Interval.Duration, Timeout: pr.Timeout.Duration, DownAfter: pr.DownAfter, UpAfter: pr.UpAfter,
		RegisterExpires: s.RegisterExpires.Duration, FallbackName: s.Fallback}
	if !s.Enabled {
		return sc, nil
	}
	u, err := sip.ParseURI([]byte(s.Upstream))
	if err != nil {
		return sc, fmt.Errorf("config: survival.upstream %q: %v", s.Upstream, err)
	}
	t, ok := proxy.URITarget(&u)
	if !ok {
		return sc, fmt.Errorf("config: survival.upstream %q: want sip:IP[:port]", s.Upstream)
	}
	sc.Target = t
	if s.Fallback != "" {
		table := &proxy.Table{Resolver: dnsResolver{a.res}, Counters: &a.routes, Named: a.named(),
			Routes: []proxy.StaticRoute{{Name: "survival-fallback", To: s.Fallback}}}
		if err := table.Compile(); err != nil {
			return sc, fmt.Errorf("config: survival.fallback: %v", err)
		}
		sc.Fallback = table
	}
	return sc, nil
}

// survivalView shows survival to the operations API.
type survivalView struct{ f *gateway.Feature }

func (v survivalView) View() any { return v.f.Survival() }

// clusterNode is this instance's name in the cluster: store.redis.node,
// or the first listen address when it names one.
func clusterNode(rc *config.Redis, specs []transport.ListenSpec) (string, error) {
	if rc.Node != "" {
		return rc.Node, nil
	}
	for _, s := range specs {
		if ap, err := netip.ParseAddrPort(s.Addr); err == nil && s.Proto == transport.UDP && !ap.Addr().IsUnspecified() {
			return ap.String(), nil
		}
	}
	return "", fmt.Errorf("config: store.redis.node: the listen addresses are wildcards; set node to the ip:port the other instances reach this one at, e.g. node: 10.0.0.2:5060")
}

// passiveTTL is how long a shared passive binding outlives its last write
// in Redis: longer than any registration a provider grants (the gateway
// forgets a binding an hour after it lapsed, and deletes its record then).
const passiveTTL = 25 * time.Hour

// passiveTokenKey derives the gateway's token secret from the cluster's,
// so every instance gives a phone the same token.
func passiveTokenKey(secret []byte) uint64 {
	h := sha256.Sum256(append([]byte("sipedge passive tokens\x00"), secret...))
	return binary.BigEndian.Uint64(h[:8])
}

// Command sipedge is a SIP edge proxy. Run with no arguments it is a
// registrar and proxy on UDP and TCP port 5060 for phones on loopback and
// private networks; `sipedge --help` explains every flag and
// docs/CONFIG.md every configuration key.
package main

import (
	"sipedge/admin"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"sipedge/config"
	"sipedge/proxy"
	"sipedge/resolve"
	"sipedge/sip"
	"sipedge/transport"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sipedge — SIP edge proxy

Usage:
  sipedge [flags]
  sipedge check [--config FILE]   validate a file, print the effective configuration
  sipedge users add|remove|list   manage the users file of digest authentication

With no flags and no configuration file sipedge listens on UDP and TCP port
5060 on every IPv4 and IPv6 address and serves phones on loopback and
private networks (RFC 1918, RFC 6598, 169.254/16, IPv6 ULA and link-local):
OPTIONS to itself gets 200, malformed requests get the SIP error the RFCs
name (400, 416, 420, 482, 483, 505, 513...), requests from other sources
get 403. The operations API (health, metrics, registrations, calls, bans;
docs/API.md) listens on 127.0.0.1:8080.

To serve phones elsewhere, give them passwords (digest authentication):
  echo 's3cret' | sipedge users add /etc/sipedge/users alice --realm sip.example.com
and name the file in the configuration (auth.users_file); sipedge then
challenges requests from outside trusted_networks and never relays them
anywhere but to its own users.

Flags override the configuration file (--config); see docs/CONFIG.md.

Signals:
  SIGHUP            reload the configuration file (what systemctl reload and
                    logrotate send); calls and registrations are untouched; a
                    file with an error is refused with one line and the
                    running configuration stays
  SIGTERM, SIGINT   graceful stop: new calls get 503, calls in progress go on
                    for up to shutdown.drain (30s); a second signal stops now

Examples:
  sipedge                                     # zero configuration
  sipedge --config /etc/sipedge/sipedge.yaml
  sipedge --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060
  sipedge --listen 0.0.0.0:5060 --listen tls:0.0.0.0:5061 \
          --tls-cert /etc/sipedge/cert.pem --tls-key /etc/sipedge/key.pem
  sipedge --listen 0.0.0.0:5060 --listen wss:0.0.0.0:8443 \
          --tls-cert /etc/sipedge/cert.pem --tls-key /etc/sipedge/key.pem   # browsers (WebRTC)
  sipedge --log-format json --log-level debug
  sipedge check --config /etc/sipedge/sipedge.yaml
  curl -s 127.0.0.1:8080/api/v1/registrations

Flags:
`

type listenFlag []string

func (l *listenFlag) String() string     { return strings.Join(*l, ",") }
func (l *listenFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	configFile      string
	listen          listenFlag
	tlsCert, tlsKey string
	logFormat       string
	logLevel        string
	udpReaders      int
	idleTimeout     time.Duration
	maxMessageSize  int
	symmetric       bool
	domains         string
	dataDir         string
	adminListen     string
	showVersion     bool
	cpuProfile      string
	memProfile      string
	set             map[string]bool // flags given on the command line
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "check" {
		return runCheck(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "users" {
		return runUsers(args[1:], stdout, stderr)
	}
	o, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	// Catch signals from the start: a SIGTERM while starting up must still
	// end in a clean shutdown, not the default kill, and a SIGHUP (what
	// logrotate and systemctl reload send) must never kill sipedge.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	cfg := config.Default()
	if o.configFile != "" {
		c, err := config.Load(o.configFile)
		if err != nil {
			fmt.Fprintf(stderr, "sipedge: %v\n", err)
			return 2
		}
		cfg = c
	}
	if err := applyFlags(cfg, &o); err != nil {
		fmt.Fprintf(stderr, "sipedge: %v\n", err)
		return 2
	}
	log, level, err := newLogger(cfg.Log.Format, cfg.Log.Level, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sipedge: %v\n", err)
		return 2
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "sipedge: --cpuprofile: %v\n", err)
			return 2
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if cfg.MemoryLimitMB > 0 {
		debug.SetMemoryLimit(int64(cfg.MemoryLimitMB) << 20)
	}
	a, err := newApp(cfg, o, log, level)
	if err == nil {
		err = a.start()
		if err != nil {
			a.close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "sipedge: %v\n", err)
		var se errStart
		if errors.As(err, &se) {
			return 1
		}
		return 2
	}
	auth := "off"
	if cfg.Auth.UsersFile != "" {
		auth = "digest, realm " + cfg.AuthRealm()
	}
	log.Info("sipedge started", "version", version, "trusted_networks", strings.Join(cfg.TrustedNetworks, ","), "auth", auth)
	for s := range sigs {
		if s != syscall.SIGHUP {
			break
		}
		if err := a.reload(); err != nil {
			log.Error("configuration not reloaded; the running one stays: " + err.Error())
			continue
		}
		log.Info("configuration reloaded", "file", o.configFile)
	}
	if o.memProfile != "" {
		// Before anything is drained or closed: what the server held
		// while it ran (the calls' transactions, the capture, the store).
		if err := writeHeapProfile(o.memProfile); err != nil {
			log.Error("--memprofile: " + err.Error())
		}
	}
	stop := make(chan struct{})
	go func() {
		for s := range sigs {
			if s != syscall.SIGHUP {
				close(stop)
				return
			}
		}
	}()
	a.drain(a.cfg.Shutdown.Drain.Duration, stop)
	log.Info("shutting down")
	a.close()
	log.Info("stopped")
	return 0
}

// parseFlags parses args. A bad flag gives one line naming it.
func parseFlags(args []string, stdout, stderr io.Writer) (options, int, bool) {
	var o options
	fs := flag.NewFlagSet("sipedge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.configFile, "config", "", "YAML configuration `file` (default: built-in zero configuration)")
	fs.Var(&o.listen, "listen", "`[proto:]ip:port` to listen on; proto is udp, tcp, tls, ws or wss (SIP over WebSocket, RFC 7118); without proto both udp and tcp; repeatable (default udp+tcp on 0.0.0.0:5060 and [::]:5060)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate `file` for tls and wss listeners")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `file` for tls and wss listeners")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json (logs go to stderr)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&o.udpReaders, "udp-readers", 0, "UDP reader goroutines per listen address, each with its own socket; one phone's messages always go to the same one, in order (default: number of CPUs)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", transport.DefaultIdleTimeout, "close TCP/TLS connections idle this long")
	fs.IntVar(&o.maxMessageSize, "max-message-size", sip.DefaultMaxMessageSize, "largest SIP message accepted, in bytes (larger: 513)")
	fs.BoolVar(&o.symmetric, "symmetric-responses", true, "send UDP responses to the source port even without rport (RFC 3581 behaviour for NATed phones); false follows RFC 3261 §18.2.2 strictly")
	fs.StringVar(&o.domains, "domain", "", "comma-separated SIP domains served by the registrar (default: every domain)")
	fs.StringVar(&o.dataDir, "data-dir", "sipedge-data", "`directory` where registrations are kept across restarts (store.dir)")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8080", "`host:port` of the operations HTTP server (health, bans; docs/API.md), or off (admin.listen)")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) to `file` until sipedge stops; for performance reports")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile (go tool pprof) to `file` when sipedge is told to stop, before it drains; for performance reports")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return o, 0, true
	case err != nil:
		fmt.Fprintf(stderr, "sipedge: %v (see sipedge --help)\n", err)
		return o, 2, true
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "sipedge: unexpected argument %q (see sipedge --help)\n", fs.Arg(0))
		return o, 2, true
	case o.showVersion:
		fmt.Fprintln(stdout, "sipedge", version)
		return o, 0, true
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	return o, 0, false
}

// applyFlags lets the command line override the configuration.
func applyFlags(c *config.Config, o *options) error {
	if o.set["listen"] {
		c.Listen = o.listen
		for _, l := range c.Listen {
			if _, _, err := config.ParseListen(l); err != nil {
				return fmt.Errorf("--listen %v", err)
			}
		}
	}
	if o.set["tls-cert"] {
		c.TLS.Cert = o.tlsCert
	}
	if o.set["tls-key"] {
		c.TLS.Key = o.tlsKey
	}
	if o.set["log-format"] {
		c.Log.Format = o.logFormat
	}
	if o.set["log-level"] {
		c.Log.Level = o.logLevel
	}
	if o.set["udp-readers"] {
		c.Transport.UDPReaders = o.udpReaders
	}
	if o.set["idle-timeout"] {
		c.Transport.IdleTimeout.Duration = o.idleTimeout
	}
	if o.set["max-message-size"] {
		if o.maxMessageSize < 1024 || o.maxMessageSize > 1<<20 {
			return fmt.Errorf("--max-message-size %d: must be between 1024 and 1048576", o.maxMessageSize)
		}
		c.Limits.MaxMessageSize = o.maxMessageSize
	}
	if o.set["symmetric-responses"] {
		v := o.symmetric
		c.SymmetricResponses = &v
	}
	if o.set["data-dir"] {
		c.Store.Dir = o.dataDir
	}
	if o.set["admin-listen"] {
		c.Admin.Listen = o.adminListen
		if c.Admin.Listen != "off" {
			if err := admin.Check(c.Admin.Listen, c.Admin.Token); err != nil {
				return fmt.Errorf("--admin-listen: %v", err)
			}
		}
	}
	if o.set["domain"] {
		c.Domains = strings.Split(o.domains, ",")
	}
	return nil
}

// newLogger returns the logger and its level, which a reload may change.
func newLogger(format, level string, w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	v := new(slog.LevelVar)
	v.Set(lv)
	opts := &slog.HandlerOptions{Level: v}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), v, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), v, nil
	}
	return nil, nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// listenSpecs turns listen values into transport specs.
func listenSpecs(vals []string) ([]transport.ListenSpec, error) {
	var out []transport.ListenSpec
	for _, v := range vals {
		protos, addr, err := config.ParseListen(v)
		if err != nil {
			return nil, err
		}
		for _, p := range protos {
			pr, _ := transport.ParseProto(p)
			out = append(out, transport.ListenSpec{Proto: pr, Addr: addr})
		}
	}
	return out, nil
}

// dnsResolver adapts the RFC 3263 resolver to the proxy's next hops.
type dnsResolver struct{ r *resolve.Resolver }

func (d dnsResolver) ResolveTargets(ctx context.Context, u *sip.URI) ([]proxy.Target, error) {
	if proxy.NonBlocking(ctx) {
		ctx = resolve.CacheOnly(ctx)
	}
	ts, err := d.r.Resolve(ctx, u)
	switch {
	case errors.Is(err, resolve.ErrNotCached):
		return nil, proxy.ErrWouldBlock
	case errors.Is(err, resolve.ErrTimeout), errors.Is(err, resolve.ErrServerFailure):
		return nil, fmt.Errorf("%w: %w", proxy.ErrDNSUnavailable, err)
	case err != nil:
		return nil, err
	}
	out := make([]proxy.Target, 0, len(ts))
	for _, t := range ts {
		// The TLS identity is the domain asked for, not the SRV target
		// (RFC 5922 §4.1).
		out = append(out, proxy.Target{Proto: t.Proto, Addr: t.Addr, Host: t.Domain})
	}
	return out, nil
}

// writeHeapProfile writes the heap as of the last collection after one
// more, so what is live now is in it.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

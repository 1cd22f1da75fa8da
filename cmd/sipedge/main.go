// Command sipedge is a SIP edge proxy. Run with no arguments it listens on
// UDP and TCP port 5060 on every address and answers OPTIONS for itself;
// `sipedge --help` explains every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"sipedge/proxy"
	"sipedge/sip"
	"sipedge/transport"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sipedge — SIP edge proxy

Usage:
  sipedge [flags]

With no flags sipedge listens on UDP and TCP port 5060 on every IPv4 and
IPv6 address, answers OPTIONS sent to itself with 200, and answers
malformed requests with the SIP error the RFCs name (400, 416, 420, 483,
505, 513...).

Examples:
  sipedge                                     # defaults
  sipedge --listen udp:127.0.0.1:5060 --listen tcp:127.0.0.1:5060
  sipedge --listen 0.0.0.0:5060 --listen tls:0.0.0.0:5061 \
          --tls-cert /etc/sipedge/cert.pem --tls-key /etc/sipedge/key.pem
  sipedge --log-format json --log-level debug

Flags:
`

type listenFlag []string

func (l *listenFlag) String() string     { return strings.Join(*l, ",") }
func (l *listenFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	listen          listenFlag
	tlsCert, tlsKey string
	logFormat       string
	logLevel        string
	udpReaders      int
	idleTimeout     time.Duration
	maxMessageSize  int
	symmetric       bool
	domains         string
	showVersion     bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	log, err := newLogger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sipedge: %v\n", err)
		return 2
	}
	specs, err := listenSpecs(o.listen)
	if err != nil {
		fmt.Fprintf(stderr, "sipedge: --listen: %v\n", err)
		return 2
	}
	for _, s := range specs {
		if s.Proto == transport.TLS && (o.tlsCert == "" || o.tlsKey == "") {
			fmt.Fprintf(stderr, "sipedge: --listen %s:%s needs --tls-cert and --tls-key\n", "tls", s.Addr)
			return 2
		}
	}
	limits := &sip.Limits{MaxMessageSize: o.maxMessageSize}
	core := proxy.New(proxy.Config{
		Limits:             limits,
		Logger:             log,
		SymmetricResponses: o.symmetric,
		UserAgent:          "sipedge/" + version,
	})
	layer, err := transport.New(transport.Config{
		Listen:      specs,
		TLSCertFile: o.tlsCert,
		TLSKeyFile:  o.tlsKey,
		UDPReaders:  o.udpReaders,
		IdleTimeout: o.idleTimeout,
		Limits:      limits,
		Logger:      log,
	}, core)
	if err != nil {
		fmt.Fprintf(stderr, "sipedge: %v\n", err)
		return 1
	}
	if err := layer.Start(); err != nil {
		fmt.Fprintf(stderr, "sipedge: %v\n", err)
		return 1
	}
	for _, l := range layer.Addrs() {
		log.Info("listening", "proto", l.Proto.String(), "addr", l.Addr.String())
	}
	var names []string
	if o.domains != "" {
		names = strings.Split(o.domains, ",")
	}
	core.Attach(layer, names)
	defer core.Close()
	log.Info("sipedge started", "version", version)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("shutting down")
	if err := layer.Close(); err != nil {
		log.Warn("shutdown", "err", err)
	}
	log.Info("stopped")
	return 0
}

// parseFlags parses args. A bad flag gives one line naming it.
func parseFlags(args []string, stdout, stderr io.Writer) (options, int, bool) {
	var o options
	fs := flag.NewFlagSet("sipedge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&o.listen, "listen", "`[proto:]addr:port` to listen on; proto is udp, tcp or tls; without proto both udp and tcp; repeatable (default udp+tcp on 0.0.0.0:5060 and [::]:5060)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate `file` for tls listeners")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `file` for tls listeners")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json (logs go to stderr)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&o.udpReaders, "udp-readers", 0, "goroutines reading each UDP socket (default: number of CPUs)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", transport.DefaultIdleTimeout, "close TCP/TLS connections idle this long")
	fs.IntVar(&o.maxMessageSize, "max-message-size", sip.DefaultMaxMessageSize, "largest SIP message accepted, in bytes (larger: 513)")
	fs.BoolVar(&o.symmetric, "symmetric-responses", true, "send UDP responses to the source port even without rport (RFC 3581 behaviour for NATed phones); false follows RFC 3261 §18.2.2 strictly")
	fs.StringVar(&o.domains, "domain", "", "comma-separated host names that mean sipedge itself in a Request-URI")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
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
	if o.maxMessageSize < 1024 || o.maxMessageSize > 1<<20 {
		fmt.Fprintf(stderr, "sipedge: --max-message-size %d: must be between 1024 and 1048576\n", o.maxMessageSize)
		return o, 2, true
	}
	return o, 0, false
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// listenSpecs turns --listen values into transport specs. The default is
// UDP and TCP on 0.0.0.0:5060 and [::]:5060.
func listenSpecs(vals []string) ([]transport.ListenSpec, error) {
	if len(vals) == 0 {
		vals = []string{"0.0.0.0:5060", "[::]:5060"}
	}
	var out []transport.ListenSpec
	for _, v := range vals {
		proto, addr := "", v
		if i := strings.Index(v, ":"); i > 0 && !strings.HasPrefix(v, "[") {
			if p, err := transport.ParseProto(v[:i]); err == nil {
				proto, addr = p.String(), v[i+1:]
			}
		}
		if _, err := netip.ParseAddrPort(addr); err != nil {
			return nil, fmt.Errorf("%q: want [udp:|tcp:|tls:]ip:port, e.g. udp:0.0.0.0:5060 or tcp:[::1]:5060", v)
		}
		if proto == "" {
			out = append(out, transport.ListenSpec{Proto: transport.UDP, Addr: addr},
				transport.ListenSpec{Proto: transport.TCP, Addr: addr})
			continue
		}
		p, _ := transport.ParseProto(proto)
		out = append(out, transport.ListenSpec{Proto: p, Addr: addr})
	}
	return out, nil
}

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"

	"sipedge/config"
)

const checkUsage = `sipedge check — validate a configuration file

Usage:
  sipedge check [--config FILE]

Loads FILE exactly as sipedge does when it starts, without starting
anything. A file sipedge would refuse gives the same one-line error (file,
line, key and fix) and exit status 2. A good one gives exit status 0 and,
on stdout, the line "# configuration OK: FILE" followed by the effective
configuration as YAML: every key, defaults filled in, ready to be used as
a configuration file itself. Without --config the built-in zero
configuration is checked and printed. Command-line flags of sipedge itself
are not applied. See docs/CONFIG.md for every key.

Examples:
  sipedge check --config /etc/sipedge/sipedge.yaml
  sipedge check > sipedge.yaml      # start a file from the defaults

Flags:
`

// runCheck is "sipedge check": it validates a configuration file and
// prints the configuration sipedge would run with.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sipedge check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("config", "", "YAML configuration `file` to check (default: the built-in zero configuration)")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, checkUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "sipedge check: %v (see sipedge check --help)\n", err)
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "sipedge check: unexpected argument %q (see sipedge check --help)\n", fs.Arg(0))
		return 2
	}
	name := "built-in defaults"
	var cfg *config.Config
	if *file != "" {
		name = *file
		cfg, err = config.Load(*file)
	} else {
		cfg, err = config.Parse(nil)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sipedge: %v\n", err)
		return 2
	}
	// What run checks after loading, before it opens anything.
	specs, err := listenSpecs(cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "sipedge: --listen: %v\n", err)
		return 2
	}
	for _, s := range specs {
		if s.Proto.Secure() && (cfg.TLS.Cert == "" || cfg.TLS.Key == "") {
			fmt.Fprintf(stderr, "sipedge: --listen %s:%s needs --tls-cert and --tls-key (or tls.cert and tls.key in the configuration)\n", s.Proto.Param(), s.Addr)
			return 2
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# configuration OK: %s\n", name)
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		fmt.Fprintf(stderr, "sipedge check: writing the configuration: %v\n", err)
		return 1
	}
	enc.Close()
	stdout.Write(out.Bytes())
	return 0
}

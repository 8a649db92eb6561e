// Command lintel is the Lintel edge gateway. `lintel --help` lists every
// command, `lintel <command> --help` shows one (exit 0); a usage mistake
// exits 2, any other failure 1.
//
//	lintel run --config F      run the gateway
//	lintel demo                everything on loopback with a simulated building
//	lintel check --config F    check a config file; list every problem
//	lintel passwd add|remove|list --file F [NAME]
//	lintel version
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"os/user"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/lintel-gw/lintel/adapters/modbus"
	"github.com/lintel-gw/lintel/adapters/serialline"
	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway"
	"github.com/lintel-gw/lintel/gateway/audit"
	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/gateway/demo"
	"github.com/lintel-gw/lintel/localbroker"
)

const usage = `usage: lintel <command> [flags]

commands:
  run --config F [--override-audit CHECK]…
                                      run the gateway; it refuses to start when the audit
                                      fails, unless each failing check is overridden
  demo [--data-dir D] [--listen A]    simulated building, local broker and an mTLS cloud on loopback
  check --config F [--plan] [--sample LOG]
                                      check a config file and list every problem;
                                      --plan prints each device's Modbus read requests;
                                      --sample runs the serial events over a captured log
                                      and warns on published values that look like names
  modbus read|write|scan (--url U | --config F --bus B) [flags]
                                      commissioning: read or write one point, or find unit ids
  ports                               serial ports with USB ids and /dev/serial/by-id names
  audit --config F [--json] [--user U]
                                      security audit (exit 1 on any FAIL); U is the service
                                      user (default: the current user)
  passwd add|remove|list --file F [NAME]
                                      manage local broker users (bcrypt); add reads the
                                      password from the terminal, or one line of stdin
  buffer stats --config F [--json]    buffer depth, age and drops (daemon running or not)
  keygen --out NAME                   Ed25519 command-signing key: NAME.key (0600), NAME.pub
  sign --key NAME.key --gateway G --device D --point P --value V [--ttl 60s]
                                      print a signed command envelope (pipe it to mosquitto_pub -s)
  version                             print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := runCommand(ctx, os.Args[1], os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	var exit exitCode
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case errors.Is(err, flag.ErrHelp): // help was asked for and printed
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "lintel:", err)
		os.Exit(1)
	}
}

// exitCode ends the program with a status after the command printed its own
// message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// runCommand runs one command. Help asked for (--help, -h, help) is printed
// on stdout with a nil error (exit 0); a usage mistake is printed on stderr
// with exitCode(2).
func runCommand(ctx context.Context, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := dispatch(ctx, cmd, args, stdin, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch cmd {
	case "run":
		return cmdRun(ctx, args, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args, stdout, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "passwd":
		return cmdPasswd(args, stdin, stdout, stderr)
	case "buffer":
		return cmdBuffer(args, stdout, stderr)
	case "audit":
		return cmdAudit(args, stdout, stderr)
	case "modbus":
		return cmdModbus(ctx, args, stdout, stderr)
	case "ports":
		return cmdPorts(args, stdout, stderr)
	case "keygen":
		return cmdKeygen(args, stdout, stderr)
	case "sign":
		return cmdSign(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "lintel", version())
		return nil
	case "help", "-h", "-help", "--help":
		if len(args) > 0 {
			help := commandHelp(args[0])
			if help == "" {
				fmt.Fprintf(stderr, "lintel: no command %q\n%s", args[0], usage)
				return exitCode(2)
			}
			fmt.Fprint(stdout, help)
			return nil
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "lintel: unknown command %q\n%s", cmd, usage)
	return exitCode(2)
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// newFlags returns the flag set of command name (e.g. "buffer stats"); its
// usage shows the command's lines of the main usage and its flags.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lintel "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(fs.Output(), fs) }
	return fs
}

// parseFlags parses args: help asked for goes to stdout (flag.ErrHelp is
// returned, which means exit 0); a bad flag is reported with the usage on
// the flag set's output (stderr) and exitCode(2).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	stderr := fs.Output()
	fs.Usage = func() {} // printed below, to the right stream
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, fs)
		return err
	case err != nil:
		printHelp(stderr, fs)
		return exitCode(2)
	}
	return nil
}

// printHelp writes a command's usage lines and its flags to w.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, commandHelp(strings.TrimPrefix(fs.Name(), "lintel ")))
	out := fs.Output()
	fs.SetOutput(w)
	fmt.Fprintln(w, "flags:")
	fs.PrintDefaults()
	fs.SetOutput(out)
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// commandHelp returns the lines of usage that describe command (its first
// word is enough: "buffer stats" → the buffer lines), as "usage: lintel …",
// or "" if there is none.
func commandHelp(command string) string {
	word, _, _ := strings.Cut(command, " ")
	var b strings.Builder
	in := false
	for _, line := range strings.Split(usage, "\n") {
		rest, indented := strings.CutPrefix(line, "  ")
		switch {
		case indented && rest != "" && rest[0] != ' ': // a command's first line
			in = rest == word || strings.HasPrefix(rest, word+" ")
			if in {
				synopsis, what, _ := strings.Cut(rest, "   ")
				b.WriteString("usage: lintel " + synopsis + "\n")
				if what = strings.TrimSpace(what); what != "" {
					b.WriteString("  " + what + "\n")
				}
			}
		case in && strings.TrimSpace(line) != "": // its continuation
			b.WriteString("  " + strings.TrimSpace(line) + "\n")
		default:
			in = false
		}
	}
	return b.String()
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, strings.Split(v, ",")...); return nil }

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	path := fs.String("config", "/etc/lintel/lintel.yaml", "config file")
	var overrides listFlag
	fs.Var(&overrides, "override-audit", "start although this audit check fails (repeatable; logged loudly)")
	stopTimeout := fs.Duration("shutdown-timeout", 15*time.Second, "on SIGTERM, exit after this long even if the stop (uplink drain, device transactions) has not finished")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	// From here on a SIGHUP is queued, not fatal (its default action); one
	// that arrives before the gateway runs is refused by Reload and logged.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	findings, refused := startAudit(cfg, overrides, log)
	if len(refused) > 0 {
		printFindings(stderr, findings, true)
		return fmt.Errorf("refusing to start: the security audit failed (%s); fix it, or pass --override-audit %s to start anyway",
			strings.Join(refused, ", "), strings.Join(refused, ","))
	}
	gw, err := gateway.New(cfg, gateway.Options{Version: version(), Logger: log})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()

	// SIGHUP reloads; the goroutine is stopped and waited for before the
	// gateway is shut down, so no reload runs during the stop.
	hupCtx, stopHUP := context.WithCancel(ctx)
	var hupDone sync.WaitGroup
	hupDone.Go(func() {
		for {
			select {
			case <-hupCtx.Done():
				return
			case <-hup:
				reload(gw, *path, overrides, log)
			}
		}
	})
	stopReloads := func() { stopHUP(); hupDone.Wait() }

	select {
	case err := <-done: // Run failed to start
		stopReloads()
		return err
	case <-ctx.Done():
	}
	stopReloads()
	bound, cancel := context.WithTimeout(context.Background(), *stopTimeout)
	defer cancel()
	if err := gw.Shutdown(bound); err != nil {
		return fmt.Errorf("gateway did not stop within --shutdown-timeout %v: %w", *stopTimeout, err)
	}
	if err := <-done; !errors.Is(err, gateway.ErrClosed) {
		return err
	}
	return nil // stopped before Run got going: a clean stop all the same
}

// startAudit audits cfg for the current user, as `lintel run` does at start
// and on reload. It logs every overridden failure loudly and returns the
// failing checks that were not overridden.
func startAudit(cfg *config.Config, overrides []string, log *slog.Logger) (findings []audit.Finding, refused []string) {
	findings = audit.Run(cfg, nil, audit.Options{ServiceUID: os.Geteuid()})
	for _, id := range audit.Failed(findings) {
		if !slices.Contains(overrides, id) {
			refused = append(refused, id)
			continue
		}
		for _, f := range findings {
			if f.Check == id && f.Status == audit.Fail {
				log.Error("SECURITY AUDIT FAILURE OVERRIDDEN by --override-audit; fix it", "check", id, "reason", f.Reason, "fix", f.Fix)
			}
		}
	}
	return findings, refused
}

// reload applies SIGHUP: the file is checked and audited like at start, and
// refused with the reason (the running configuration stays) if it fails.
func reload(gw *gateway.Gateway, path string, overrides []string, log *slog.Logger) {
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("reload refused: configuration invalid; still running the previous one", "err", err)
		return
	}
	if _, refused := startAudit(cfg, overrides, log); len(refused) > 0 {
		log.Error("reload refused: security audit failed; still running the previous configuration", "checks", strings.Join(refused, ","))
		return
	}
	if err := gw.Reload(cfg); err != nil {
		log.Error(err.Error())
	}
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	dataDir := fs.String("data-dir", "", "keep the buffer and generated files here (default: a temporary directory)")
	listen := fs.String("listen", "127.0.0.1:0", "local broker address (loopback)")
	verbose := fs.Bool("v", false, "log gateway activity at info level")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	level := "warn"
	if *verbose {
		level = "info"
	}
	return demo.Run(ctx, demo.Options{
		DataDir: *dataDir, Listen: *listen, Out: stdout,
		Logger: newLogger(stderr, level, "text"), Version: version(),
	})
}

func cmdBuffer(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, commandHelp("buffer"))
		return nil
	}
	if len(args) == 0 || args[0] != "stats" {
		fmt.Fprint(stderr, commandHelp("buffer"))
		return exitCode(2)
	}
	fs := newFlags("buffer stats", stderr)
	path := fs.String("config", "/etc/lintel/lintel.yaml", "config file")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	s, at, live, err := gateway.BufferStats(cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			At      time.Time    `json:"at"`
			Running bool         `json:"daemon_running"`
			Buffer  buffer.Stats `json:"buffer"`
		}{at, live, s})
	}
	source := "from the file (no gateway running)"
	if live {
		source = fmt.Sprintf("from the running gateway, as of %s", at.Format(time.RFC3339))
	}
	age := "-"
	if !s.Oldest.IsZero() {
		age = time.Since(s.Oldest).Round(time.Second).String()
	}
	fmt.Fprintf(stdout, "buffer %s\n", source)
	fmt.Fprintf(stdout, "  records      %d (%d high priority)\n", s.Records, s.High)
	fmt.Fprintf(stdout, "  bytes        %d\n", s.Bytes)
	fmt.Fprintf(stdout, "  oldest       %s\n", age)
	fmt.Fprintf(stdout, "  next seq     %d\n", s.NextSeq)
	fmt.Fprintf(stdout, "  drops        full %d, disk full %d, rejected %d, expired %d (since the gateway started)\n", s.Drops.Full, s.Drops.DiskFull, s.Drops.Rejected, s.Drops.Expired)
	if s.Quarantined != "" {
		fmt.Fprintf(stdout, "  QUARANTINED  a bad buffer file was moved to %s\n", s.Quarantined)
	}
	fmt.Fprintf(stdout, "  dead letters %d (refused by the cloud, not retried; %d deleted when the bucket was full)\n", s.DeadLetters, s.Drops.DeadLetters)
	if s.Salvaged > 0 || s.SalvageLost > 0 {
		fmt.Fprintf(stdout, "  salvaged     %d records from the bad file (%d unreadable)\n", s.Salvaged, s.SalvageLost)
	}
	if s.Problem != "" {
		fmt.Fprintf(stdout, "  PROBLEM      %s\n", s.Problem)
	}
	return nil
}

func cmdAudit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit", stderr)
	path := fs.String("config", "/etc/lintel/lintel.yaml", "config file")
	asJSON := fs.Bool("json", false, "print JSON")
	who := fs.String("user", "", "the service user the daemon runs as, by name or uid (default: the current user)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	uid := os.Geteuid()
	if *who != "" {
		u, err := user.Lookup(*who)
		if err != nil {
			if u, err = user.LookupId(*who); err != nil {
				return fmt.Errorf("--user %s: %w", *who, err)
			}
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	cfg, problems, err := config.LoadForAudit(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitCode(1)
	}
	findings := audit.Run(cfg, problems, audit.Options{ServiceUID: uid})
	if *asJSON {
		json.NewEncoder(stdout).Encode(findings)
	} else {
		printFindings(stdout, findings, false)
	}
	if len(audit.Failed(findings)) > 0 {
		return exitCode(1)
	}
	return nil
}

// printFindings writes one line per finding (and its fix), then a summary.
func printFindings(w io.Writer, findings []audit.Finding, onlyProblems bool) {
	count := map[audit.Status]int{}
	for _, f := range findings {
		count[f.Status]++
		if onlyProblems && f.Status == audit.Pass {
			continue
		}
		fmt.Fprintf(w, "%s  %-13s %s\n", f.Status, f.Check, f.Reason)
		if f.Fix != "" && f.Status != audit.Pass {
			fmt.Fprintf(w, "      %-13s fix: %s\n", "", f.Fix)
		}
	}
	fmt.Fprintf(w, "audit: %d FAIL, %d WARN, %d PASS\n", count[audit.Fail], count[audit.Warn], count[audit.Pass])
}

func cmdModbus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, commandHelp("modbus"))
		return nil
	}
	if len(args) == 0 || !slices.Contains([]string{"read", "write", "scan"}, args[0]) {
		fmt.Fprint(stderr, commandHelp("modbus"))
		return exitCode(2)
	}
	action := args[0]
	fs := newFlags("modbus "+action, stderr)
	url := fs.String("url", "", "tcp://host:502, rtu:///dev/ttyUSB0 or rtuovertcp://host:port")
	cfgPath := fs.String("config", "", "take the bus from this config (with --bus)")
	busName := fs.String("bus", "", "bus name in the config")
	baud := fs.Int("baud", 9600, "RTU baud rate")
	parity := fs.String("parity", "none", "RTU parity: none, even, odd")
	stopBits := fs.Int("stop-bits", 1, "RTU stop bits")
	timeout := fs.Duration("timeout", time.Second, "request timeout")
	unit := fs.Int("unit", 1, "unit id")
	table := fs.String("table", "holding", "coil, discrete, input, holding")
	address := fs.Int("address", 0, "register or bit address (zero-based)")
	typ := fs.String("type", "uint16", "bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string")
	order := fs.String("order", "ABCD", "ABCD, DCBA, BADC, CDAB")
	length := fs.Int("length", 1, "registers of a string")
	value := fs.String("value", "", "value to write, as JSON (true, 42, 21.5)")
	from := fs.Int("from", 1, "scan: first unit id")
	to := fs.Int("to", 247, "scan: last unit id")
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	serial := modbus.Serial{Baud: *baud, Parity: *parity, StopBits: *stopBits}
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		if *url, serial, *timeout, err = gateway.ModbusTarget(cfg, *busName); err != nil {
			return err
		}
	}
	if *url == "" {
		return errors.New("modbus: give --url, or --config and --bus")
	}
	conn, err := modbus.Dial(*url, serial, *timeout)
	if err != nil {
		return fmt.Errorf("modbus: %w", err)
	}
	defer conn.Close()
	if action == "scan" {
		found := 0
		err := conn.Scan(ctx, uint8(*from), uint8(*to), func(r modbus.ScanResult) {
			found++
			fmt.Fprintf(stdout, "unit %3d answers (%s)\n", r.Unit, r.Answer)
		})
		fmt.Fprintf(stdout, "%d unit(s) found between %d and %d\n", found, *from, *to)
		return err
	}
	t, err1 := modbus.ParseTable(*table)
	y, err2 := modbus.ParseType(*typ)
	o, err3 := modbus.ParseOrder(*order)
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	p := modbus.Point{Name: "point", Table: t, Address: uint16(*address), Type: y, Order: o, Length: uint16(*length)}
	if action == "write" {
		if err := conn.Write(uint8(*unit), p, *value); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "ok")
		return nil
	}
	v, err := conn.Read(uint8(*unit), p)
	if err != nil {
		return err
	}
	out, _ := json.Marshal(v)
	fmt.Fprintf(stdout, "unit %d %s %d (%s %s): %s\n", *unit, *table, *address, *typ, *order, out)
	return nil
}

func cmdPorts(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ports", stderr)
	byID := fs.String("by-id", "/dev/serial/by-id", "directory of stable port names")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	ports, err := serialline.Ports(*byID)
	if err != nil {
		return err
	}
	if len(ports) == 0 {
		fmt.Fprintln(stdout, "no serial ports found")
	}
	for _, p := range ports {
		line := p.Name
		if p.USB {
			line += fmt.Sprintf("  USB %s:%s serial %q %s", p.VID, p.PID, p.SerialNumber, p.Product)
		}
		if p.ByID != "" {
			line += "\n    stable name: " + p.ByID + "  (use this in the config)"
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}

func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", stderr)
	out := fs.String("out", "", "write NAME.key (private, 0600) and NAME.pub")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("keygen: --out NAME is required")
	}
	pub, err := command.GenerateKey(*out)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s.key (keep it offline, mode 0600) and %s.pub (list it under uplink.commands.signers)\nfingerprint %s\n",
		*out, *out, command.Fingerprint(pub))
	return nil
}

func cmdSign(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sign", stderr)
	keyFile := fs.String("key", "", "private key from lintel keygen")
	gw := fs.String("gateway", "", "gateway id")
	device := fs.String("device", "", "device name")
	point := fs.String("point", "", "point or command name")
	value := fs.String("value", "", `value as JSON, e.g. true, 21.5 or '{"door":"2"}'`)
	ttl := fs.Duration("ttl", time.Minute, "how long the command stays valid (the gateway accepts up to its max_ttl)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *keyFile == "" || *gw == "" || *device == "" || *point == "" || *value == "" {
		return errors.New("sign: --key, --gateway, --device, --point and --value are required")
	}
	if !json.Valid([]byte(*value)) {
		return fmt.Errorf("sign: --value %q is not JSON (quote strings: '\"2\"')", *value)
	}
	key, err := command.LoadPrivateKey(*keyFile)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	env, err := command.NewEnvelope(key, *gw, *device, *point, json.RawMessage(*value), *ttl)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	b, _ := json.Marshal(env)
	fmt.Fprintln(stdout, string(b))
	fmt.Fprintf(stderr, "topic: lintel/%s/%s/%s/set\n", *gw, *device, *point)
	return nil
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", "/etc/lintel/lintel.yaml", "config file")
	plan := fs.Bool("plan", false, "print each device's Modbus read requests")
	sample := fs.String("sample", "", "a captured serial log: warn on values of published fields that look like names or e-mail addresses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			fmt.Fprintf(stderr, "%s: %d problem(s)\n%v\n", *path, len(ps), ps)
		} else {
			fmt.Fprintln(stderr, err)
		}
		return exitCode(1)
	}
	warnings := cfg.Warnings
	if *sample != "" {
		f, err := os.Open(*sample)
		if err != nil {
			fmt.Fprintln(stderr, "check:", err)
			return exitCode(1)
		}
		ws, err := cfg.Sample(f, *sample)
		f.Close()
		if err != nil {
			fmt.Fprintln(stderr, "check:", err)
			return exitCode(1)
		}
		warnings = append(warnings, ws...)
	}
	for _, w := range warnings {
		fmt.Fprintln(stdout, "warning:", w.Error())
	}
	if *plan {
		plans, err := gateway.Plans(cfg)
		if err != nil {
			return err
		}
		for _, bus := range slices.Sorted(maps.Keys(plans)) {
			fmt.Fprintf(stdout, "bus %s\n", bus)
			for _, l := range plans[bus] {
				fmt.Fprintln(stdout, "  "+l)
			}
		}
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

func cmdPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, commandHelp("passwd"))
		return nil
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, commandHelp("passwd"))
		return exitCode(2)
	}
	action := args[0]
	fs := newFlags("passwd "+action, stderr)
	file := fs.String("file", "/etc/lintel/users", "users file")
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	users, err := localbroker.LoadUsers(*file)
	if errors.Is(err, os.ErrNotExist) && action == "add" {
		users, err = localbroker.NewUsers(), nil
	}
	if err != nil {
		return err
	}
	switch action {
	case "list":
		for _, n := range users.Names() {
			fmt.Fprintln(stdout, n)
		}
		return nil
	case "add", "remove":
		if fs.NArg() != 1 {
			return fmt.Errorf("passwd %s: want exactly one user name", action)
		}
		name := fs.Arg(0)
		if action == "remove" {
			if !users.Remove(name) {
				return fmt.Errorf("no user %q in %s", name, *file)
			}
		} else {
			pw, err := readPassword(stdin, stderr)
			if err != nil {
				return err
			}
			if err := users.Set(name, pw); err != nil {
				return err
			}
		}
		return users.WriteFile(*file)
	}
	return fmt.Errorf("passwd: unknown action %q; want add, remove or list", action)
}

// readPassword prompts without echo on a terminal, else reads one line.
func readPassword(stdin io.Reader, stderr io.Writer) ([]byte, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "password: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		return pw, err
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		return nil, fmt.Errorf("reading password from stdin: %w", err)
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}

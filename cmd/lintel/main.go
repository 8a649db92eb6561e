package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
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

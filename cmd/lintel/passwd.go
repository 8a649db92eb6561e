package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/lintel-gw/lintel/localbroker"
)

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

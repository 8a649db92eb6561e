package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lintel-gw/lintel/gateway/command"
)

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

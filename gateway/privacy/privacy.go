package privacy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Rule is what happens to one field. It is a plain string (an alias) so
// that an adapter can hold rules and call Key.Apply through an interface of
// its own without importing this package.
type Rule = string

// The rules.
const (
	Keep         Rule = "keep"
	Pseudonymize Rule = "pseudonymize"
	Drop         Rule = "drop"
)

// ParseRule parses a rule as written in the config.
func ParseRule(s string) (Rule, error) {
	r := Rule(s)
	if !slices.Contains([]Rule{Keep, Pseudonymize, Drop}, r) {
		return "", fmt.Errorf("unknown privacy rule %q; want keep, pseudonymize or drop", s)
	}
	return r, nil
}

// keySize is the site key length in bytes.
const keySize = 32

// Key is a site's pseudonymisation key.
type Key struct {
	k []byte
}

// LoadOrCreateKey reads the key file, or creates it with a new random key
// (mode 0600) if it does not exist. A key file readable by others is refused.
func LoadOrCreateKey(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k := make([]byte, keySize)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		// O_EXCL: two starts racing must not write two different keys.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("privacy key %s: %w", path, err)
		}
		_, werr := f.Write([]byte(hex.EncodeToString(k) + "\n"))
		if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
			return nil, fmt.Errorf("privacy key %s: %w", path, err)
		}
		return &Key{k: k}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("privacy key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("privacy key %s is readable by others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != keySize {
		return nil, fmt.Errorf("privacy key %s: want %d hex-encoded bytes", path, keySize)
	}
	return &Key{k: k}, nil
}

// NewKey wraps raw key bytes (tests).
func NewKey(k []byte) *Key { return &Key{k: append([]byte(nil), k...)} }

// Pseudonym returns "p:" and 32 hex digits of HMAC-SHA256(key, value).
func (k *Key) Pseudonym(value string) string {
	m := hmac.New(sha256.New, k.k)
	m.Write([]byte(value))
	return "p:" + hex.EncodeToString(m.Sum(nil)[:16])
}

// Apply returns the fields as they may be published: each field's rule
// applied, fields without a rule kept.
func (k *Key) Apply(fields map[string]string, rules map[string]Rule) map[string]string {
	out := make(map[string]string, len(fields))
	for name, v := range fields {
		switch rules[name] {
		case Drop:
		case Pseudonymize:
			out[name] = k.Pseudonym(v)
		default:
			out[name] = v
		}
	}
	return out
}

// personalName matches field names that usually hold personal data.
var personalName = regexp.MustCompile(`(?i)(name|card|badge|user|person|email|mail|phone|mobile|pin|plate|employee)`)

// LooksPersonal reports whether a field name suggests personal data, for
// `lintel check` and `lintel audit`.
func LooksPersonal(field string) bool { return personalName.MatchString(field) }

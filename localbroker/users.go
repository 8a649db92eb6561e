package localbroker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Users holds bcrypt password hashes by user name, read from a file of
// `name:<bcrypt hash>` lines (the htpasswd -B format; `#` starts a comment).
type Users struct {
	hashes map[string][]byte
}

// dummyHash is compared against for unknown users so that a wrong name costs
// as much time as a wrong password.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("lintel-no-such-user"), bcrypt.DefaultCost)

// LoadUsers reads a users file.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	u, err := ParseUsers(f)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return u, nil
}

// ParseUsers parses users file content. Every line must be a user name and a
// bcrypt hash; plain-text or other hashes are refused.
func ParseUsers(r io.Reader) (*Users, error) {
	u := &Users{hashes: map[string][]byte{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("line %d: want name:<bcrypt hash>", n)
		}
		if err := validUserName(name); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: password is not a bcrypt hash (use `lintel passwd`)", n, name)
		}
		if _, dup := u.hashes[name]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice", n, name)
		}
		u.hashes[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return u, nil
}

func validUserName(name string) error {
	if strings.ContainsAny(name, "+#/:\x00 \t") {
		return fmt.Errorf("user name %q: must not contain + # / : or spaces", name)
	}
	return nil
}

// Check reports whether password is the user's password. It takes about the
// same time whether or not the user exists.
func (u *Users) Check(name string, password []byte) bool {
	hash, ok := u.hashes[name]
	if !ok || name == "" {
		bcrypt.CompareHashAndPassword(dummyHash, password)
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, password) == nil
}

// Names returns the user names, sorted.
func (u *Users) Names() []string {
	names := make([]string, 0, len(u.hashes))
	for n := range u.hashes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Set adds or replaces a user's password (hashed with bcrypt).
func (u *Users) Set(name string, password []byte) error {
	if err := validUserName(name); err != nil || name == "" {
		return fmt.Errorf("invalid user name %q", name)
	}
	if len(password) < 8 {
		return errors.New("password must have at least 8 characters")
	}
	hash, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	u.hashes[name] = hash
	return nil
}

// Remove deletes a user; it reports whether the user existed.
func (u *Users) Remove(name string) bool {
	_, ok := u.hashes[name]
	delete(u.hashes, name)
	return ok
}

// WriteFile writes the users file atomically with mode 0600.
func (u *Users) WriteFile(path string) error {
	var b bytes.Buffer
	for _, n := range u.Names() {
		fmt.Fprintf(&b, "%s:%s\n", n, u.hashes[n])
	}
	tmp := path + ".tmp"
	os.Remove(tmp) // WriteFile keeps the mode of an existing file
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// NewUsers returns an empty set of users.
func NewUsers() *Users { return &Users{hashes: map[string][]byte{}} }

package command

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// MaxEnvelope bounds a command payload in bytes.
const MaxEnvelope = 4096

// Envelope is a command's payload (ARCHITECTURE §4).
type Envelope struct {
	ID      string          `json:"id"`
	Value   json.RawMessage `json:"value"`
	Expires string          `json:"expires,omitempty"` // RFC 3339
	Nonce   string          `json:"nonce,omitempty"`
	Sig     string          `json:"sig,omitempty"` // base64 Ed25519 over Canonical
}

// members is every member an envelope may have, spelt exactly.
var members = map[string]bool{"id": true, "value": true, "expires": true, "nonce": true, "sig": true}

// ParseEnvelope decodes a payload strictly: bounded size, no unknown or
// duplicate members anywhere, member names spelt exactly (encoding/json
// alone would take "ID" or "ſig" for id and sig), an id and a value.
func ParseEnvelope(payload []byte) (Envelope, error) {
	var e Envelope
	if len(payload) > MaxEnvelope {
		return e, fmt.Errorf("%d bytes; at most %d", len(payload), MaxEnvelope)
	}
	if _, err := canonicalJSON(payload); err != nil { // refuses duplicates at any depth
		return e, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		return e, err
	}
	for name := range top {
		if !members[name] {
			return e, fmt.Errorf("unknown member %q", name)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, err
	}
	if dec.More() {
		return e, errors.New("trailing data after the object")
	}
	if e.ID == "" || len(e.ID) > 128 || strings.ContainsFunc(e.ID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return e, errors.New("id must be 1 to 128 printable characters")
	}
	if len(e.Value) == 0 || string(e.Value) == "null" {
		return e, errors.New("value is missing")
	}
	if len(e.Nonce) > 128 || strings.ContainsFunc(e.Nonce, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		return e, errors.New("nonce must be at most 128 printable ASCII characters")
	}
	return e, nil
}

// Canonical is what is signed: the target and every member but sig, one per
// line, the value re-encoded compactly with sorted keys and every number as
// its exact text (2^53 and 2^53+1 differ; 1 and 1.0 differ). A value with a
// duplicate key has no canonical form.
func Canonical(gateway, device, point string, e Envelope) ([]byte, error) {
	value, err := canonicalJSON(e.Value)
	if err != nil {
		return nil, err
	}
	fields := []string{"lintel-command-v1", gateway, device, point, string(value), e.ID, e.Expires, e.Nonce}
	return []byte(strings.Join(fields, "\n")), nil
}

// canonicalJSON re-encodes one JSON value: no insignificant space, object
// keys sorted (by bytes) and unique, strings as encoding/json writes them,
// numbers as their exact text.
func canonicalJSON(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out bytes.Buffer
	if err := canonicalValue(dec, &out); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the value")
	}
	return out.Bytes(), nil
}

func canonicalValue(dec *json.Decoder, out *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '[':
			out.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out.WriteByte(',')
				}
				if err := canonicalValue(dec, out); err != nil {
					return err
				}
			}
			out.WriteByte(']')
		case '{':
			members := map[string][]byte{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string) // the decoder only yields string keys
				if _, dup := members[key]; dup {
					return fmt.Errorf("duplicate member %q", key)
				}
				var v bytes.Buffer
				if err := canonicalValue(dec, &v); err != nil {
					return err
				}
				members[key] = v.Bytes()
			}
			out.WriteByte('{')
			for i, k := range slices.Sorted(maps.Keys(members)) {
				if i > 0 {
					out.WriteByte(',')
				}
				kb, _ := json.Marshal(k)
				out.Write(kb)
				out.WriteByte(':')
				out.Write(members[k])
			}
			out.WriteByte('}')
		}
		if _, err := dec.Token(); err != nil { // the closing ] or }
			return err
		}
	case json.Number:
		out.WriteString(t.String())
	default: // string, bool, nil
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		out.Write(b)
	}
	return nil
}

// Sign fills in sig for the envelope addressed to gateway/device/point.
func Sign(key ed25519.PrivateKey, gateway, device, point string, e *Envelope) error {
	msg, err := Canonical(gateway, device, point, *e)
	if err != nil {
		return err
	}
	e.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
	return nil
}

// NewEnvelope makes a signed envelope valid for ttl, with a random id and nonce.
func NewEnvelope(key ed25519.PrivateKey, gateway, device, point string, value json.RawMessage, ttl time.Duration) (Envelope, error) {
	e := Envelope{ID: randomHex(8), Value: value, Expires: time.Now().Add(ttl).UTC().Format(time.RFC3339), Nonce: randomHex(16)}
	return e, Sign(key, gateway, device, point, &e)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Signer is a public key allowed to sign critical commands.
type Signer struct {
	Name string // the key file's name, for the audit log
	Key  ed25519.PublicKey
}

// Fingerprint identifies a public key in logs: the first 8 bytes of its SHA-256.
func Fingerprint(k ed25519.PublicKey) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey writes name.key (PKCS#8 PEM, mode 0600) and name.pub (PKIX PEM).
func GenerateKey(name string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(name+".key", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, werr := f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	if err := errors.Join(werr, f.Close()); err != nil {
		return nil, err
	}
	if err := os.WriteFile(name+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	return pub, nil
}

// LoadPrivateKey reads a PKCS#8 PEM Ed25519 private key.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

// LoadSigner reads a PKIX PEM Ed25519 public key.
func LoadSigner(path string) (Signer, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return Signer{}, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return Signer{}, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return Signer{}, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	name := path[strings.LastIndex(path, "/")+1:]
	return Signer{Name: strings.TrimSuffix(name, ".pub"), Key: pub}, nil
}

func readPEM(path, kind string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != kind {
		return nil, fmt.Errorf("%s: want a PEM %q block", path, kind)
	}
	return b.Bytes, nil
}

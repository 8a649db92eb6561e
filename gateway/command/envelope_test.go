package command

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Issue 11 item 11: what is signed is exactly what is parsed.
func TestCanonicalFormIsExact(t *testing.T) {
	base := Envelope{ID: "c1", Expires: "2030-01-01T00:00:00Z", Nonce: "n1"}
	canon := func(value string) string {
		e := base
		e.Value = json.RawMessage(value)
		b, err := Canonical("gw", "d", "p", e)
		if err != nil {
			t.Fatalf("%s: %v", value, err)
		}
		return string(b)
	}
	for _, pair := range [][2]string{
		{`9007199254740992`, `9007199254740993`}, // 2^53, 2^53+1
		{`{"n":9007199254740992}`, `{"n":9007199254740993}`},
		{`0.1`, `0.10000000000000001`},
		{`1`, `1.0`},
	} {
		if canon(pair[0]) == canon(pair[1]) {
			t.Errorf("%s and %s sign the same", pair[0], pair[1])
		}
	}
	if a, b := canon(`{"b":1, "a":[true, null, "x"]}`), canon(`{"a":[true,null,"x"],"b":1}`); a != b {
		t.Errorf("key order and spaces change the canonical form: %q vs %q", a, b)
	}
	e := base
	e.Value = json.RawMessage(`{"door":"1","door":"2"}`)
	if _, err := Canonical("gw", "d", "p", e); err == nil {
		t.Error("duplicate keys in the value have a canonical form")
	}

	// A signature over 2^53 does not verify for 2^53+1.
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	e = Envelope{ID: "c2", Value: json.RawMessage(`9007199254740992`), Expires: base.Expires, Nonce: "n2"}
	if err := Sign(key, "gw", "d", "p", &e); err != nil {
		t.Fatal(err)
	}
	e.Value = json.RawMessage(`9007199254740993`)
	msg, _ := Canonical("gw", "d", "p", e)
	sig, _ := base64.StdEncoding.DecodeString(e.Sig)
	if ed25519.Verify(pub, msg, sig) {
		t.Fatal("a signature over 2^53 verifies for 2^53+1")
	}
}

func TestEnvelopeMembersAreExact(t *testing.T) {
	for _, bad := range []string{
		`{"id":"a","id":"b","value":1}`,
		`{"id":"a","value":1,"value":2}`,
		`{"id":"a","value":{"door":"1","door":"2"}}`,
		`{"id":"a","value":[{"x":1,"x":1}]}`,
		`{"ID":"a","value":1}`,
		`{"id":"a","Value":1}`,
		`{"id":"a","value":1,"SIG":"AAAA"}`,
		`{"id":"a","value":1,"nonce":"a\nb"}`,
		`{"id":"a","value":1,"ſig":"AAAA"}`,
	} {
		if e, err := ParseEnvelope([]byte(bad)); err == nil {
			t.Errorf("%s accepted as %+v", bad, e)
		}
	}
	if _, err := ParseEnvelope([]byte(`{"id":"a","value":{"door":"1"},"expires":"2030-01-01T00:00:00Z","nonce":"n","sig":"AAAA"}`)); err != nil {
		t.Fatalf("valid envelope refused: %v", err)
	}
}

// A freshly signed envelope, as `lintel sign` makes it, still parses and
// verifies.
func TestNewEnvelopeRoundTrip(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	e, err := NewEnvelope(key, "gw", "d", "p", json.RawMessage(`{"b": 9007199254740993, "a": "x"}`), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	got, err := ParseEnvelope(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	msg, _ := Canonical("gw", "d", "p", got)
	sig, _ := base64.StdEncoding.DecodeString(got.Sig)
	if !ed25519.Verify(pub, msg, sig) || !strings.Contains(string(msg), "9007199254740993") {
		t.Fatalf("round trip does not verify: %q", msg)
	}
}

package serialline

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"testing"

	"github.com/lintel-gw/lintel/adapters"
)

func fp(f float64) *float64 { return &f }

// Issue 11 item 8: parameters reach the device in one canonical, printable
// form or not at all.
func TestParameterEncoding(t *testing.T) {
	door := Param{Min: fp(1), Max: fp(4)}
	level := Param{Min: fp(0), Max: fp(2.5)}
	word := Param{Pattern: regexp.MustCompile(`[A-Z]+`)}
	text := Param{Pattern: regexp.MustCompile(`.*`)}
	label := Param{Unicode: true}
	cases := []struct {
		p     Param
		value string // JSON
		want  string // "" = refused
	}{
		{door, `"3"`, "3"},
		{door, `3`, "3"},
		{door, `4.0`, "4"},
		{door, `"NaN"`, ""},
		{door, `"Inf"`, ""},
		{door, `"-Inf"`, ""},
		{door, `"0x1p1"`, ""},
		{door, `"2.5"`, ""},
		{door, `2.5`, ""},
		{door, `"1e0"`, ""},
		{door, `1e0`, ""},
		{door, `"+3"`, ""},
		{door, `" 3"`, ""},
		{door, `"03"`, ""},
		{door, `"5"`, ""},
		{door, `0`, ""},
		{door, `true`, ""},
		{level, `"2.5"`, "2.5"},
		{level, `0.50`, "0.5"},
		{level, `-0`, "0"},
		{level, `"2.6"`, ""},
		{level, `"0.1e1"`, ""},
		{word, `"WORLD"`, "WORLD"},
		{word, `"hi WORLD; UNLOCK 1"`, ""},
		{word, `"WORLD "`, ""},
		{text, `"a\u0085b"`, ""},
		{text, `"a\u2028b"`, ""},
		{text, `"caf\u00e9"`, ""},
		{text, `"a\tb"`, ""},
		{text, `"hello, world"`, "hello, world"},
		{label, `"caf\u00e9"`, "café"},
		{label, `"a\u2028b"`, ""},
		{label, `"a\u0085b"`, ""},
		{label, `"a\u00a0b"`, ""},
	}
	for _, c := range cases {
		line, err := New(Config{Name: "t", Devices: []Device{{Name: "d", Commands: []Command{{Name: "c", Send: "SET {x}\r\n", Params: map[string]Param{"x": c.p}}}}}}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		cmd := line.cfg.Devices[0].Commands[0]
		got, err := cmd.bind(json.RawMessage(`{"x":` + c.value + `}`))
		switch {
		case c.want == "" && err == nil:
			t.Errorf("%+v %s: accepted as %q", c.p, c.value, got["x"])
		case c.want != "" && err != nil:
			t.Errorf("%+v %s: %v, want %q", c.p, c.value, err, c.want)
		case c.want != "" && got["x"] != c.want:
			t.Errorf("%+v %s: sent %q, want %q", c.p, c.value, got["x"], c.want)
		}
	}
}

func FuzzParameterEncoder(f *testing.F) {
	for _, s := range []string{`"3"`, `3`, `"NaN"`, `"0x1p1"`, `"2.5"`, `"1e0"`, `"+3"`, `"hi WORLD; UNLOCK 1"`, `"\u2028"`, `"\u0085"`, `1E400`, `-0.0`} {
		f.Add(s, 1.0, 4.0, `[A-Z0-9]+`)
	}
	f.Add(`"0.25"`, 0.0, 2.5, `.*`)
	f.Add(`"AB"`, math.NaN(), math.NaN(), `A|AB`)
	f.Fuzz(func(t *testing.T, value string, lo, hi float64, pattern string) {
		p := Param{}
		if !math.IsNaN(lo) && !math.IsInf(lo, 0) {
			p.Min = &lo
		}
		if !math.IsNaN(hi) && !math.IsInf(hi, 0) {
			p.Max = &hi
		}
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		p.Pattern = re
		line, err := New(Config{Name: "f", Devices: []Device{{Name: "d", Commands: []Command{{Name: "c", Send: "{x}", Params: map[string]Param{"x": p}}}}}}, quiet())
		if err != nil {
			return
		}
		got, err := line.cfg.Devices[0].Commands[0].bind(json.RawMessage(`{"x":` + value + `}`))
		if err != nil {
			return
		}
		s := got["x"]
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				t.Fatalf("sent %q: not printable ASCII", s)
			}
		}
		if !regexp.MustCompile(`^(?:` + pattern + `)$`).MatchString(s) {
			t.Fatalf("sent %q, which does not match the whole of %q", s, pattern)
		}
		if p.Min != nil || p.Max != nil {
			n, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(n) || p.Min != nil && n < *p.Min || p.Max != nil && n > *p.Max {
				t.Fatalf("sent %q outside [%v, %v]", s, lo, hi)
			}
			if !regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$`).MatchString(s) {
				t.Fatalf("sent %q: not a canonical decimal", s)
			}
		}
	})
}

// Issue 11 item 1: commands need a signature unless they opt out, and a
// critical command never opts out.
func TestCheckWriteSaysWhetherToSign(t *testing.T) {
	line, err := New(Config{Name: "t", Devices: []Device{{Name: "d", Commands: []Command{
		{Name: "hold", Send: "HOLD\r\n"},
		{Name: "beep", Send: "BEEP\r\n", UnsignedWrites: true},
		{Name: "unlock", Send: "UNLOCK\r\n", Critical: true, UnsignedWrites: true},
	}}}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"hold": true, "beep": false, "unlock": true, "nope": true} {
		got, err := line.CheckWrite(adapters.WriteRequest{Device: "d", Point: name, Value: json.RawMessage(`{}`)})
		if got != want || (err != nil) != (name == "nope") {
			t.Errorf("%s: needsSignature=%v err=%v, want %v", name, got, err, want)
		}
	}
}

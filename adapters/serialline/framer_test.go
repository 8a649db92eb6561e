package serialline

import (
	"bytes"
	"strings"
	"testing"
)

func feedAll(fr *Framer, chunks ...string) []string {
	var out []string
	for _, c := range chunks {
		for _, f := range fr.Feed([]byte(c)) {
			out = append(out, string(f))
		}
	}
	return out
}

func TestDelimitedFramesAcrossChunksAndResync(t *testing.T) {
	fr := NewFramer(Framing{Kind: Delimited, Delimiter: []byte("\r\n"), MaxFrame: 16})
	got := feedAll(fr, "EVT 1", " OK\r", "\nEVT 2 OK\r\n", strings.Repeat("x", 40), "yy\r\nEVT 3 OK\r\n\r\n")
	want := []string{"EVT 1 OK", "EVT 2 OK", "EVT 3 OK"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("frames %q, want %q", got, want)
	}
	if fr.Dropped != 1 {
		t.Fatalf("dropped %d, want 1 over-long frame", fr.Dropped)
	}
}

func TestSTXETXSkipsGarbageAndUnterminatedFrames(t *testing.T) {
	fr := NewFramer(Framing{Kind: STXETX, MaxFrame: 32})
	got := feedAll(fr, "noise\x02A 1\x03", "\x02B 2", "\x03junk\x02never ends\x02C 3\x03")
	if strings.Join(got, "|") != "A 1|B 2|C 3" {
		t.Fatalf("frames %q", got)
	}
	if fr.Dropped != 3 {
		t.Fatalf("dropped %d, want 3 (leading noise, junk, unterminated frame)", fr.Dropped)
	}
}

func TestFixedAndLengthPrefix(t *testing.T) {
	fixed := NewFramer(Framing{Kind: FixedLength, Length: 3})
	if got := feedAll(fixed, "abcd", "efgh"); strings.Join(got, "|") != "abc|def" {
		t.Fatalf("fixed %q", got)
	}
	lp := NewFramer(Framing{Kind: LengthPrefix, LengthBytes: 1, MaxFrame: 8})
	if got := feedAll(lp, "\x03ab", "c\x00\xff\x02hi"); strings.Join(got, "|") != "abc|hi" {
		t.Fatalf("length-prefix %q (dropped %d)", got, lp.Dropped)
	}
	lp2 := NewFramer(Framing{Kind: LengthPrefix, LengthBytes: 2, MaxFrame: 300})
	payload := bytes.Repeat([]byte("z"), 258)
	if got := lp2.Feed(append([]byte{0x01, 0x02}, payload...)); len(got) != 1 || len(got[0]) != 258 {
		t.Fatalf("2-byte prefix: %d frames", len(got))
	}
}

func FuzzFramer(f *testing.F) {
	f.Add(0, []byte("EVT 1\r\nEVT 2\r\n"))
	f.Add(1, []byte("\x02A\x03\x02B"))
	f.Add(3, []byte("\x02hi\x05hello"))
	f.Fuzz(func(t *testing.T, kind int, data []byte) {
		kinds := []Framing{
			{Kind: Delimited, MaxFrame: 64},
			{Kind: STXETX, MaxFrame: 64},
			{Kind: FixedLength, Length: 5, MaxFrame: 64},
			{Kind: LengthPrefix, LengthBytes: 1, MaxFrame: 64},
		}
		fr := NewFramer(kinds[(kind%4+4)%4])
		total := 0
		// Feed in uneven chunks; no frame may exceed MaxFrame and the
		// buffer must stay bounded.
		for i := 0; i < len(data); i += 7 {
			for _, frame := range fr.Feed(data[i:min(i+7, len(data))]) {
				if len(frame) > 64 || len(frame) == 0 {
					t.Fatalf("frame of %d bytes", len(frame))
				}
				total += len(frame)
			}
			if len(fr.buf) > 64+8 {
				t.Fatalf("buffer grew to %d", len(fr.buf))
			}
		}
		if total > len(data) {
			t.Fatalf("framed %d bytes out of %d", total, len(data))
		}
	})
}

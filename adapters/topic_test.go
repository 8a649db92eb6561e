package adapters

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestValidTopicLevel(t *testing.T) {
	for _, ok := range []string{"door_1_open", "ahu-1", "Zone 3 (north)", "température", strings.Repeat("x", MaxTopicLevel)} {
		if err := ValidTopicLevel(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "door_1/+/#_open", "+", "#", "a/b", "$SYS", "x$", "a\x00b", "a\x1bb", "a\u0085b", "\xff", "a\uFFFEb", "a\uFDD0", strings.Repeat("x", MaxTopicLevel+1)} {
		if err := ValidTopicLevel(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if ValidMessageTopic(Message{Device: "d", Point: StatusPoint}) != nil || ValidMessageTopic(Message{Device: "d", Point: "$x"}) == nil || ValidMessageTopic(Message{Device: "+", Point: "p"}) == nil {
		t.Fatal("ValidMessageTopic: $status is the one reserved point")
	}
}

func FuzzValidTopicLevel(f *testing.F) {
	for _, s := range []string{"door_1_open", "door_1/+/#_open", "$SYS", "a\x00", "\xff", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidTopicLevel(s) != nil {
			return
		}
		if s == "" || !utf8.ValidString(s) || len(s) > MaxTopicLevel || strings.ContainsAny(s, "/+#$\x00") || strings.ContainsFunc(s, unicode.IsControl) {
			t.Fatalf("accepted %q", s)
		}
		if levels := strings.Split("lintel/gw/dev/"+s, "/"); len(levels) != 4 || levels[3] != s {
			t.Fatalf("%q changes the topic's levels", s)
		}
	})
}

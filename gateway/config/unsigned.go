package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
)

// UnsignedTarget is a writable point or a serial-line command that the
// config lets be written without a signature (unsigned_writes: true).
type UnsignedTarget struct {
	Path string // e.g. devices[1].points[3]
	// Where is the file, line and key path of its unsigned_writes key, e.g.
	// "/etc/lintel/profiles/io.yaml:4: points[2].unsigned_writes" for a
	// point from a profile.
	Where  string
	Kind   string // "point" or "command"
	Device string
	Name   string
	// DoorLike says what suggests a door, lock, alarm or relay, e.g.
	// `its name suggests a door, lock, alarm or relay ("release")`; "" when
	// nothing does.
	DoorLike string
}

// UnsignedTargets lists every point and command written without a
// signature, in config order. Every other writable target needs a signed
// command.
func (c *Config) UnsignedTargets() []UnsignedTarget {
	var out []UnsignedTarget
	for i, d := range c.Devices {
		for j, p := range d.Points {
			if p.Writable && p.UnsignedWrites {
				out = append(out, UnsignedTarget{Path: fmt.Sprintf("devices[%d].points[%d]", i, j), Kind: "point",
					Device: d.Name, Name: p.Name, DoorLike: pointDoorLike(d, p)})
			}
		}
		for j, cmd := range d.Commands {
			if cmd.UnsignedWrites {
				out = append(out, UnsignedTarget{Path: fmt.Sprintf("devices[%d].commands[%d]", i, j), Kind: "command",
					Device: d.Name, Name: cmd.Name, DoorLike: commandDoorLike(d, cmd)})
			}
		}
	}
	for i := range out {
		p := Problem{Path: out[i].Path + ".unsigned_writes"}
		c.locate(&p)
		out[i].Where = fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Path)
	}
	return out
}

const doorLikeWhat = "a door, lock, alarm or relay"

func pointDoorLike(d Device, p Point) string {
	if w := doorWord(p.Name); w != "" {
		return fmt.Sprintf("its name suggests %s (%q)", doorLikeWhat, w)
	}
	if w := doorWord(d.Name); w != "" {
		return fmt.Sprintf("its device name suggests %s (%q)", doorLikeWhat, w)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		if w := doorWord(p.Labels[k]); w != "" {
			return fmt.Sprintf("label %q suggests %s (%q)", p.Labels[k], doorLikeWhat, w)
		}
	}
	if p.Table == "coil" {
		return "table coil suggests a relay (a coil is usually a relay output)"
	}
	return ""
}

func commandDoorLike(d Device, c Command) string {
	if w := doorWord(c.Name); w != "" {
		return fmt.Sprintf("its name suggests %s (%q)", doorLikeWhat, w)
	}
	if w := doorWord(d.Name); w != "" {
		return fmt.Sprintf("its device name suggests %s (%q)", doorLikeWhat, w)
	}
	if w := doorWord(c.Send); w != "" {
		return fmt.Sprintf("its send text suggests %s (%q)", doorLikeWhat, w)
	}
	return ""
}

// doorWords are the words (whole words, in any inflection: locks, locked,
// locking) that suggest a target opens a door or gate, locks or releases
// something, arms or disarms an alarm, or switches a relay or sounder.
var doorWords = []string{
	"door", "gate", "garage", "barrier", "turnstile", "entry", "egress", "access",
	"lock", "unlock", "maglock", "deadbolt", "bolt", "latch", "strike", "release", "opener",
	"alarm", "arm", "disarm", "intrusion", "siren", "sounder",
	"relay", "rly",
}

// doorStems also match inside a longer word ("doorrelease", "alarmzone"):
// they are long or distinctive enough not to hide in unrelated words (which
// "lock" does in clock and block, "arm" in warm, "door" in outdoor).
var doorStems = []string{"relay", "release", "alarm", "latch", "disarm", "unlock", "maglock", "deadbolt", "turnstile", "intrusion"}

// doorWord returns the first word of text that suggests a door-like target,
// or "". Words are split at non-alphanumerics, case changes (MagLock) and
// between letters and digits (door1).
func doorWord(text string) string {
	for _, w := range words(text) {
		t := strings.ToLower(w)
		for _, base := range []string{t, strings.TrimSuffix(t, "s"), strings.TrimSuffix(t, "es"), strings.TrimSuffix(t, "ed"),
			strings.TrimSuffix(t, "d"), strings.TrimSuffix(t, "ing"), strings.TrimSuffix(t, "ing") + "e"} {
			if slices.Contains(doorWords, base) {
				return t
			}
		}
		if strings.HasPrefix(t, "door") {
			return t
		}
		for _, s := range doorStems {
			if strings.Contains(t, s) {
				return t
			}
		}
	}
	return ""
}

func words(text string) []string {
	var out []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			out = append(out, string(cur))
			cur = cur[:0]
		}
	}
	for _, r := range text {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if n := len(cur); n > 0 {
			prev := cur[n-1]
			if (unicode.IsLower(prev) && unicode.IsUpper(r)) || unicode.IsDigit(prev) != unicode.IsDigit(r) {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return out
}

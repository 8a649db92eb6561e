package config

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A serial-line event's point template ("door_{door}_open") becomes one MQTT
// topic level once its placeholders are filled from the frame. A capture
// that can hold "/" forges extra levels, "+" or "#" make the publish invalid
// (the cloud broker drops the session), "$" marks broker topics, and braces
// would let one field expand another (serialline fills fields one after the
// other). So check proves from the pattern itself, not from samples, which
// characters each capture can hold.

// templateProblem is why a point template could fill an invalid topic level;
// key is the event key to fix ("match" or "point").
type templateProblem struct{ key, msg string }

func (p *templateProblem) Error() string { return p.key + ": " + p.msg }

// forbiddenInLevel are the characters a filled topic level must not hold,
// with how messages name them, in message order.
var forbiddenInLevel = []struct {
	name   string
	lo, hi rune
}{
	{`"/"`, '/', '/'}, {`"+"`, '+', '+'}, {`"#"`, '#', '#'}, {`"$"`, '$', '$'},
	{"NUL", 0, 0}, {`"{"`, '{', '{'}, {`"}"`, '}', '}'},
	{"control characters", 1, 0x1f}, {"control characters", 0x7f, 0x9f},
	// regexp matches a byte that is not UTF-8 as U+FFFD, so a capture that
	// can match U+FFFD can hold invalid UTF-8.
	{"invalid UTF-8", utf8.RuneError, utf8.RuneError},
}

// checkTopicTemplate returns nil when no frame that re matches can fill
// template with an empty or invalid topic level.
func checkTopicTemplate(re *regexp.Regexp, template string) *templateProblem {
	if bad := forbiddenIn([][2]rune(runesOf(placeholderRE.ReplaceAllString(template, "")))); bad != "" {
		return &templateProblem{"point", fmt.Sprintf("the point template %q holds %s; a point name is one topic level: use letters, digits, '-', '_' or '.'", template, bad)}
	}
	tree, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return &templateProblem{"match", fmt.Sprintf("invalid pattern: %v", err)}
	}
	literal := placeholderRE.ReplaceAllString(template, "") != ""
	allEmpty := true
	for _, m := range placeholderRE.FindAllStringSubmatch(template, -1) {
		name := m[1]
		set, empty, found := capture(tree, name)
		if !found {
			return &templateProblem{"point", fmt.Sprintf("template uses {%s}, which the pattern does not capture", name)}
		}
		src := groupSource(re.String(), name)
		if bad := forbiddenIn(set); bad != "" {
			return &templateProblem{"match", fmt.Sprintf("the point template %q fills a topic level from {%s}, which %s lets hold %s; constrain it, e.g. (?P<%s>\\d+) or (?P<%s>[A-Za-z0-9_-]+)",
				template, name, src, bad, name, name)}
		}
		allEmpty = allEmpty && empty
	}
	if !literal && allEmpty {
		names := placeholderRE.FindAllString(template, -1)
		if len(names) == 0 {
			return &templateProblem{"point", "the point template is empty"}
		}
		return &templateProblem{"match", fmt.Sprintf("%s can be empty (optional, or * instead of +), and the point template %q would then be an empty topic level; make the capture required and non-empty, e.g. (?P<%s>\\d+)",
			strings.Join(names, " and "), template, strings.Trim(names[0], "{}"))}
	}
	return nil
}

// runesOf is the set of runes of s as ranges.
func runesOf(s string) [][2]rune {
	var set [][2]rune
	for _, r := range s {
		set = append(set, [2]rune{r, r})
	}
	return set
}

// forbiddenIn names the forbidden characters that set holds, or "".
func forbiddenIn(set [][2]rune) string {
	var names []string
	for _, f := range forbiddenInLevel {
		for _, r := range set {
			if r[0] <= f.hi && f.lo <= r[1] {
				if len(names) == 0 || names[len(names)-1] != f.name {
					names = append(names, f.name)
				}
				break
			}
		}
	}
	return strings.Join(names, ", ")
}

// capture returns the characters the named group can match, whether the
// field can be empty (the group matches "" or may not take part in the
// match), and whether the group exists. Repeated names are merged.
func capture(re *syntax.Regexp, name string) (set [][2]rune, empty, found bool) {
	var walk func(re *syntax.Regexp, optional bool)
	walk = func(re *syntax.Regexp, optional bool) {
		if re.Op == syntax.OpCapture && re.Name == name {
			found = true
			set = append(set, charset(re.Sub[0])...)
			empty = empty || optional || canBeEmpty(re.Sub[0])
			return
		}
		switch re.Op {
		case syntax.OpStar, syntax.OpQuest, syntax.OpAlternate:
			optional = true
		case syntax.OpRepeat:
			optional = optional || re.Min == 0
		}
		for _, sub := range re.Sub {
			walk(sub, optional)
		}
	}
	walk(re, false)
	return set, empty, found
}

// charset is every character re can match, as ranges (a superset is fine;
// it is exact for the operators Go's parser produces).
func charset(re *syntax.Regexp) [][2]rune {
	switch re.Op {
	case syntax.OpLiteral:
		var set [][2]rune
		for _, r := range re.Rune {
			set = append(set, [2]rune{r, r})
			if re.Flags&syntax.FoldCase != 0 {
				for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
					set = append(set, [2]rune{f, f})
				}
			}
		}
		return set
	case syntax.OpCharClass:
		var set [][2]rune
		for i := 0; i+1 < len(re.Rune); i += 2 {
			set = append(set, [2]rune{re.Rune[i], re.Rune[i+1]})
		}
		return set
	case syntax.OpAnyCharNotNL:
		return [][2]rune{{0, '\n' - 1}, {'\n' + 1, unicode.MaxRune}}
	case syntax.OpAnyChar:
		return [][2]rune{{0, unicode.MaxRune}}
	}
	var set [][2]rune
	for _, sub := range re.Sub {
		set = append(set, charset(sub)...)
	}
	return set
}

// canBeEmpty reports whether re can match the empty string.
func canBeEmpty(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune) == 0
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL, syntax.OpNoMatch:
		return false
	case syntax.OpStar, syntax.OpQuest:
		return true
	case syntax.OpRepeat:
		return re.Min == 0 || canBeEmpty(re.Sub[0])
	case syntax.OpCapture, syntax.OpPlus:
		return canBeEmpty(re.Sub[0])
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !canBeEmpty(sub) {
				return false
			}
		}
		return true
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if canBeEmpty(sub) {
				return true
			}
		}
		return false
	}
	return true // empty match, anchors and word boundaries
}

// groupSource is the text of the named group in pattern, for messages, or
// "the pattern" if it cannot be found.
func groupSource(pattern, name string) string {
	start := -1
	for _, open := range []string{"(?P<" + name + ">", "(?<" + name + ">"} {
		if i := strings.Index(pattern, open); i >= 0 {
			start = i
			break
		}
	}
	if start < 0 {
		return "the pattern"
	}
	depth, inClass := 0, false
	for i := start; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if strings.HasPrefix(pattern[i+1:], "^]") {
				i += 2
			} else if strings.HasPrefix(pattern[i+1:], "]") {
				i++
			}
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return pattern[start : i+1]
			}
		}
	}
	return "the pattern"
}

package adapters

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTopicLevel bounds one topic level in bytes: device and point names are
// short, and a level filled from a capture must not grow a topic without end.
const MaxTopicLevel = 256

// ValidTopicLevel reports why s cannot be one level of a topic Lintel
// publishes: empty, longer than MaxTopicLevel, invalid UTF-8, or holding a
// level separator or wildcard (/ + #), a $ (reserved for $SYS and Lintel's
// own $status and $commands), a NUL or other control character, or a
// Unicode noncharacter. Adapters check every level they build from data
// (a template filled from a frame) and drop what fails.
func ValidTopicLevel(s string) error {
	switch {
	case s == "":
		return errors.New("empty topic level")
	case len(s) > MaxTopicLevel:
		return errors.New("topic level longer than 256 bytes")
	case !utf8.ValidString(s):
		return errors.New("topic level is not valid UTF-8")
	case strings.ContainsAny(s, "/+#$"):
		return errors.New("topic level holds / + # or $")
	case strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || r >= 0xFDD0 && r <= 0xFDEF || r&0xFFFE == 0xFFFE
	}):
		return errors.New("topic level holds a control character or noncharacter")
	}
	return nil
}

// ValidMessageTopic checks the device and point levels of m: both must pass
// ValidTopicLevel, except the reserved point StatusPoint.
func ValidMessageTopic(m Message) error {
	if err := ValidTopicLevel(m.Device); err != nil {
		return err
	}
	if m.Point == StatusPoint {
		return nil
	}
	return ValidTopicLevel(m.Point)
}

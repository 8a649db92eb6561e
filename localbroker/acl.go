package localbroker

import "strings"

// Rule grants one user (or "*" for every authenticated user) read and write
// access by MQTT topic filters. "%u" in a filter stands for the user's name.
type Rule struct {
	User  string
	Read  []string
	Write []string
}

// ACL decides what authenticated network clients may do. It denies everything
// no rule grants. Rules only grant, so the outcome does not depend on their
// order. In-process publishers (adapters, the command gate) are not subject
// to it.
type ACL struct {
	rules []Rule
}

// NewACL returns an ACL over rules.
func NewACL(rules []Rule) *ACL { return &ACL{rules: rules} }

// CanWrite reports whether user may publish to topic (a topic name).
func (a *ACL) CanWrite(user, topic string) bool {
	if user == "" || strings.HasPrefix(topic, "$") {
		return false
	}
	for _, r := range a.rules {
		if r.User != user && r.User != "*" {
			continue
		}
		for _, f := range r.Write {
			if MatchTopic(expandUser(f, user), topic) {
				return true
			}
		}
	}
	return false
}

// CanRead reports whether user may receive from topic. topic is a topic name
// when a message is delivered and a filter when a client subscribes; a
// subscription is allowed when its filter overlaps a granted one, because
// every delivered message is checked again by name.
func (a *ACL) CanRead(user, topic string) bool {
	if user == "" {
		return false
	}
	for _, r := range a.rules {
		if r.User != user && r.User != "*" {
			continue
		}
		for _, f := range r.Read {
			if filtersOverlap(expandUser(f, user), topic) {
				return true
			}
		}
	}
	return false
}

func expandUser(filter, user string) string {
	// A user name with wildcards or separators must not widen a %u rule.
	if strings.ContainsAny(user, "+#/") {
		user = "\x00"
	}
	return strings.ReplaceAll(filter, "%u", user)
}

// MatchTopic reports whether the topic name matches the MQTT filter. As the
// MQTT spec requires, wildcards at the first level do not match topics that
// start with "$".
func MatchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && !strings.HasPrefix(filter, "$") {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}

// filtersOverlap reports whether some topic name matches both filters (a
// topic name is a filter without wildcards).
func filtersOverlap(a, b string) bool {
	if strings.HasPrefix(a, "$") != strings.HasPrefix(b, "$") {
		return false
	}
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; ; i++ {
		if i < len(as) && as[i] == "#" || i < len(bs) && bs[i] == "#" {
			return true
		}
		if i >= len(as) || i >= len(bs) {
			return len(as) == len(bs)
		}
		if as[i] != "+" && bs[i] != "+" && as[i] != bs[i] {
			return false
		}
	}
}

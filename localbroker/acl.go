package localbroker

import "strings"

// Rule grants or denies one user (or "*" for every authenticated user) read
// and write access by MQTT topic filters. "%u" in a filter stands for the
// user's name.
type Rule struct {
	User      string
	Read      []string
	Write     []string
	DenyRead  []string
	DenyWrite []string
}

// ACL decides what authenticated network clients may do. Nothing is allowed
// unless a rule grants it. When several filters match a topic the most
// specific one decides: more literal levels win, then fewer wildcards; at
// equal specificity a rule for the user by name beats a "*" rule, and deny
// beats allow. The order of rules never matters. In-process publishers
// (adapters, the command gate) are not subject to the ACL.
type ACL struct {
	rules []Rule
}

// NewACL returns an ACL over rules.
func NewACL(rules []Rule) *ACL { return &ACL{rules: rules} }

// CanWrite reports whether user may publish to topic (a topic name).
func (a *ACL) CanWrite(user, topic string) bool {
	if user == "" || topic == "" || strings.HasPrefix(topic, "$") {
		return false
	}
	return a.decide(user, topic, true, MatchTopic, MatchTopic)
}

// CanRead reports whether user may receive from topic. topic is a topic name
// when a message is delivered and a filter when a client subscribes. A
// subscription is allowed when its filter overlaps a granted filter and no
// deny rule of higher precedence covers all of it: every delivered message
// is checked again by its name.
func (a *ACL) CanRead(user, topic string) bool {
	if user == "" || topic == "" {
		return false
	}
	return a.decide(user, topic, false, FiltersOverlap, filterCovers)
}

// decide finds the matching grant and deny filters of highest precedence.
// allowMatch and denyMatch say when a rule's filter applies to topic.
func (a *ACL) decide(user, topic string, write bool, allowMatch, denyMatch func(filter, topic string) bool) bool {
	best := precedence{level: -1}
	allowed := false
	for _, r := range a.rules {
		if r.User != user && r.User != "*" {
			continue
		}
		allow, deny := r.Read, r.DenyRead
		if write {
			allow, deny = r.Write, r.DenyWrite
		}
		for _, f := range allow {
			f = expandUser(f, user)
			if allowMatch(f, topic) {
				if p := precedenceOf(f, r.User != "*", false); p.beats(best) {
					best, allowed = p, true
				}
			}
		}
		for _, f := range deny {
			f = expandUser(f, user)
			if denyMatch(f, topic) {
				if p := precedenceOf(f, r.User != "*", true); p.beats(best) || p == best {
					best, allowed = p, false
				}
			}
		}
	}
	return allowed
}

// precedence orders matching filters: compared field by field.
type precedence struct {
	level     int  // literal (non-wildcard) levels
	wildcards int  // fewer is more specific
	named     bool // the rule names the user (not "*")
	deny      bool
}

func precedenceOf(filter string, named, deny bool) precedence {
	p := precedence{named: named, deny: deny}
	for _, l := range strings.Split(filter, "/") {
		if l == "+" || l == "#" {
			p.wildcards++
		} else {
			p.level++
		}
	}
	return p
}

func (p precedence) beats(q precedence) bool {
	switch {
	case p.level != q.level:
		return p.level > q.level
	case p.wildcards != q.wildcards:
		return p.wildcards < q.wildcards
	case p.named != q.named:
		return p.named
	default:
		return p.deny && !q.deny
	}
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

// FiltersOverlap reports whether some topic name matches both filters (a
// topic name is a filter without wildcards).
func FiltersOverlap(a, b string) bool {
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

// filterCovers reports whether every topic matching sub also matches filter.
func filterCovers(filter, sub string) bool {
	if strings.HasPrefix(sub, "$") && !strings.HasPrefix(filter, "$") {
		return false
	}
	fs, ss := strings.Split(filter, "/"), strings.Split(sub, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ss) || ss[i] == "#" {
			return false
		}
		if f != "+" && (ss[i] == "+" || f != ss[i]) {
			return false
		}
	}
	return len(fs) == len(ss)
}

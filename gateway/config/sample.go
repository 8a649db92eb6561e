package config

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Value shapes that suggest a person; a field name can look harmless (who,
// occupant) while its values are names.
var (
	personNameRE = regexp.MustCompile(`(?:^|[^\p{L}])\p{Lu}\p{Ll}+(?:[-'’]\p{Lu}?\p{Ll}+)*,?[ \t]+(?:\p{Lu}\.[ \t]*)?\p{Lu}\p{Ll}+`)
	emailRE      = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)
)

// personalValue says what a value looks like if it looks personal, or "".
func personalValue(v string) string {
	switch {
	case emailRE.MatchString(v):
		return "an e-mail address"
	case personNameRE.MatchString(v):
		return "a person's name (two capitalised words)"
	}
	return ""
}

// Sample runs the serial-line events over the lines of a captured serial
// log (as `lintel check --sample` does) and returns a warning for each field
// whose captured values look like a person's name or an e-mail address
// while it is published as is (privacy rule keep, or none). As on the line,
// the first event of a device that matches a frame takes it. Warnings name
// the config line, the sample file and line numbers, never the value.
func (c *Config) Sample(r io.Reader, name string) (Problems, error) {
	type hit struct {
		path, field, kind, rule string
		first, count            int
	}
	type event struct {
		path    string
		re      *regexp.Regexp
		privacy map[string]string
	}
	var devices [][]event
	for i, d := range c.Devices {
		var evs []event
		for j, e := range d.Events {
			re, err := regexp.Compile(e.Match)
			if err != nil {
				continue // reported by validate
			}
			evs = append(evs, event{fmt.Sprintf("devices[%d].events[%d]", i, j), re, e.Privacy})
		}
		devices = append(devices, evs)
	}
	var hits []*hit
	byKey := map[string]*hit{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		for _, evs := range devices {
			for _, e := range evs {
				m := e.re.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				for k, field := range e.re.SubexpNames() {
					rule := e.privacy[field]
					if field == "" || (rule != "" && rule != "keep") {
						continue
					}
					kind := personalValue(m[k])
					if kind == "" {
						continue
					}
					key := e.path + "\x00" + field + "\x00" + kind
					h := byKey[key]
					if h == nil {
						h = &hit{path: e.path, field: field, kind: kind, rule: rule, first: n}
						byKey[key] = h
						hits = append(hits, h)
					}
					h.count++
				}
				break // one event per frame and device
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("sample %s: %w", name, err)
	}
	var ws Problems
	for _, h := range hits {
		rule := "no privacy rule"
		if h.rule == "keep" {
			rule = "privacy rule keep"
		}
		path := h.path + ".match"
		ws = append(ws, Problem{File: c.File, Line: c.lineOf(path), Path: path,
			Msg: fmt.Sprintf("field %q holds values that look like %s in %s (%d line(s), first line %d) and is published as is (%s); add privacy: {%s: pseudonymize} (or drop) unless these are not people",
				h.field, h.kind, name, h.count, h.first, rule, h.field)})
	}
	return ws, nil
}

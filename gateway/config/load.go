package config

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Problem is one mistake in a config file.
type Problem struct {
	File string
	Line int    // 0 if unknown
	Path string // e.g. devices[2].points[0].type
	Msg  string // says what the bad value is and what is wanted
}

func (p Problem) Error() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Path == "" {
		return fmt.Sprintf("%s: %s", loc, p.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Path, p.Msg)
}

// Problems is every mistake found in a file.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads, checks and completes a config file. On failure the error is a
// Problems listing every mistake found, each with file, line and key path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load for content already read; name is used in messages and to
// resolve relative paths.
func Parse(data []byte, name string) (*Config, error) {
	cfg, problems, err := parse(data, name)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return cfg, nil
}

// LoadForAudit is Load for `lintel audit`: it also returns the config when
// only validation failed, so that the audit can report on it. err is set
// when the file cannot be read or decoded at all.
func LoadForAudit(path string) (*Config, Problems, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return parse(data, path)
}

func parse(data []byte, name string) (*Config, Problems, error) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, nil, Problems{{File: name, Line: errorLine(err), Msg: yamlMessage(err)}}
	}
	w := &walker{file: name, lines: map[string]int{}}
	var root ast.Node
	if len(file.Docs) > 0 {
		root = file.Docs[0].Body
	}
	if len(file.Docs) > 1 {
		w.problem(0, "", "more than one YAML document; want one")
	}
	if root == nil {
		return nil, nil, Problems{{File: name, Msg: "empty config"}}
	}
	w.walk(root, reflect.TypeOf(Config{}), "")
	if len(w.problems) > 0 {
		return nil, nil, w.problems
	}
	cfg := &Config{}
	if err := yaml.NodeToValue(root, cfg); err != nil {
		return nil, nil, Problems{{File: name, Line: errorLine(err), Msg: yamlMessage(err)}}
	}
	cfg.File, cfg.lines = name, w.lines
	if ps := cfg.loadProfiles(); len(ps) > 0 {
		return nil, nil, ps
	}
	explicit := cfg.explicitZeros(w.lines)
	cfg.ensureDefaults()
	ps := append(explicit, cfg.validate()...)
	for _, list := range []Problems{ps, cfg.Warnings} {
		for i := range list {
			cfg.locate(&list[i])
		}
	}
	cfg.resolvePaths()
	return cfg, ps, nil
}

// pointPathRE splits a key path inside a device's point.
var pointPathRE = regexp.MustCompile(`^devices\[(\d+)\]\.points\[(\d+)\](.*)$`)

// locate sets a problem's file and line from its key path. Points that came
// from a profile are reported in the profile file (with the device named),
// a device's own points at their index in the config.
func (c *Config) locate(p *Problem) {
	p.File = c.File
	if m := pointPathRE.FindStringSubmatch(p.Path); m != nil {
		i, _ := strconv.Atoi(m[1])
		j, _ := strconv.Atoi(m[2])
		if i < len(c.Devices) && c.Devices[i].profile != nil {
			d := c.Devices[i]
			if j < d.fromProfile {
				p.File, p.Path = d.profile.file, fmt.Sprintf("points[%d]%s", j, m[3])
				p.Line = (&walker{lines: d.profile.lines}).lineOf(p.Path)
				p.Msg += fmt.Sprintf(" (in device %q)", d.Name)
				return
			}
			p.Path = fmt.Sprintf("devices[%d].points[%d]%s", i, j-d.fromProfile, m[3])
		}
	}
	p.Line = c.lineOf(p.Path)
}

// explicitZeros reports keys written as 0 whose 0 would otherwise be
// replaced by a default, so that a 0 is never silently read as something
// else (as unit: 0 once was).
func (c *Config) explicitZeros(lines map[string]int) Problems {
	var ps Problems
	lim := c.LocalBroker.Limits
	if _, given := lines["local_broker.limits.connect_timeout"]; given && lim.ConnectTimeout == 0 {
		ps = append(ps, Problem{Path: "local_broker.limits.connect_timeout", Msg: "0s; want 1s to 1m"})
	}
	for _, z := range []struct {
		key  string
		v    int
		want string
	}{
		{"max_pending", lim.MaxPending, "1 to 10000"},
		{"max_pending_per_source", lim.MaxPendingPerSource, "1 to max_pending"},
		{"max_filters_per_client", lim.MaxFiltersPerClient, "1 to max_filters"},
		{"max_filters", lim.MaxFilters, "1 to 10000"},
		{"max_password_checks", lim.MaxPasswordChecks, "1 to 16"},
	} {
		if _, given := lines["local_broker.limits."+z.key]; given && z.v == 0 {
			ps = append(ps, Problem{Path: "local_broker.limits." + z.key, Msg: "0; want " + z.want})
		}
	}
	u := c.Uplink
	if u == nil {
		return ps
	}
	if _, given := lines["uplink.ack_timeout"]; given && u.AckTimeout == 0 {
		ps = append(ps, Problem{Path: "uplink.ack_timeout", Msg: "0s; want 1s to 10m"})
	}
	if _, given := lines["uplink.dead_letter_after"]; given && u.DeadLetterAfter == 0 {
		ps = append(ps, Problem{Path: "uplink.dead_letter_after", Msg: "0; want 1 to 100"})
	}
	return ps
}

// loadProfiles reads each device's profile (relative to the config file) and
// puts its points before the device's own. Profile files are checked as
// strictly as the config, with their own file and line in messages.
func (c *Config) loadProfiles() Problems {
	var problems Problems
	loaded := map[string]*Profile{}
	for i := range c.Devices {
		d := &c.Devices[i]
		if d.Profile == "" {
			continue
		}
		path := d.Profile
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(c.File), path)
		}
		p, ok := loaded[path]
		if !ok {
			var ps Problems
			p, ps = LoadProfile(path)
			problems = append(problems, ps...)
			loaded[path] = p
		}
		if p == nil {
			continue
		}
		d.Points = append(append([]Point(nil), p.Points...), d.Points...)
		d.fromProfile, d.profile = len(p.Points), p
		if d.MaxRegisters == 0 {
			d.MaxRegisters = p.MaxRegisters
		}
		if d.MaxGap == 0 {
			d.MaxGap = p.MaxGap
		}
	}
	return problems
}

// LoadProfile reads a device profile file.
func LoadProfile(path string) (*Profile, Problems) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: err.Error()}}
	}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, Problems{{File: path, Line: errorLine(err), Msg: yamlMessage(err)}}
	}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return nil, Problems{{File: path, Msg: "empty profile"}}
	}
	w := &walker{file: path, lines: map[string]int{}}
	w.walk(file.Docs[0].Body, reflect.TypeOf(Profile{}), "")
	if len(w.problems) > 0 {
		return nil, w.problems
	}
	p := &Profile{file: path, lines: w.lines}
	if err := yaml.NodeToValue(file.Docs[0].Body, p); err != nil {
		return nil, Problems{{File: path, Line: errorLine(err), Msg: yamlMessage(err)}}
	}
	return p, nil
}

// resolvePaths makes file paths relative to the config file's directory.
func (c *Config) resolvePaths() {
	dir := filepath.Dir(c.File)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Gateway.DataDir)
	abs(&c.Privacy.KeyFile)
	abs(&c.LocalBroker.UsersFile)
	for i := range c.LocalBroker.Listeners {
		if c.LocalBroker.Listeners[i].Type == "unix" {
			abs(&c.LocalBroker.Listeners[i].Address)
		}
		if t := c.LocalBroker.Listeners[i].TLS; t != nil {
			abs(&t.CertFile)
			abs(&t.KeyFile)
			abs(&t.ClientCAFile)
		}
	}
	if sp := c.StatusPage; sp != nil && sp.TLS != nil {
		abs(&sp.TLS.CertFile)
		abs(&sp.TLS.KeyFile)
		abs(&sp.TLS.ClientCAFile)
	}
	if u := c.Uplink; u != nil {
		abs(&u.TLS.CAFile)
		abs(&u.TLS.CertFile)
		abs(&u.TLS.KeyFile)
		for i := range u.Commands.Signers {
			abs(&u.Commands.Signers[i])
		}
	}
}

func errorLine(err error) int {
	var pe interface{ GetToken() *token.Token }
	if errors.As(err, &pe) && pe.GetToken() != nil {
		return pe.GetToken().Position.Line
	}
	return 0
}

func yamlMessage(err error) string {
	var m interface{ GetMessage() string }
	if errors.As(err, &m) {
		return m.GetMessage()
	}
	return err.Error()
}

// walker checks the YAML tree against the Config types before decoding, so
// that every unknown key and every badly typed value is reported with its
// line, not just the first.
type walker struct {
	file     string
	lines    map[string]int
	problems Problems
	fields   map[reflect.Type]map[string]reflect.StructField // yamlFields, once per type
}

func (w *walker) problem(line int, path, format string, args ...any) {
	w.problems = append(w.problems, Problem{File: w.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// lineOf returns the line of path or of its nearest ancestor.
func (w *walker) lineOf(path string) int {
	for path != "" {
		if l, ok := w.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func (w *walker) walk(n ast.Node, t reflect.Type, path string) {
	for {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
			continue
		case *ast.TagNode:
			n = v.Value
			continue
		case *ast.CommentGroupNode:
			return
		}
		break
	}
	line := n.GetToken().Position.Line
	if _, ok := w.lines[path]; !ok {
		w.lines[path] = line
	}
	if _, isNull := n.(*ast.NullNode); isNull {
		return
	}
	if _, isAlias := n.(*ast.AliasNode); isAlias {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		s, ok := scalarText(n)
		if !ok {
			w.problem(line, path, "want a single value, got %s", describe(n))
			return
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			w.problem(line, path, "%v", err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := n.(*ast.MappingNode)
		if !ok {
			w.problem(line, path, "want a mapping of keys, got %s", describe(n))
			return
		}
		fields, ok := w.fields[t]
		if !ok {
			fields = yamlFields(t)
			if w.fields == nil {
				w.fields = map[reflect.Type]map[string]reflect.StructField{}
			}
			w.fields[t] = fields
		}
		seen := map[string]bool{}
		for _, kv := range m.Values {
			key := kv.Key.GetToken().Value
			keyLine := kv.Key.GetToken().Position.Line
			sub := joinPath(path, key)
			w.lines[sub] = keyLine
			if seen[key] {
				w.problem(keyLine, sub, "key given twice")
				continue
			}
			seen[key] = true
			f, ok := fields[key]
			if !ok {
				names := make([]string, 0, len(fields))
				for k := range fields {
					names = append(names, k)
				}
				slices.Sort(names)
				w.problem(keyLine, sub, "unknown key %q; want one of %s", key, strings.Join(names, ", "))
				continue
			}
			w.walk(kv.Value, f.Type, sub)
		}
	case reflect.Slice:
		s, ok := n.(*ast.SequenceNode)
		if !ok {
			w.problem(line, path, "want a list, got %s", describe(n))
			return
		}
		for i, item := range s.Values {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if _, ok := scalarText(n); !ok {
			w.problem(line, path, "want a text value, got %s", describe(n))
		}
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint8, reflect.Uint16:
		if _, ok := n.(*ast.IntegerNode); !ok {
			w.problem(line, path, "want a whole number, got %s", describe(n))
		}
	case reflect.Float64:
		switch n.(type) {
		case *ast.IntegerNode, *ast.FloatNode:
		default:
			w.problem(line, path, "want a number, got %s", describe(n))
		}
	case reflect.Bool:
		if _, ok := n.(*ast.BoolNode); !ok {
			w.problem(line, path, "want true or false, got %s", describe(n))
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" && opts == "inline" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			maps.Copy(fields, yamlFields(f.Type)) // keys of an embedded struct, e.g. BACnetBus
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		fields[name] = f
	}
	return fields
}

func scalarText(n ast.Node) (string, bool) {
	switch n.(type) {
	case *ast.MappingNode, *ast.SequenceNode, *ast.MappingValueNode:
		return "", false
	}
	if s, ok := n.(*ast.StringNode); ok {
		return s.Value, true
	}
	return n.GetToken().Value, true
}

func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.GetToken().Value)
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

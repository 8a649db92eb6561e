package audit

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lintel-gw/lintel/gateway/command"
	"github.com/lintel-gw/lintel/gateway/config"
	"github.com/lintel-gw/lintel/localbroker"
)

// Status of a finding.
type Status string

// Statuses, from good to bad.
const (
	Pass Status = "PASS"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Finding is the result of one check on one subject.
type Finding struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Reason string `json:"reason"`
	Fix    string `json:"fix,omitempty"`
}

// The checks, by ID. IDs are what `lintel run --override-audit` names.
const (
	CheckConfig      = "config"
	CheckListeners   = "listener-tls"
	CheckUsers       = "users"
	CheckACL         = "acl-write"
	CheckSecretFiles = "secret-files"
	CheckUplinkTLS   = "uplink-tls"
	CheckUplinkCert  = "uplink-cert"
	CheckBuffer      = "buffer-cap"
	CheckRoot        = "run-as-root"
	CheckDataDir     = "data-dir"
	CheckPrivacy     = "privacy"
	CheckSigners     = "command-signers"
	CheckMetrics     = "metrics-address"
	CheckUnsigned    = "unsigned-writes"
	CheckTrustFiles  = "trust-files"
	CheckStatusPage  = "status-page"
)

// Options describe the machine the gateway runs on.
type Options struct {
	// ServiceUID is the user the daemon runs as; files must belong to it.
	ServiceUID int
	Now        time.Time
}

// Run audits cfg. problems are the config's validation problems (from
// config.LoadForAudit); each is a FAIL.
func Run(cfg *config.Config, problems config.Problems, opts Options) []Finding {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	a := &auditor{cfg: cfg, opts: opts}
	for _, p := range problems {
		a.add(CheckConfig, Fail, p.Error(), "correct the file; `lintel check` lists every problem")
	}
	if len(problems) == 0 {
		a.add(CheckConfig, Pass, "the configuration is valid", "")
	}
	a.listeners()
	a.users()
	a.acl()
	a.secretFiles()
	a.trustFiles()
	a.uplink()
	a.buffer()
	a.root()
	a.dataDir()
	a.privacy()
	a.signers()
	a.unsigned()
	a.metrics()
	a.statusPage()
	return a.findings
}

// Failed returns the IDs of the checks with a FAIL, once each.
func Failed(findings []Finding) []string {
	var ids []string
	seen := map[string]bool{}
	for _, f := range findings {
		if f.Status == Fail && !seen[f.Check] {
			seen[f.Check] = true
			ids = append(ids, f.Check)
		}
	}
	return ids
}

type auditor struct {
	cfg      *config.Config
	opts     Options
	findings []Finding
}

func (a *auditor) add(check string, st Status, reason, fix string) {
	a.findings = append(a.findings, Finding{Check: check, Status: st, Reason: reason, Fix: fix})
}

func (a *auditor) listeners() {
	for _, l := range a.cfg.LocalBroker.Listeners {
		switch {
		case l.Type == "unix":
			a.add(CheckListeners, Pass, fmt.Sprintf("listener %q is a unix socket (mode 0660)", l.Name), "")
		case l.TLS != nil && l.TLS.ClientCAFile != "":
			a.add(CheckListeners, Pass, fmt.Sprintf("listener %q on %s uses TLS and requires client certificates", l.Name, l.Address), "")
		case l.TLS != nil:
			a.add(CheckListeners, Pass, fmt.Sprintf("listener %q on %s uses TLS; clients log in with passwords", l.Name, l.Address), "")
		case config.IsLoopback(l.Address):
			a.add(CheckListeners, Pass, fmt.Sprintf("listener %q is on loopback %s only", l.Name, l.Address), "")
		default:
			a.add(CheckListeners, Fail, fmt.Sprintf("listener %q accepts plain MQTT on the network address %s", l.Name, l.Address),
				"add tls (cert_file, key_file, ideally client_ca_file) or bind it to 127.0.0.1")
		}
	}
}

func (a *auditor) users() {
	lb := a.cfg.LocalBroker
	if lb.UsersFile == "" {
		a.add(CheckUsers, Warn, "no users_file: no network client can log in (anonymous clients are always refused)",
			"create one with `lintel passwd add --file /etc/lintel/users NAME` if local clients need the broker")
		return
	}
	users, err := localbroker.LoadUsers(lb.UsersFile)
	if err != nil {
		a.add(CheckUsers, Fail, err.Error(), "create or repair it with `lintel passwd add --file "+lb.UsersFile+" NAME`")
		return
	}
	known := map[string]bool{}
	for _, n := range users.Names() {
		known[n] = true
	}
	a.add(CheckUsers, Pass, fmt.Sprintf("%d user(s) with bcrypt passwords; anonymous clients are always refused", len(known)), "")
	certListener := false
	for _, l := range lb.Listeners {
		certListener = certListener || (l.TLS != nil && l.TLS.ClientCAFile != "")
	}
	for _, r := range lb.ACL {
		if r.User != "*" && !known[r.User] && !certListener {
			a.add(CheckUsers, Warn, fmt.Sprintf("the ACL names user %q, who is not in %s", r.User, lb.UsersFile),
				"add the user or remove the rule")
		}
	}
}

// commandTopics are where writes to hardware are requested.
const commandTopics = "lintel/+/+/+/set"

func (a *auditor) acl() {
	bad := false
	for i, r := range a.cfg.LocalBroker.ACL {
		for _, f := range r.Write {
			switch {
			case f == "#" || f == "+/#":
				bad = true
				a.add(CheckACL, Fail, fmt.Sprintf("acl[%d] lets %s write to every topic (%q), commands included", i, who(r.User), f),
					"grant write only on the topics the client must publish")
			case r.User == "*" && localbroker.FiltersOverlap(f, commandTopics):
				bad = true
				a.add(CheckACL, Fail, fmt.Sprintf("acl[%d] lets every user write command topics (%q)", i, f),
					"grant command topics (…/set) to one named user only, or to none")
			case localbroker.FiltersOverlap(f, commandTopics):
				a.add(CheckACL, Warn, fmt.Sprintf("acl[%d] lets user %q write command topics (%q): it can request writes to hardware", i, r.User, f),
					"make sure this client must send commands; narrow the filter to the points it controls")
			}
		}
	}
	if !bad {
		a.add(CheckACL, Pass, "no rule grants write on every topic or command topics to every user; unmatched topics are denied", "")
	}
}

func who(user string) string {
	if user == "*" {
		return "every user"
	}
	return fmt.Sprintf("user %q", user)
}

// secretFiles: the users file and every private key must be 0600 (or
// stricter) and belong to the service user.
func (a *auditor) secretFiles() {
	secrets := map[string]string{}
	if f := a.cfg.LocalBroker.UsersFile; f != "" {
		secrets[f] = "local_broker.users_file"
	}
	for i, l := range a.cfg.LocalBroker.Listeners {
		if l.TLS != nil && l.TLS.KeyFile != "" {
			secrets[l.TLS.KeyFile] = fmt.Sprintf("local_broker.listeners[%d].tls.key_file", i)
		}
	}
	if u := a.cfg.Uplink; u != nil && u.TLS.KeyFile != "" {
		secrets[u.TLS.KeyFile] = "uplink.tls.key_file"
	}
	if sp := a.cfg.StatusPage; sp != nil && sp.TLS != nil && sp.TLS.KeyFile != "" {
		secrets[sp.TLS.KeyFile] = "status_page.tls.key_file"
	}
	if _, err := os.Stat(a.cfg.Privacy.KeyFile); err == nil {
		secrets[a.cfg.Privacy.KeyFile] = "privacy.key_file" // created at first start otherwise
	}
	for _, path := range slices.Sorted(maps.Keys(secrets)) {
		key := secrets[path]
		fi, err := os.Stat(path)
		if err != nil {
			a.add(CheckSecretFiles, Fail, fmt.Sprintf("%s %s: %v", key, path, err), "create the file or correct the path")
			continue
		}
		a.ownedPrivate(CheckSecretFiles, key, path, fi, 0o077, "chmod 600 "+path)
	}
}

// ownedPrivate checks a file's owner and that no bits of forbidden are set.
func (a *auditor) ownedPrivate(check, key, path string, fi os.FileInfo, forbidden os.FileMode, chmod string) {
	ok := true
	if fi.Mode().Perm()&forbidden != 0 {
		ok = false
		a.add(check, Fail, fmt.Sprintf("%s %s is open to group or others (mode %04o)", key, path, fi.Mode().Perm()), chmod)
	}
	if st, isUnix := fi.Sys().(*syscall.Stat_t); isUnix && int(st.Uid) != a.opts.ServiceUID {
		ok = false
		a.add(check, Fail, fmt.Sprintf("%s %s belongs to uid %d, not the service user (uid %d)", key, path, st.Uid, a.opts.ServiceUID),
			fmt.Sprintf("chown %d %s", a.opts.ServiceUID, path))
	}
	if ok {
		a.add(check, Pass, fmt.Sprintf("%s %s is private to the service user (mode %04o)", key, path, fi.Mode().Perm()), "")
	}
}

// trustFiles: whoever can write a file that decides whom the gateway
// trusts (signer keys, CA certificates, the config and its profiles), or
// any directory above it or above a secret file, can swap it. Each must be
// writable only by root or the service user; a group- or world-writable
// directory is accepted only with the sticky bit (like /tmp), where others
// cannot rename or remove what they do not own.
func (a *auditor) trustFiles() {
	type subject struct {
		key, path string
		fileToo   bool // false: the file is a secret, checked by secretFiles
	}
	var subjects []subject
	add := func(key, path string, fileToo bool) {
		if path != "" {
			subjects = append(subjects, subject{key, path, fileToo})
		}
	}
	cfg := a.cfg
	if cfg.File != "" {
		add("config file", cfg.File, true)
	}
	for i, d := range cfg.Devices {
		if p := d.Profile; p != "" {
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(cfg.File), p)
			}
			add(fmt.Sprintf("devices[%d].profile", i), p, true)
		}
	}
	add("local_broker.users_file", cfg.LocalBroker.UsersFile, false)
	for i, l := range cfg.LocalBroker.Listeners {
		if l.TLS != nil {
			add(fmt.Sprintf("local_broker.listeners[%d].tls.client_ca_file", i), l.TLS.ClientCAFile, true)
			add(fmt.Sprintf("local_broker.listeners[%d].tls.cert_file", i), l.TLS.CertFile, true)
			add(fmt.Sprintf("local_broker.listeners[%d].tls.key_file", i), l.TLS.KeyFile, false)
		}
	}
	if u := cfg.Uplink; u != nil {
		add("uplink.tls.ca_file", u.TLS.CAFile, true)
		add("uplink.tls.cert_file", u.TLS.CertFile, true)
		add("uplink.tls.key_file", u.TLS.KeyFile, false)
		for i, s := range u.Commands.Signers {
			add(fmt.Sprintf("uplink.commands.signers[%d]", i), s, true)
		}
	}
	add("privacy.key_file", cfg.Privacy.KeyFile, false)

	bad, checked := false, 0
	seen := map[string]bool{}
	for _, s := range subjects {
		path, err := filepath.Abs(s.path)
		if err != nil {
			continue
		}
		paths := []string{path}
		if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
			paths = append(paths, real) // the link and where it leads
		}
		for _, p := range paths {
			if s.fileToo {
				if fi, err := os.Stat(p); err == nil { // a missing file is reported by the check that uses it
					checked++
					bad = a.trusted(fmt.Sprintf("%s %s", s.key, p), p, fi, false) || bad
				}
			}
			for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
				if !seen[dir] {
					seen[dir] = true
					if fi, err := os.Stat(dir); err == nil {
						bad = a.trusted(fmt.Sprintf("directory %s (holding %s)", dir, s.key), dir, fi, true) || bad
					}
				}
				if dir == filepath.Dir(dir) {
					break
				}
			}
		}
	}
	if !bad {
		a.add(CheckTrustFiles, Pass, fmt.Sprintf("%d trust file(s) (config, profiles, CA certificates, signer keys) and the directories above them and above the secret files are writable only by root or the service user", checked), "")
	}
}

// trusted adds a FAIL for each way others could replace what stands at
// path, and reports whether it did.
func (a *auditor) trusted(what, path string, fi os.FileInfo, isDir bool) (bad bool) {
	perm := fi.Mode().Perm()
	if perm&0o022 != 0 && !(isDir && fi.Mode()&os.ModeSticky != 0) {
		bad = true
		a.add(CheckTrustFiles, Fail, fmt.Sprintf("%s is writable by group or others (mode %04o): they could replace what the gateway trusts", what, perm),
			"chmod go-w "+path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != a.opts.ServiceUID {
		bad = true
		a.add(CheckTrustFiles, Fail, fmt.Sprintf("%s belongs to uid %d, neither root nor the service user (uid %d): that user could replace it", what, st.Uid, a.opts.ServiceUID),
			"chown root "+path)
	}
	return bad
}

func (a *auditor) uplink() {
	u := a.cfg.Uplink
	if u == nil {
		a.add(CheckUplinkTLS, Pass, "no uplink: the gateway buffers only", "")
		return
	}
	if !strings.HasPrefix(u.Broker, "mqtts://") && !strings.HasPrefix(u.Broker, "ssl://") && !strings.HasPrefix(u.Broker, "tls://") {
		a.add(CheckUplinkTLS, Fail, fmt.Sprintf("uplink broker %q is not TLS", u.Broker), "use mqtts://host:8883 with a CA and a client certificate")
		return
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(u.TLS.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		a.add(CheckUplinkTLS, Fail, fmt.Sprintf("uplink.tls.ca_file %s holds no usable CA certificate: the broker could not be verified", u.TLS.CAFile),
			"put the PEM CA certificate that signed the cloud broker's certificate there")
	} else {
		a.add(CheckUplinkTLS, Pass, "mutual TLS (TLS ≥ 1.2) with the broker verified against "+u.TLS.CAFile+" only", "")
	}
	pair, err := tls.LoadX509KeyPair(u.TLS.CertFile, u.TLS.KeyFile)
	if err != nil {
		a.add(CheckUplinkCert, Fail, fmt.Sprintf("uplink client certificate: %v", err), "install the gateway's certificate and matching key")
		return
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		a.add(CheckUplinkCert, Fail, fmt.Sprintf("uplink client certificate: %v", err), "install a valid certificate")
		return
	}
	left := cert.NotAfter.Sub(a.opts.Now)
	switch {
	case a.opts.Now.Before(cert.NotBefore):
		a.add(CheckUplinkCert, Fail, fmt.Sprintf("uplink certificate %q is not valid before %s (is the clock right?)", cert.Subject.CommonName, cert.NotBefore.Format(time.RFC3339)), "check the clock (NTP) or the certificate")
	case left <= 0:
		a.add(CheckUplinkCert, Fail, fmt.Sprintf("uplink certificate %q expired on %s", cert.Subject.CommonName, cert.NotAfter.Format(time.RFC3339)), "renew it: the cloud will refuse the gateway")
	case left < 30*24*time.Hour:
		a.add(CheckUplinkCert, Warn, fmt.Sprintf("uplink certificate %q expires in %d days (%s)", cert.Subject.CommonName, int(left.Hours()/24), cert.NotAfter.Format("2006-01-02")), "renew it before it expires")
	default:
		a.add(CheckUplinkCert, Pass, fmt.Sprintf("uplink certificate %q valid until %s", cert.Subject.CommonName, cert.NotAfter.Format("2006-01-02")), "")
	}
}

func (a *auditor) buffer() {
	max := int64(a.cfg.Buffer.MaxBytes)
	if (runtime.GOARCH == "arm" || runtime.GOARCH == "386") && max > 1<<30 {
		a.add(CheckBuffer, Fail, fmt.Sprintf("buffer.max_bytes %d on a 32-bit system: the memory-mapped file cannot grow that large", max), "set buffer.max_bytes to 512MiB or less")
		return
	}
	dir := a.cfg.Gateway.DataDir
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" || dir == "." {
			break
		}
		dir = parent(dir)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		a.add(CheckBuffer, Warn, fmt.Sprintf("cannot measure free space for %s: %v", a.cfg.Gateway.DataDir, err), "")
		return
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	switch {
	case max > free:
		a.add(CheckBuffer, Fail, fmt.Sprintf("buffer.max_bytes %d is more than the %d bytes free on %s: a long outage would fill the disk", max, free, dir), "lower buffer.max_bytes or free space")
	case max > free/2:
		a.add(CheckBuffer, Warn, fmt.Sprintf("buffer.max_bytes %d is more than half of the %d bytes free on %s", max, free, dir), "leave room for logs and the system")
	default:
		a.add(CheckBuffer, Pass, fmt.Sprintf("buffer capped at %d bytes (%s when full); %d bytes free", max, a.cfg.Buffer.FullPolicy, free), "")
	}
}

func parent(dir string) string {
	i := strings.LastIndex(strings.TrimRight(dir, "/"), "/")
	if i <= 0 {
		return "/"
	}
	return dir[:i]
}

func (a *auditor) root() {
	if a.opts.ServiceUID == 0 {
		a.add(CheckRoot, Fail, "the gateway would run as root", "run it as a dedicated user (e.g. lintel, in group dialout for serial ports)")
		return
	}
	a.add(CheckRoot, Pass, fmt.Sprintf("runs as uid %d, not root", a.opts.ServiceUID), "")
}

func (a *auditor) metrics() {
	switch addr := a.cfg.Metrics.Address; {
	case addr == "off":
		a.add(CheckMetrics, Pass, "metrics and health endpoints are off", "")
	case config.IsLoopback(addr):
		a.add(CheckMetrics, Pass, "metrics and health on loopback "+addr+" only", "")
	default:
		a.add(CheckMetrics, Fail, fmt.Sprintf("metrics and health are served on the network address %s: they reveal device and door state", addr),
			"bind metrics.address to 127.0.0.1 and scrape through an SSH tunnel or a local agent")
	}
}

// statusPage: the technician's page must not be a convenience page left
// open: plain HTTP only on loopback, and not every user an operator.
func (a *auditor) statusPage() {
	sp := a.cfg.StatusPage
	switch {
	case sp == nil:
		a.add(CheckStatusPage, Pass, "the status page is off", "")
		return
	case sp.TLS == nil && !config.IsLoopback(sp.Address):
		a.add(CheckStatusPage, Fail, fmt.Sprintf("the status page is served without TLS on the network address %s: passwords and sessions cross the network in clear", sp.Address),
			"add status_page.tls (cert_file, key_file, optionally client_ca_file) or bind status_page.address to 127.0.0.1")
		return
	case sp.TLS == nil:
		a.add(CheckStatusPage, Pass, "the status page is on loopback "+sp.Address+" only", "")
	default:
		a.add(CheckStatusPage, Pass, "the status page is served over TLS on "+sp.Address, "")
	}
	for _, r := range a.cfg.LocalBroker.ACL {
		if r.User == "*" && slices.Contains(r.Status, "operate") {
			a.add(CheckStatusPage, Warn, "every local broker user may operate the status page (reconnect the uplink, clear dead letters)",
				"grant status: [operate] to named technicians only")
		}
	}
}

// signers: critical points and commands need signer keys that load; so do
// all other writable targets not marked unsigned_writes, but for them a
// missing key is a warning (writes are refused, nothing is exposed).
func (a *auditor) signers() {
	var critical, signed []string
	for _, d := range a.cfg.Devices {
		for _, p := range d.Points {
			switch {
			case p.Critical:
				critical = append(critical, d.Name+"/"+p.Name)
			case p.Writable && !p.UnsignedWrites:
				signed = append(signed, d.Name+"/"+p.Name)
			}
		}
		for _, c := range d.Commands {
			switch {
			case c.Critical:
				critical = append(critical, d.Name+"/"+c.Name)
			case !c.UnsignedWrites:
				signed = append(signed, d.Name+"/"+c.Name)
			}
		}
	}
	var signers []string
	if a.cfg.Uplink != nil {
		signers = a.cfg.Uplink.Commands.Signers
	}
	const keygen = "create a key with `lintel keygen --out ops` offline and list ops.pub under uplink.commands.signers"
	if len(critical) > 0 && len(signers) == 0 {
		a.add(CheckSigners, Fail, fmt.Sprintf("critical targets (%s) but no uplink.commands.signers: they can never be commanded", strings.Join(critical, ", ")), keygen)
		return
	}
	if len(signed) > 0 && len(signers) == 0 {
		a.add(CheckSigners, Warn, fmt.Sprintf("writable targets (%s) need signed commands but there are no uplink.commands.signers: every write to them is refused", strings.Join(signed, ", ")),
			keygen+", or mark a target unsigned_writes: true if unsigned writes to it are acceptable")
		return
	}
	ok := true
	for i, path := range signers {
		if _, err := command.LoadSigner(path); err != nil {
			ok = false
			a.add(CheckSigners, Fail, fmt.Sprintf("uplink.commands.signers[%d]: %v", i, err), "point it at an Ed25519 public key from `lintel keygen`")
		}
	}
	if ok {
		a.add(CheckSigners, Pass, fmt.Sprintf("%d critical and %d other signed target(s), %d signer key(s); unsigned, expired and replayed commands are refused", len(critical), len(signed), len(signers)), "")
	}
}

// unsigned fails on every target written without a signature whose name,
// device, labels or table suggest a door, lock, alarm or relay.
func (a *auditor) unsigned() {
	var accepted []string
	bad := false
	for _, t := range a.cfg.UnsignedTargets() {
		if t.DoorLike == "" {
			accepted = append(accepted, t.Device+"/"+t.Name)
			continue
		}
		bad = true
		a.add(CheckUnsigned, Fail, fmt.Sprintf("%s %q is written without a signature (%s), and %s: anyone who can publish its command topic can operate it",
			t.Kind, t.Device+"/"+t.Name, t.Where, t.DoorLike), "remove unsigned_writes so that writes need a signed command (`lintel sign`)")
	}
	switch {
	case bad:
	case len(accepted) > 0:
		a.add(CheckUnsigned, Pass, fmt.Sprintf("unsigned writes only to targets that look like no door, lock, alarm or relay: %s; every other write needs a signature", strings.Join(accepted, ", ")), "")
	default:
		a.add(CheckUnsigned, Pass, "no target is marked unsigned_writes: every write needs a signed command", "")
	}
}

// privacy fails on captured fields that look personal and have no rule.
func (a *auditor) privacy() {
	bad := false
	for _, w := range a.cfg.Warnings {
		if strings.Contains(w.Msg, "looks personal") {
			bad = true
			a.add(CheckPrivacy, Fail, w.Error(), "add a privacy rule for the field: pseudonymize, drop, or keep to accept it")
		}
	}
	if !bad {
		a.add(CheckPrivacy, Pass, "every captured field that looks personal has a privacy rule", "")
	}
}

func (a *auditor) dataDir() {
	dir := a.cfg.Gateway.DataDir
	fi, err := os.Stat(dir)
	if os.IsNotExist(err) {
		a.add(CheckDataDir, Warn, fmt.Sprintf("gateway.data_dir %s does not exist yet; it will be created with mode 0700", dir), "")
		return
	}
	if err != nil {
		a.add(CheckDataDir, Fail, err.Error(), "")
		return
	}
	a.ownedPrivate(CheckDataDir, "gateway.data_dir", dir, fi, 0o077, "chmod 700 "+dir)
}

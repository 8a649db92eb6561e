package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is a whole lintel.yaml.
type Config struct {
	Gateway     Gateway     `yaml:"gateway"`
	Log         Log         `yaml:"log"`
	Metrics     Metrics     `yaml:"metrics"`
	LocalBroker LocalBroker `yaml:"local_broker"`
	Buses       []Bus       `yaml:"buses"`
	Devices     []Device    `yaml:"devices"`
	Uplink      *Uplink     `yaml:"uplink"`
	Buffer      Buffer      `yaml:"buffer"`
	Privacy     Privacy     `yaml:"privacy"`
	// StatusPage is the technician's web page; nil (absent) is off.
	StatusPage *StatusPage `yaml:"status_page"`

	// File is the path the config was read from; relative paths in it are
	// resolved against its directory.
	File string `yaml:"-"`
	// Warnings are doubts that do not stop the gateway, e.g. a captured
	// field that looks personal but has no privacy rule.
	Warnings Problems `yaml:"-"`

	lines map[string]int // key path → line in File, for later messages
}

// lineOf is the line in File of a key path or of its nearest ancestor, 0
// when unknown (a config not read from a file).
func (c *Config) lineOf(path string) int {
	w := walker{lines: c.lines}
	return w.lineOf(path)
}

// Privacy holds the site key that pseudonymizes personal fields.
type Privacy struct {
	KeyFile string `yaml:"key_file"` // default <data_dir>/privacy.key, created at first start
}

// Gateway names this gateway and its state directory.
type Gateway struct {
	ID      string `yaml:"id"`
	DataDir string `yaml:"data_dir"`
}

// Log selects the log level and format.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Metrics is where /metrics (Prometheus) and /healthz are served.
type Metrics struct {
	Address string `yaml:"address"` // default 127.0.0.1:9108; "off" disables
}

// StatusPage is where the status page is served. Without TLS the address
// must be loopback. Who may log in is set per user by an ACL rule's status
// key (view, operate).
type StatusPage struct {
	Address string     `yaml:"address"` // default 127.0.0.1:9109
	TLS     *ServerTLS `yaml:"tls"`
}

// LocalBroker configures the embedded MQTT broker.
type LocalBroker struct {
	Listeners []Listener `yaml:"listeners"`
	UsersFile string     `yaml:"users_file"`
	ACL       []ACLRule  `yaml:"acl"`
	Limits    Limits     `yaml:"limits"`
	// HomeAssistant, when present, announces every device and point to
	// Home Assistant by MQTT discovery on this broker.
	HomeAssistant *HomeAssistant `yaml:"home_assistant"`
}

// HomeAssistant configures MQTT discovery (see gateway/homeassistant).
type HomeAssistant struct {
	Prefix string `yaml:"prefix"` // discovery prefix, default homeassistant
}

// Listener is one broker endpoint. Without TLS a tcp or websocket listener
// must be on loopback.
type Listener struct {
	Name    string     `yaml:"name"`
	Type    string     `yaml:"type"`    // tcp (default), websocket, unix
	Address string     `yaml:"address"` // host:port; the socket path for unix
	TLS     *ServerTLS `yaml:"tls"`
}

// ServerTLS is a listener's certificate and, optionally, the CA that client
// certificates must chain to. With client_ca_file set, every client must
// present a certificate from that CA, and its common name is the user name
// (no password).
type ServerTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// ACLRule grants (read, write) or denies (deny_read, deny_write) a user
// access by topic filters. "*" is every authenticated user; "%u" in a filter
// is the user's name. The most specific filter decides; deny wins a tie.
type ACLRule struct {
	User      string   `yaml:"user"`
	Read      []string `yaml:"read"`
	Write     []string `yaml:"write"`
	DenyRead  []string `yaml:"deny_read"`
	DenyWrite []string `yaml:"deny_write"`
	// Status grants status page roles: view, and operate for its actions.
	Status []string `yaml:"status"`
}

// Limits bound what local clients, logged in or not, can cost the gateway
// (see localbroker.Limits). Written as 0, a key is an error, not "default".
type Limits struct {
	MaxPacket  Size `yaml:"max_packet"`
	MaxClients int  `yaml:"max_clients"`
	// ConnectTimeout: TLS handshake and CONNECT must finish within it.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// MaxPending and MaxPendingPerSource cap connections not yet logged
	// in, in total and per source (IPv4 address, IPv6 /64, unix uid).
	MaxPending          int `yaml:"max_pending"`
	MaxPendingPerSource int `yaml:"max_pending_per_source"`
	// MaxFiltersPerClient and MaxFilters cap subscriptions per client and
	// over all clients.
	MaxFiltersPerClient int `yaml:"max_filters_per_client"`
	MaxFilters          int `yaml:"max_filters"`
	// MaxPasswordChecks bounds concurrent bcrypt comparisons.
	MaxPasswordChecks int `yaml:"max_password_checks"`
}

// Bus is one field bus.
type Bus struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"`    // modbus-tcp, modbus-rtu, serial-line, bacnet-ip
	Address  string   `yaml:"address"` // modbus-tcp: host:port
	Port     string   `yaml:"port"`    // modbus-rtu, serial-line: serial device
	Baud     int      `yaml:"baud"`
	Parity   string   `yaml:"parity"` // none, even, odd
	StopBits int      `yaml:"stop_bits"`
	Timeout  Duration `yaml:"timeout"`
	// Modbus: quiet time between transactions, and retries of a failed request.
	Pause   Duration `yaml:"pause"`
	Retries *int     `yaml:"retries"` // default 1
	// serial-line framing.
	Framing     string `yaml:"framing"`      // delimiter (default), stx-etx, fixed, length-prefix
	Delimiter   string `yaml:"delimiter"`    // default "\r\n"
	FrameLength int    `yaml:"frame_length"` // fixed
	LengthBytes int    `yaml:"length_bytes"` // length-prefix: 1 or 2
	MaxFrame    int    `yaml:"max_frame"`    // default 512
	BACnetBus   `yaml:",inline"`
}

// Device is one device on a bus: Modbus devices have points, serial-line
// devices have events, requests and commands.
type Device struct {
	Name string `yaml:"name"`
	Bus  string `yaml:"bus"`
	// Unit is the Modbus unit id; nil (not given) means 1. 0 is kept: it
	// is a real id, often the only one a Modbus TCP device answers to.
	Unit    *int     `yaml:"unit"`
	Poll    Duration `yaml:"poll"`
	Profile string   `yaml:"profile"` // a file of reusable points, before Points
	Points  []Point  `yaml:"points"`
	// Request planning for picky devices (Modbus).
	MaxRegisters int       `yaml:"max_registers"` // default 125
	MaxGap       int       `yaml:"max_gap"`       // unused registers a request may span, default 0
	Events       []Event   `yaml:"events"`
	Requests     []Request `yaml:"requests"`
	Commands     []Command `yaml:"commands"`
	BACnetDevice `yaml:",inline"`

	// The first fromProfile Points came from this profile file, whose
	// lines messages about them name.
	fromProfile int
	profile     *Profile
}

// UnitID is the device's Modbus unit id: Unit, or DefaultUnit when unset.
func (d Device) UnitID() uint8 {
	if d.Unit == nil {
		return DefaultUnit
	}
	return uint8(*d.Unit)
}

// Event turns matching serial-line frames into events or state points.
type Event struct {
	Name  string `yaml:"name"`
	Match string `yaml:"match"` // regular expression; named groups are fields
	// Privacy rule per field: keep, pseudonymize or drop.
	Privacy map[string]string `yaml:"privacy"`
	// Point (a template like "door_{door}") makes the event a state reading
	// whose value is the field Value, mapped through Values if listed.
	Point    string         `yaml:"point"`
	Value    string         `yaml:"value"`
	Values   map[string]any `yaml:"values"`
	Priority string         `yaml:"priority"` // high (default for events) or normal
}

// Request is sent periodically; Expect matches its answer.
type Request struct {
	Send    string   `yaml:"send"`
	Every   Duration `yaml:"every"`
	Expect  string   `yaml:"expect"`
	Timeout Duration `yaml:"timeout"`
}

// Command is a template sent to a serial-line device, e.g. "UNLOCK {door}\r\n".
type Command struct {
	Name     string `yaml:"name"`
	Send     string `yaml:"send"`
	Critical bool   `yaml:"critical"` // always needs a signed command
	// UnsignedWrites lets the command run without a signature. Without it
	// (the default) a command from the cloud or a network client must be
	// signed.
	UnsignedWrites bool             `yaml:"unsigned_writes"`
	Params         map[string]Param `yaml:"params"`
	Expect         string           `yaml:"expect"`
	Timeout        Duration         `yaml:"timeout"`
}

// Param constrains a command parameter.
type Param struct {
	Enum    []string `yaml:"enum"`
	Min     *float64 `yaml:"min"`
	Max     *float64 `yaml:"max"`
	Pattern string   `yaml:"pattern"`
	// Unicode lets the value hold printable Unicode; without it (the
	// default) only printable ASCII is sent.
	Unicode bool `yaml:"unicode"`
}

// Point is one Modbus value.
type Point struct {
	Name    string `yaml:"name"`
	Table   string `yaml:"table"`
	Address int    `yaml:"address"`
	Type    string `yaml:"type"`
	Order   string `yaml:"order"`
	Bit     *int   `yaml:"bit"`    // 0-15: one bit of an input or holding register (type bool)
	Length  int    `yaml:"length"` // registers of a string
	// Labels name integer values, e.g. {0: closed, 1: open}.
	Labels   map[int64]string `yaml:"labels"`
	Scale    *float64         `yaml:"scale"`
	Offset   float64          `yaml:"offset"`
	Unit     string           `yaml:"unit"`
	Writable bool             `yaml:"writable"`
	Poll     Duration         `yaml:"poll"`     // overrides the device's poll for this point
	Critical bool             `yaml:"critical"` // writes always need a signed command
	// UnsignedWrites lets writes run without a signature. Without it (the
	// default) a write from the cloud or a network client must be signed.
	UnsignedWrites bool     `yaml:"unsigned_writes"`
	Min            *float64 `yaml:"min"` // bounds of a written value
	Max            *float64 `yaml:"max"`
	Priority       string   `yaml:"priority"` // normal (default) or high: delivered first, evicted last; bacnet-ip: write priority 1-16
	Report         Report   `yaml:"report"`
	BACnetPoint    `yaml:",inline"`
}

// Profile is a device profile file: points shared by every device of a model.
type Profile struct {
	Points       []Point `yaml:"points"`
	MaxRegisters int     `yaml:"max_registers"`
	MaxGap       int     `yaml:"max_gap"`

	file  string
	lines map[string]int // key path → line in file
}

// Report controls when a reading is published.
type Report struct {
	Deadband    float64  `yaml:"deadband"`
	MaxInterval Duration `yaml:"max_interval"`
}

// Uplink is the connection to the cloud broker.
type Uplink struct {
	Broker      string    `yaml:"broker"`
	TLS         ClientTLS `yaml:"tls"`
	Forward     []string  `yaml:"forward"`
	TopicPrefix string    `yaml:"topic_prefix"`
	MaxInflight int       `yaml:"max_inflight"`
	Commands    Commands  `yaml:"commands"`
	// AckTimeout: a PUBACK later than this ends the session (default 30s).
	AckTimeout Duration `yaml:"ack_timeout"`
	// DeadLetterAfter: a record the broker refuses, or that ends the
	// session, this many times in a row is moved aside so that delivery
	// goes on (default 3).
	DeadLetterAfter int `yaml:"dead_letter_after"`
	// Format is what the cloud receives: json (default, Lintel's topics
	// and payloads) or sparkplug-b.
	Format    string     `yaml:"format"`
	Sparkplug *Sparkplug `yaml:"sparkplug"`
}

// Uplink formats.
const (
	FormatJSON       = "json"
	FormatSparkplugB = "sparkplug-b"
)

// Sparkplug configures format sparkplug-b (see gateway/uplink/sparkplug).
type Sparkplug struct {
	GroupID    string `yaml:"group_id"`
	EdgeNodeID string `yaml:"edge_node_id"` // default: gateway.id
	// PrimaryHostID, if set, names the host application whose STATE
	// gates delivery.
	PrimaryHostID string `yaml:"primary_host_id"`
	// PrimaryHostState is the form of that host's STATE: auto (default:
	// both), 3.0 (spBv1.0/STATE/<host>, JSON) or 2.2 (STATE/<host>,
	// ONLINE/OFFLINE).
	PrimaryHostState string `yaml:"primary_host_state"`
	// QoS1Data sends data at QoS 1 instead of the specification's QoS 0.
	QoS1Data bool `yaml:"qos1_data"`
}

// Commands configures the command gate.
type Commands struct {
	// Signers are Ed25519 public keys (PEM, from `lintel keygen`) whose
	// signatures authorise critical commands.
	Signers       []string `yaml:"signers"`
	MaxTTL        Duration `yaml:"max_ttl"`         // default 5m
	RatePerMinute int      `yaml:"rate_per_minute"` // per point, default 30
}

// ClientTLS is the uplink's mutual TLS material.
type ClientTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Buffer sizes the store-and-forward queue.
type Buffer struct {
	MaxBytes       Size     `yaml:"max_bytes"`
	FullPolicy     string   `yaml:"full_policy"` // drop-oldest, reject-new
	CommitInterval Duration `yaml:"commit_interval"`
	TTL            Duration `yaml:"ttl"` // 0: keep until delivered or evicted
}

// Duration is a Go duration string in YAML ("500ms", "5m").
type Duration time.Duration

// UnmarshalYAML decodes the value as a plain string, then parses it.
// goccy/go-yaml prefers this to UnmarshalText, which it serves by
// re-formatting the whole file for every value: quadratic in the file size.
func (d *Duration) UnmarshalYAML(decode func(any) error) error {
	var s string
	if err := decode(&s); err != nil {
		return err
	}
	return d.UnmarshalText([]byte(s))
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q; want e.g. 500ms, 5s, 1m", b)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count with an optional unit ("64KiB", "512MiB", "1GB").
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// UnmarshalYAML decodes the value as a plain string, then parses it (see
// Duration.UnmarshalYAML for why).
func (s *Size) UnmarshalYAML(decode func(any) error) error {
	var text string
	if err := decode(&text); err != nil {
		return err
	}
	return s.UnmarshalText([]byte(text))
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(text, u.suffix) {
			text, mult = strings.TrimSpace(strings.TrimSuffix(text, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("invalid size %q; want e.g. 65536, 64KiB, 512MiB", b)
	}
	*s = Size(n * mult)
	return nil
}

// Defaults, in one place.
const (
	DefaultDataDir    = "/var/lib/lintel"
	DefaultListener   = "127.0.0.1:1883"
	DefaultMetrics    = "127.0.0.1:9108"
	DefaultStatusPage = "127.0.0.1:9109"
	DefaultMaxPacket  = 64 << 10
	DefaultMaxClients = 64
	// Local broker limits, the same as localbroker's own defaults.
	DefaultConnectTimeout      = 5 * time.Second
	DefaultMaxPending          = 256
	DefaultMaxPendingPerSource = 16
	DefaultMaxFiltersPerClient = 100
	DefaultMaxFilters          = 2000
	DefaultMaxPasswordChecks   = 2
	DefaultHomeAssistantPrefix = "homeassistant"
	DefaultPoll                = 5 * time.Second
	DefaultTimeout             = time.Second
	DefaultBaud                = 9600
	DefaultUnit                = 1
	DefaultMaxInflight         = 1024
	DefaultAckTimeout          = 30 * time.Second
	DefaultDeadLetter          = 3
	DefaultBufferBytes         = 512 << 20
	DefaultCommitInterval      = 2 * time.Second
)

func (c *Config) ensureDefaults() {
	if c.Gateway.DataDir == "" {
		c.Gateway.DataDir = DefaultDataDir
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Metrics.Address == "" {
		c.Metrics.Address = DefaultMetrics
	}
	if c.StatusPage != nil && c.StatusPage.Address == "" {
		c.StatusPage.Address = DefaultStatusPage
	}
	lb := &c.LocalBroker
	if len(lb.Listeners) == 0 {
		lb.Listeners = []Listener{{Name: "local", Address: DefaultListener}}
	}
	for i := range lb.Listeners {
		if lb.Listeners[i].Type == "" {
			lb.Listeners[i].Type = "tcp"
		}
	}
	if lb.Limits.MaxPacket == 0 {
		lb.Limits.MaxPacket = DefaultMaxPacket
	}
	if lb.Limits.MaxClients == 0 {
		lb.Limits.MaxClients = DefaultMaxClients
	}
	if lb.HomeAssistant != nil && lb.HomeAssistant.Prefix == "" {
		lb.HomeAssistant.Prefix = DefaultHomeAssistantPrefix
	}
	lim := &lb.Limits
	if lim.ConnectTimeout == 0 {
		lim.ConnectTimeout = Duration(DefaultConnectTimeout)
	}
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&lim.MaxPending, DefaultMaxPending},
		{&lim.MaxPendingPerSource, DefaultMaxPendingPerSource},
		{&lim.MaxFiltersPerClient, DefaultMaxFiltersPerClient},
		{&lim.MaxFilters, DefaultMaxFilters},
		{&lim.MaxPasswordChecks, DefaultMaxPasswordChecks},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for i := range c.Buses {
		b := &c.Buses[i]
		if b.Timeout == 0 {
			b.Timeout = Duration(DefaultTimeout)
		}
		if b.Type == "serial-line" && b.Framing == "" {
			b.Framing = "delimiter"
		}
		if b.Type == "serial-line" && b.Framing == "delimiter" && b.Delimiter == "" {
			b.Delimiter = "\r\n"
		}
		if b.Retries == nil {
			one := 1
			b.Retries = &one
		}
		if b.Type == "modbus-rtu" || b.Type == "serial-line" {
			if b.Baud == 0 {
				b.Baud = DefaultBaud
			}
			if b.Parity == "" {
				b.Parity = "none"
			}
			if b.StopBits == 0 {
				b.StopBits = 1
			}
		}
	}
	for i := range c.Devices {
		d := &c.Devices[i]
		if d.Poll == 0 {
			d.Poll = Duration(DefaultPoll)
		}
		if d.Unit == nil {
			d.Unit = new(DefaultUnit)
		}
	}
	if u := c.Uplink; u != nil {
		if len(u.Forward) == 0 && c.Gateway.ID != "" {
			u.Forward = []string{"lintel/" + c.Gateway.ID + "/#"}
		}
		if u.MaxInflight == 0 {
			u.MaxInflight = DefaultMaxInflight
		}
		if u.AckTimeout == 0 {
			u.AckTimeout = Duration(DefaultAckTimeout)
		}
		if u.DeadLetterAfter == 0 {
			u.DeadLetterAfter = DefaultDeadLetter
		}
		if u.Format == "" {
			u.Format = FormatJSON
		}
		if u.Format == FormatSparkplugB && u.Sparkplug == nil {
			u.Sparkplug = &Sparkplug{}
		}
		if sp := u.Sparkplug; sp != nil && sp.EdgeNodeID == "" {
			sp.EdgeNodeID = c.Gateway.ID
		}
		if sp := u.Sparkplug; sp != nil && sp.PrimaryHostState == "" && sp.PrimaryHostID != "" {
			sp.PrimaryHostState = "auto"
		}
	}
	if c.Privacy.KeyFile == "" {
		c.Privacy.KeyFile = c.Gateway.DataDir + "/privacy.key"
	}
	if c.Buffer.MaxBytes == 0 {
		c.Buffer.MaxBytes = DefaultBufferBytes
	}
	if c.Buffer.FullPolicy == "" {
		c.Buffer.FullPolicy = "drop-oldest"
	}
	if c.Buffer.CommitInterval == 0 {
		c.Buffer.CommitInterval = Duration(DefaultCommitInterval)
	}
}

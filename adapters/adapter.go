package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Adapter is one configured bus.
type Adapter interface {
	// Run polls and listens on the bus and publishes readings, events and
	// device status until ctx ends. It returns nil on a clean stop.
	Run(ctx context.Context, pub Publisher) error
	// Write changes a device. It is called by the command gate only, after
	// the command was authorised.
	Write(ctx context.Context, w WriteRequest) error
}

// Writable is an Adapter whose writes can be checked before they are made:
// the command gate validates everything before it calls Write.
type Writable interface {
	Adapter
	// CheckWrite validates w without touching the device and reports
	// whether a command for it must be signed: always, unless the point or
	// command is explicitly configured for unsigned writes (and is not
	// critical). Errors wrap ErrUnknownTarget, ErrNotWritable or
	// ErrInvalidValue.
	CheckWrite(w WriteRequest) (needsSignature bool, err error)
}

// Errors of CheckWrite and Write that the command gate reports by kind.
var (
	ErrUnknownTarget = errors.New("unknown device, point or command")
	ErrNotWritable   = errors.New("not writable")
	ErrInvalidValue  = errors.New("invalid value")
)

// Publisher takes messages from adapters. Publish may block for backpressure
// and honours ctx.
type Publisher interface {
	Publish(ctx context.Context, m Message) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, m Message) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, m Message) error { return f(ctx, m) }

// Message is one publication from an adapter. The gateway publishes it on
// lintel/<gateway>/<Device>/<Point>.
type Message struct {
	Device  string
	Point   string // StatusPoint for device status
	Payload []byte // JSON, see Reading and DeviceStatus
	Retain  bool
	// High marks status, alarms and access events: they are delivered to
	// the cloud before ordinary readings and evicted from a full buffer last.
	High bool
}

// StatusPoint is the point name of a device's retained status message.
const StatusPoint = "$status"

// WriteRequest asks an adapter to write value to a device's point.
type WriteRequest struct {
	Device string
	Point  string
	Value  json.RawMessage
}

// Quality of a reading.
const (
	QualityGood  = "good"
	QualityStale = "stale"
	QualityBad   = "bad"
)

// Reading is the payload of a point's value (the seq is added on the way to
// the cloud, see the uplink).
type Reading struct {
	V    any       `json:"v"`
	Unit string    `json:"unit,omitempty"`
	TS   Timestamp `json:"ts"`
	Q    string    `json:"q"`
}

// DeviceStatus is the retained payload of lintel/<gateway>/<device>/$status.
type DeviceStatus struct {
	Online bool      `json:"online"`
	Since  Timestamp `json:"since"`
	Error  string    `json:"error,omitempty"`
}

// Timestamp marshals as RFC 3339 UTC with milliseconds, the wire format.
type Timestamp time.Time

// TimeFormat is the wire format of every time stamp.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(TimeFormat) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	*t = Timestamp(v)
	return err
}

package bacnet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTimeout is returned when a device did not answer any try.
var ErrTimeout = errors.New("no answer from device")

// ErrSegmented is returned when a device answered with a segmented response
// the client could not take (NoSegmentation, or over its limits); the
// client aborts the transaction.
var ErrSegmented = errors.New("device sent a segmented response")

// RejectError is a device's Reject of a request.
type RejectError struct{ Reason byte }

func (e *RejectError) Error() string { return fmt.Sprintf("bacnet reject reason %d", e.Reason) }

// AbortError is an Abort of a transaction, by the device (Server) or the client.
type AbortError struct {
	Reason byte
	Server bool
}

func (e *AbortError) Error() string { return fmt.Sprintf("bacnet abort reason %d", e.Reason) }

// IsSegmentation reports whether err means the response did not fit one
// APDU: the device aborted for lack of segmentation, or segmented.
func IsSegmentation(err error) bool {
	var a *AbortError
	return errors.Is(err, ErrSegmented) || errors.As(err, &a) && (a.Reason == AbortSegmentationNotSupported || a.Reason == AbortBufferOverflow)
}

// ClientOptions tune a Client.
type ClientOptions struct {
	// Timeout is how long one try waits for the answer (default 2 s);
	// Retries how often a request is sent again after a timeout (default 2).
	Timeout time.Duration
	Retries int
	// Broadcast is where Who-Is goes (default 255.255.255.255:47808).
	Broadcast *net.UDPAddr
	// BBMD, when set, receives broadcasts as Distribute-Broadcast-To-Network:
	// the client must be registered there as a foreign device.
	BBMD *net.UDPAddr
	// OnCOV receives unconfirmed COV notifications, from the client's
	// reading goroutine: it must not block.
	OnCOV func(from net.Addr, n COVNotification)
	Log   *slog.Logger
	// NoSegmentation makes the client refuse segmented answers (it aborts
	// them) instead of reassembling them.
	NoSegmentation bool
	// Counters, when set, count the confirmed requests.
	Counters *Counters
}

// Counters count a client's confirmed requests; safe for concurrent use.
type Counters struct {
	// Requests sent (a retry is not a new request); Timeouts of requests
	// that no try answered; Refusals answered by Error, Reject or Abort.
	Requests, Timeouts, Refusals atomic.Uint64
}

// Peer is a device found by Who-Is.
type Peer struct {
	IAm
	Addr net.Addr // *net.UDPAddr, or *RoutedAddr behind a BACnet router
}

// RoutedAddr is a device behind a BACnet router (an MS/TP trunk, another
// IP network): the router's BACnet/IP address, and the device's network
// number and MAC address there.
type RoutedAddr struct {
	Router *net.UDPAddr
	Route
}

// Network implements net.Addr.
func (a *RoutedAddr) Network() string { return "bacnet" }

// String is router/network:MAC in hex, e.g. 10.0.0.5:47808/2001:0A.
func (a *RoutedAddr) String() string { return fmt.Sprintf("%s/%d:%X", a.Router, a.Net, a.MAC) }

// writeTo sends an NPDU-wrapped APDU to a local or routed address.
func (c *Client) writeTo(to net.Addr, fn byte, apdu []byte, expectingReply bool, dst *Route) error {
	if r, ok := to.(*RoutedAddr); ok {
		route := r.Route
		to, dst = r.Router, &route
	}
	_, err := c.conn.WriteTo(EncodeBVLC(fn, EncodeNPDUVia(apdu, expectingReply, dst, nil)), to)
	return err
}

// Client sends BACnet/IP requests over one UDP socket and matches answers by
// peer and invoke id. It is safe for concurrent use.
type Client struct {
	conn net.PacketConn
	opt  ClientOptions
	log  *slog.Logger

	mu      sync.Mutex
	pending map[pendingKey]chan APDU
	bvlc    map[string]chan uint16
	iams    map[chan Peer]struct{}
	nextID  byte

	wg sync.WaitGroup
}

type pendingKey struct {
	peer string
	id   byte
}

// NewClient starts reading conn; Close stops it and closes conn.
func NewClient(conn net.PacketConn, opt ClientOptions) *Client {
	opt.Timeout = cmp.Or(opt.Timeout, 2*time.Second)
	if opt.Retries <= 0 {
		opt.Retries = 2
	}
	if opt.Counters == nil {
		opt.Counters = &Counters{}
	}
	if opt.Broadcast == nil {
		opt.Broadcast = &net.UDPAddr{IP: net.IPv4bcast, Port: DefaultPort}
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{conn: conn, opt: opt, log: log, pending: map[pendingKey]chan APDU{},
		bvlc: map[string]chan uint16{}, iams: map[chan Peer]struct{}{}}
	c.wg.Add(1)
	go c.read()
	return c
}

// Close closes the socket and waits for the reading goroutine.
func (c *Client) Close() error {
	err := c.conn.Close()
	c.wg.Wait()
	return err
}

// LocalAddr is the client's socket address.
func (c *Client) LocalAddr() net.Addr { return c.conn.LocalAddr() }

func (c *Client) read() {
	defer c.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := c.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Debug("bacnet read", "err", err)
			continue
		}
		c.handle(buf[:n], from)
	}
}

func (c *Client) handle(b []byte, from net.Addr) {
	f, err := DecodeFrame(b)
	if err != nil {
		c.log.Debug("bacnet frame dropped", "from", from, "err", err)
		return
	}
	if f.Function == BVLCResult {
		c.mu.Lock()
		ch := c.bvlc[from.String()]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- f.Result:
			default:
			}
		}
		return
	}
	if f.APDU == nil {
		return
	}
	a, err := DecodeAPDU(f.APDU)
	if err != nil {
		c.log.Debug("bacnet APDU dropped", "from", from, "err", err)
		return
	}
	// The peer is who the answer is for: the original sender of a
	// forwarded broadcast, and a routed station behind its router.
	peer := from
	if f.Origin.IsValid() {
		peer = udpAddr(f.Origin)
	}
	if f.SNET != 0 {
		if ua, ok := peer.(*net.UDPAddr); ok {
			peer = &RoutedAddr{Router: ua, Route: Route{Net: f.SNET, MAC: append([]byte{}, f.SADR...)}}
		}
	}
	switch a.Type {
	case UnconfirmedRequest:
		c.unconfirmed(a, peer)
	case ConfirmedRequest:
		// This client serves nothing (it subscribes to unconfirmed COV
		// only); say so instead of letting the device time out.
		c.send(peer, APDU{Type: RejectPDU, InvokeID: a.InvokeID, Reason: RejectUnrecognizedService})
	case SimpleACK, ComplexACK, ErrorPDU, RejectPDU, AbortPDU:
		c.mu.Lock()
		ch := c.pending[pendingKey{peer.String(), a.InvokeID}]
		c.mu.Unlock()
		if ch == nil {
			if a.Type == ComplexACK && a.Segmented { // a transaction we no longer wait for
				c.send(peer, APDU{Type: AbortPDU, InvokeID: a.InvokeID, Reason: AbortInvalidAPDUInThisState})
			}
			return
		}
		select {
		case ch <- a:
		default: // the requester has its answer; a duplicate segment is re-sent by the device
		}
	}
}

func (c *Client) unconfirmed(a APDU, from net.Addr) {
	switch a.Service {
	case ServiceIAm:
		iam, err := DecodeIAm(a.Data)
		if err != nil {
			return
		}
		d := Peer{IAm: iam, Addr: from}
		c.mu.Lock()
		for ch := range c.iams {
			select {
			case ch <- d:
			default:
			}
		}
		c.mu.Unlock()
	case ServiceUnconfirmedCOVNotification:
		n, err := DecodeCOVNotification(a.Data)
		if err != nil {
			c.log.Debug("bacnet COV notification dropped", "from", from, "err", err)
			return
		}
		if c.opt.OnCOV != nil {
			c.opt.OnCOV(from, n)
		}
	}
}

// Request sends a confirmed request and returns the service data of the
// Complex-ACK (nil for a Simple-ACK). A timeout is retried with the same
// invoke id; Error, Reject and Abort answers are returned as *Error,
// *RejectError and *AbortError.
func (c *Client) Request(ctx context.Context, to net.Addr, service byte, data []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // send nothing: an answer must not race the cancellation
	}
	id, ch, err := c.reserve(to)
	if err != nil {
		return nil, err
	}
	defer c.release(to, id)
	c.opt.Counters.Requests.Add(1)
	req := APDU{Type: ConfirmedRequest, MaxAPDU: 5, InvokeID: id, Service: service, Data: data}
	if !c.opt.NoSegmentation {
		req.SegmentedAccepted, req.MaxSegments = true, maxSegmentsCode
	}
	apdu := req.Encode()
	timer := time.NewTimer(c.opt.Timeout)
	defer timer.Stop()
	for try := 0; try <= c.opt.Retries; try++ {
		if err := c.writeTo(to, BVLCOriginalUnicastNPDU, apdu, true, nil); err != nil {
			return nil, fmt.Errorf("send to %s: %w", to, err)
		}
		timer.Reset(c.opt.Timeout)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			continue
		case a := <-ch:
			if a.Type == ComplexACK && a.Segmented {
				return c.reassemble(ctx, to, a, ch, service)
			}
			data, err := answer(a, service)
			if a.Type == ErrorPDU || a.Type == RejectPDU || a.Type == AbortPDU {
				c.opt.Counters.Refusals.Add(1)
			}
			return data, err
		}
	}
	c.opt.Counters.Timeouts.Add(1)
	return nil, fmt.Errorf("%s: %w", to, ErrTimeout)
}

// Segmentation limits of the client: at most maxSegments segments (sent as
// maxSegmentsCode, clause 20.1.2.4) and maxReassembled octets of service data.
const (
	maxSegmentsCode = 5 // 32 segments
	maxSegments     = 32
	maxReassembled  = 64 << 10
)

// reassemble receives the segments of a segmented Complex-ACK whose first
// segment is first, acknowledging each one (window size 1), and returns the
// whole service data. A segment out of order is answered with a negative
// Segment-ACK naming the last one received, so the device resends.
func (c *Client) reassemble(ctx context.Context, to net.Addr, first APDU, ch chan APDU, service byte) ([]byte, error) {
	abort := func(reason byte, err error) ([]byte, error) {
		c.send(to, APDU{Type: AbortPDU, InvokeID: first.InvokeID, Reason: reason})
		return nil, err
	}
	if c.opt.NoSegmentation {
		return abort(AbortSegmentationNotSupported, ErrSegmented)
	}
	if first.Sequence != 0 || first.Service != service {
		return abort(AbortInvalidAPDUInThisState, malformed("segmented answer starts with segment %d", first.Sequence))
	}
	data := append([]byte{}, first.Data...)
	last := byte(0)
	c.send(to, APDU{Type: SegmentACK, InvokeID: first.InvokeID, Sequence: 0, Window: 1})
	more := first.MoreFollows
	timer := time.NewTimer(c.opt.Timeout)
	defer timer.Stop()
	for more {
		timer.Reset(c.opt.Timeout * time.Duration(c.opt.Retries+1))
		var a APDU
		select {
		case <-ctx.Done():
			return abort(AbortOther, ctx.Err())
		case <-timer.C:
			c.opt.Counters.Timeouts.Add(1)
			return abort(AbortOther, fmt.Errorf("%s: segment %d: %w", to, last+1, ErrTimeout))
		case a = <-ch:
		}
		if a.Type != ComplexACK || !a.Segmented {
			return answer(a, service)
		}
		switch a.Sequence {
		case last + 1:
			last = a.Sequence
			data = append(data, a.Data...)
			more = a.MoreFollows
			if int(last) >= maxSegments || len(data) > maxReassembled {
				return abort(AbortBufferOverflow, fmt.Errorf("%s: answer over %d segments or %d octets: %w", to, maxSegments, maxReassembled, ErrSegmented))
			}
			c.send(to, APDU{Type: SegmentACK, InvokeID: first.InvokeID, Sequence: last, Window: 1})
		default:
			c.send(to, APDU{Type: SegmentACK, NAK: true, InvokeID: first.InvokeID, Sequence: last, Window: 1})
		}
	}
	return data, nil
}

func (c *Client) send(to net.Addr, a APDU) {
	c.writeTo(to, BVLCOriginalUnicastNPDU, a.Encode(), false, nil)
}

func answer(a APDU, service byte) ([]byte, error) {
	switch a.Type {
	case SimpleACK, ComplexACK:
		if a.Service != service {
			return nil, malformed("answer for service %d to service %d", a.Service, service)
		}
		if a.Segmented {
			return nil, ErrSegmented
		}
		return a.Data, nil
	case ErrorPDU:
		return nil, &Error{Class: a.ErrorClass, Code: a.ErrorCode}
	case RejectPDU:
		return nil, &RejectError{Reason: a.Reason}
	}
	return nil, &AbortError{Reason: a.Reason, Server: a.Server}
}

// reserve takes a free invoke id for peer.
func (c *Client) reserve(to net.Addr) (byte, chan APDU, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range 256 {
		id := c.nextID
		c.nextID++
		k := pendingKey{to.String(), id}
		if _, used := c.pending[k]; !used {
			ch := make(chan APDU, 4)
			c.pending[k] = ch
			return id, ch, nil
		}
	}
	return 0, nil, fmt.Errorf("%s: all 256 invoke ids in use", to)
}

func (c *Client) release(to net.Addr, id byte) {
	c.mu.Lock()
	delete(c.pending, pendingKey{to.String(), id})
	c.mu.Unlock()
}

func (c *Client) sendUnconfirmed(to net.Addr, fn byte, service byte, data []byte, dst *Route) error {
	a := APDU{Type: UnconfirmedRequest, Service: service, Data: data}
	return c.writeTo(to, fn, a.Encode(), false, dst)
}

// WhoIs broadcasts a global Who-Is for instances low..high (both -1: all)
// and collects the I-Am answers until ctx ends, one per device, by instance.
func (c *Client) WhoIs(ctx context.Context, low, high int64) ([]Peer, error) {
	ch := make(chan Peer, 256)
	c.mu.Lock()
	c.iams[ch] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.iams, ch)
		c.mu.Unlock()
	}()
	to, fn := c.opt.Broadcast, byte(BVLCOriginalBroadcastNPDU)
	if c.opt.BBMD != nil {
		to, fn = c.opt.BBMD, BVLCDistributeBroadcast
	}
	// A global broadcast, so that routers pass it on to their networks.
	global := &Route{Net: GlobalBroadcast}
	if err := c.sendUnconfirmed(to, fn, ServiceWhoIs, WhoIs{Low: low, High: high}.Encode(), global); err != nil {
		return nil, fmt.Errorf("who-is to %s: %w", to, err)
	}
	found := map[uint32]Peer{}
	for {
		select {
		case d := <-ch:
			if (WhoIs{Low: low, High: high}).Matches(d.Device.Instance) {
				found[d.Device.Instance] = d
			}
		case <-ctx.Done():
			out := make([]Peer, 0, len(found))
			for _, d := range found {
				out = append(out, d)
			}
			slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.Device.Instance, b.Device.Instance) })
			return out, nil
		}
	}
}

// RegisterForeignDevice registers the client with a BBMD for ttl seconds
// and waits for its BVLC-Result.
func (c *Client) RegisterForeignDevice(ctx context.Context, bbmd *net.UDPAddr, ttl uint16) error {
	ch := make(chan uint16, 1)
	c.mu.Lock()
	c.bvlc[bbmd.String()] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.bvlc, bbmd.String())
		c.mu.Unlock()
	}()
	for try := 0; try <= c.opt.Retries; try++ {
		if _, err := c.conn.WriteTo(EncodeRegisterForeignDevice(ttl), bbmd); err != nil {
			return fmt.Errorf("register with BBMD %s: %w", bbmd, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.opt.Timeout):
		case code := <-ch:
			if code != 0 {
				return fmt.Errorf("BBMD %s refused registration: result %#04x", bbmd, code)
			}
			return nil
		}
	}
	return fmt.Errorf("register with BBMD %s: %w", bbmd, ErrTimeout)
}

// ReadProperty reads one property (index NoIndex for all of it).
func (c *Client) ReadProperty(ctx context.Context, to net.Addr, obj ObjectID, prop PropertyID, index int64) ([]any, error) {
	rp := ReadProperty{Object: obj, PropertyRef: PropertyRef{Property: prop, Index: index}}
	d, err := c.Request(ctx, to, ServiceReadProperty, rp.Encode())
	if err != nil {
		return nil, err
	}
	ack, err := DecodeReadPropertyACK(d)
	if err != nil {
		return nil, err
	}
	if ack.Object != obj || ack.Property != prop {
		return nil, malformed("answer for %s property %d", ack.Object, ack.Property)
	}
	return ack.Values, nil
}

// ReadPropertyMultiple reads several properties of several objects at once.
func (c *Client) ReadPropertyMultiple(ctx context.Context, to net.Addr, specs []ReadAccessSpec) ([]ReadAccessResult, error) {
	d, err := c.Request(ctx, to, ServiceReadPropertyMultiple, EncodeReadPropertyMultiple(specs))
	if err != nil {
		return nil, err
	}
	return DecodeReadPropertyMultipleACK(d)
}

// WriteProperty writes a property; a Null value at a priority relinquishes it.
func (c *Client) WriteProperty(ctx context.Context, to net.Addr, w WriteProperty) error {
	d, err := w.Encode()
	if err != nil {
		return err
	}
	_, err = c.Request(ctx, to, ServiceWriteProperty, d)
	return err
}

// SubscribeCOV subscribes (or cancels) unconfirmed COV notifications.
func (c *Client) SubscribeCOV(ctx context.Context, to net.Addr, s SubscribeCOV) error {
	_, err := c.Request(ctx, to, ServiceSubscribeCOV, s.Encode())
	return err
}

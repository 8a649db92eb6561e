package bacnet

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// BVLC functions of BACnet/IP (Annex J).
const (
	BVLCResult                = 0x00
	BVLCForwardedNPDU         = 0x04
	BVLCRegisterForeignDevice = 0x05
	BVLCDistributeBroadcast   = 0x09
	BVLCOriginalUnicastNPDU   = 0x0A
	BVLCOriginalBroadcastNPDU = 0x0B
	bvlcType                  = 0x81
	DefaultPort               = 47808 // 0xBAC0
	bvlcHeader                = 4
	npduVersion               = 0x01
	npduExpectingReply        = 0x04
	npduNetworkMessage        = 0x80
	npduDestination           = 0x20
	npduSource                = 0x08
	maxFrame                  = 1497 // largest B/IP frame: 4 + NPDU + 1476
)

// Frame is one decoded BACnet/IP datagram.
type Frame struct {
	Function byte
	// Origin is the original source of a Forwarded-NPDU.
	Origin netip.AddrPort
	// Result is the code of a BVLC-Result; TTL the time-to-live of a
	// Register-Foreign-Device.
	Result uint16
	TTL    uint16
	// NPDU fields.
	NetworkMessage bool
	ExpectingReply bool
	SNET           uint16 // source network of a routed message (0: local)
	SADR           []byte
	DNET           uint16 // destination network (0: local; 0xFFFF: global broadcast)
	DADR           []byte
	// APDU is the application PDU (nil for BVLC-only and network messages).
	APDU []byte
}

// EncodeBVLC wraps payload in a BVLC header of function fn.
func EncodeBVLC(fn byte, payload []byte) []byte {
	b := []byte{bvlcType, fn, 0, 0}
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// EncodeNPDU returns a local NPDU (no routing) carrying apdu.
func EncodeNPDU(apdu []byte, expectingReply bool) []byte {
	return EncodeNPDUVia(apdu, expectingReply, nil, nil)
}

// Route is a remote BACnet network and a station's MAC address on it (an
// empty MAC with a destination means a broadcast on that network).
type Route struct {
	Net uint16
	MAC []byte
}

// GlobalBroadcast is the destination network of a global broadcast.
const GlobalBroadcast = 0xFFFF

// EncodeNPDUVia returns an NPDU carrying apdu to the destination dst (nil:
// this network) from source src (nil: this station); routers add src.
func EncodeNPDUVia(apdu []byte, expectingReply bool, dst, src *Route) []byte {
	ctl := byte(0)
	if expectingReply {
		ctl |= npduExpectingReply
	}
	b := []byte{npduVersion, 0}
	if dst != nil {
		ctl |= npduDestination
		b = binary.BigEndian.AppendUint16(b, dst.Net)
		b = append(append(b, byte(len(dst.MAC))), dst.MAC...)
	}
	if src != nil {
		ctl |= npduSource
		b = binary.BigEndian.AppendUint16(b, src.Net)
		b = append(append(b, byte(len(src.MAC))), src.MAC...)
	}
	if dst != nil {
		b = append(b, 255) // hop count
	}
	b[1] = ctl
	return append(b, apdu...)
}

// EncodeRegisterForeignDevice is the BVLC asking a BBMD to accept us as a
// foreign device for ttl seconds.
func EncodeRegisterForeignDevice(ttl uint16) []byte {
	return EncodeBVLC(BVLCRegisterForeignDevice, binary.BigEndian.AppendUint16(nil, ttl))
}

// EncodeBVLCResult is a BVLC-Result with code (0: successful completion).
func EncodeBVLCResult(code uint16) []byte {
	return EncodeBVLC(BVLCResult, binary.BigEndian.AppendUint16(nil, code))
}

// DecodeFrame decodes a BACnet/IP datagram down to its APDU.
func DecodeFrame(b []byte) (Frame, error) {
	var f Frame
	if len(b) < bvlcHeader || b[0] != bvlcType {
		return f, malformed("not a BACnet/IP frame")
	}
	f.Function = b[1]
	if n := int(binary.BigEndian.Uint16(b[2:])); n != len(b) {
		return f, malformed("BVLC length %d, datagram %d", n, len(b))
	}
	p := b[bvlcHeader:]
	switch f.Function {
	case BVLCResult:
		if len(p) != 2 {
			return f, malformed("BVLC-Result of %d bytes", len(p))
		}
		f.Result = binary.BigEndian.Uint16(p)
		return f, nil
	case BVLCRegisterForeignDevice:
		if len(p) != 2 {
			return f, malformed("Register-Foreign-Device of %d bytes", len(p))
		}
		f.TTL = binary.BigEndian.Uint16(p)
		return f, nil
	case BVLCForwardedNPDU:
		if len(p) < 6 {
			return f, malformed("truncated Forwarded-NPDU")
		}
		f.Origin = netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[:4])), binary.BigEndian.Uint16(p[4:]))
		p = p[6:]
	case BVLCOriginalUnicastNPDU, BVLCOriginalBroadcastNPDU, BVLCDistributeBroadcast:
	default:
		return f, malformed("BVLC function %#x not supported", f.Function)
	}
	return f, f.decodeNPDU(p)
}

func (f *Frame) decodeNPDU(p []byte) error {
	if len(p) < 2 || p[0] != npduVersion {
		return malformed("NPDU version")
	}
	ctl := p[1]
	f.NetworkMessage = ctl&npduNetworkMessage != 0
	f.ExpectingReply = ctl&npduExpectingReply != 0
	i := 2
	addr := func() (uint16, []byte, error) {
		if len(p) < i+3 {
			return 0, nil, malformed("truncated NPDU address")
		}
		net := binary.BigEndian.Uint16(p[i:])
		n := int(p[i+2])
		i += 3
		if len(p) < i+n {
			return 0, nil, malformed("truncated NPDU address")
		}
		a := p[i : i+n]
		i += n
		return net, a, nil
	}
	if ctl&npduDestination != 0 {
		var err error
		if f.DNET, f.DADR, err = addr(); err != nil {
			return err
		}
		if f.DNET == 0 {
			return malformed("destination network 0")
		}
	}
	if ctl&npduSource != 0 {
		var err error
		if f.SNET, f.SADR, err = addr(); err != nil {
			return err
		}
		if f.SNET == 0 || f.SNET == GlobalBroadcast || len(f.SADR) == 0 {
			return malformed("source network %d with %d-octet address", f.SNET, len(f.SADR))
		}
	}
	if ctl&npduDestination != 0 {
		if len(p) < i+1 {
			return malformed("missing hop count")
		}
		i++
	}
	if f.NetworkMessage {
		return nil // network-layer messages are not for this client
	}
	f.APDU = p[i:]
	if len(f.APDU) == 0 {
		return malformed("empty APDU")
	}
	return nil
}

// PDU types (clause 20.1).
type PDUType byte

// The APDU types.
const (
	ConfirmedRequest   PDUType = 0
	UnconfirmedRequest PDUType = 1
	SimpleACK          PDUType = 2
	ComplexACK         PDUType = 3
	SegmentACK         PDUType = 4
	ErrorPDU           PDUType = 5
	RejectPDU          PDUType = 6
	AbortPDU           PDUType = 7
)

// Service choices.
const (
	ServiceConfirmedCOVNotification   byte = 1
	ServiceSubscribeCOV               byte = 5
	ServiceReadProperty               byte = 12
	ServiceReadPropertyMultiple       byte = 14
	ServiceWriteProperty              byte = 15
	ServiceIAm                        byte = 0
	ServiceUnconfirmedCOVNotification byte = 2
	ServiceWhoIs                      byte = 8
)

// Abort and reject reasons the client and simulator use.
const (
	AbortOther                    = 0
	AbortBufferOverflow           = 1
	AbortInvalidAPDUInThisState   = 2
	AbortSegmentationNotSupported = 4
	RejectUnrecognizedService     = 9
	RejectMissingRequiredParam    = 5
	RejectInvalidTag              = 4
)

// APDU is one decoded application PDU.
type APDU struct {
	Type PDUType
	// Confirmed request and Complex-ACK header bits.
	Segmented         bool
	MoreFollows       bool
	SegmentedAccepted bool // confirmed request: the client accepts a segmented response
	MaxSegments       byte // confirmed request, encoded (0: unspecified)
	MaxAPDU           byte // confirmed request, encoded (0: 50 … 5: 1476)
	InvokeID          byte
	Sequence          byte // segmented PDUs and Segment-ACK
	Window            byte
	// Service is the service choice (requests, ACKs, Error).
	Service byte
	// Server is set on an Abort or Segment-ACK sent by the server; NAK on a
	// negative Segment-ACK.
	Server bool
	NAK    bool
	// Reason of a Reject or Abort.
	Reason byte
	// ErrorClass and ErrorCode of an Error PDU.
	ErrorClass, ErrorCode uint32
	// Data is the service data.
	Data []byte
}

// MaxAPDULength is the octet count an encoded max-APDU value stands for.
func MaxAPDULength(enc byte) int {
	switch enc & 0x0F {
	case 0:
		return 50
	case 1:
		return 128
	case 2:
		return 206
	case 3:
		return 480
	case 4:
		return 1024
	}
	return 1476
}

// Encode returns the APDU's octets.
func (a APDU) Encode() []byte {
	first := byte(a.Type) << 4
	switch a.Type {
	case ConfirmedRequest:
		if a.Segmented {
			first |= 0x08
		}
		if a.MoreFollows {
			first |= 0x04
		}
		if a.SegmentedAccepted {
			first |= 0x02
		}
		b := []byte{first, a.MaxSegments<<4 | a.MaxAPDU&0x0F, a.InvokeID}
		if a.Segmented {
			b = append(b, a.Sequence, a.Window)
		}
		return append(append(b, a.Service), a.Data...)
	case UnconfirmedRequest:
		return append([]byte{first, a.Service}, a.Data...)
	case SimpleACK:
		return []byte{first, a.InvokeID, a.Service}
	case ComplexACK:
		if a.Segmented {
			first |= 0x08
		}
		if a.MoreFollows {
			first |= 0x04
		}
		b := []byte{first, a.InvokeID}
		if a.Segmented {
			b = append(b, a.Sequence, a.Window)
		}
		return append(append(b, a.Service), a.Data...)
	case SegmentACK:
		if a.NAK {
			first |= 0x02
		}
		if a.Server {
			first |= 0x01
		}
		return []byte{first, a.InvokeID, a.Sequence, a.Window}
	case ErrorPDU:
		b := []byte{first, a.InvokeID, a.Service}
		b, _ = AppendValue(b, Enumerated(a.ErrorClass))
		b, _ = AppendValue(b, Enumerated(a.ErrorCode))
		return b
	case RejectPDU:
		return []byte{first, a.InvokeID, a.Reason}
	case AbortPDU:
		if a.Server {
			first |= 0x01
		}
		return []byte{first, a.InvokeID, a.Reason}
	}
	return nil
}

// DecodeAPDU decodes an APDU's header; the service data stays in Data
// (for an Error PDU the class and code are decoded). It never panics.
func DecodeAPDU(b []byte) (APDU, error) {
	var a APDU
	if len(b) < 2 {
		return a, malformed("APDU of %d bytes", len(b))
	}
	a.Type = PDUType(b[0] >> 4)
	need := func(n int) error {
		if len(b) < n {
			return malformed("truncated %d APDU", a.Type)
		}
		return nil
	}
	switch a.Type {
	case ConfirmedRequest:
		a.Segmented, a.MoreFollows, a.SegmentedAccepted = b[0]&0x08 != 0, b[0]&0x04 != 0, b[0]&0x02 != 0
		n := 4
		if a.Segmented {
			n = 6
		}
		if err := need(n); err != nil {
			return a, err
		}
		a.MaxSegments, a.MaxAPDU, a.InvokeID = b[1]>>4&0x07, b[1]&0x0F, b[2]
		if a.Segmented {
			a.Sequence, a.Window = b[3], b[4]
		}
		a.Service, a.Data = b[n-1], b[n:]
	case UnconfirmedRequest:
		a.Service, a.Data = b[1], b[2:]
	case SimpleACK:
		if err := need(3); err != nil {
			return a, err
		}
		a.InvokeID, a.Service = b[1], b[2]
	case ComplexACK:
		a.Segmented, a.MoreFollows = b[0]&0x08 != 0, b[0]&0x04 != 0
		n := 3
		if a.Segmented {
			n = 5
		}
		if err := need(n); err != nil {
			return a, err
		}
		a.InvokeID = b[1]
		if a.Segmented {
			a.Sequence, a.Window = b[2], b[3]
		}
		a.Service, a.Data = b[n-1], b[n:]
	case SegmentACK:
		if err := need(4); err != nil {
			return a, err
		}
		a.NAK, a.Server = b[0]&0x02 != 0, b[0]&0x01 != 0
		a.InvokeID, a.Sequence, a.Window = b[1], b[2], b[3]
	case ErrorPDU:
		if err := need(3); err != nil {
			return a, err
		}
		a.InvokeID, a.Service = b[1], b[2]
		r := &reader{b: b[3:]}
		// Some services wrap the error in context tags; both forms carry
		// two enumerated values first.
		if r.isOpening(0) {
			r.i++
		}
		for i, dst := range []*uint32{&a.ErrorClass, &a.ErrorCode} {
			v, err := r.value(0)
			if err != nil {
				return a, err
			}
			e, ok := v.(Enumerated)
			if !ok {
				return a, malformed("error %s is %T", [2]string{"class", "code"}[i], v)
			}
			*dst = uint32(e)
		}
	case RejectPDU, AbortPDU:
		if err := need(3); err != nil {
			return a, err
		}
		a.Server = a.Type == AbortPDU && b[0]&0x01 != 0
		a.InvokeID, a.Reason = b[1], b[2]
	default:
		return a, malformed("PDU type %d", a.Type)
	}
	return a, nil
}

// udpAddr turns an address into the form net.PacketConn wants.
func udpAddr(ap netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(ap) }

// ResolveAddress parses host[:port] with the BACnet/IP default port.
func ResolveAddress(s string) (*net.UDPAddr, error) {
	if _, _, err := net.SplitHostPort(s); err != nil {
		s = net.JoinHostPort(s, fmt.Sprint(DefaultPort))
	}
	a, err := net.ResolveUDPAddr("udp4", s)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", s, err)
	}
	return a, nil
}

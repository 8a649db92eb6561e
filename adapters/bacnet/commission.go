package bacnet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ParseObjectID parses "analog-input:3" as written in the config and in
// the snippets of Snippet.
func ParseObjectID(s string) (ObjectID, error) {
	typ, inst, ok := strings.Cut(s, ":")
	if !ok {
		return ObjectID{}, fmt.Errorf("object %q: want type:instance, e.g. analog-input:3", s)
	}
	t, err := ParseObjectType(typ)
	if err != nil {
		return ObjectID{}, fmt.Errorf("object %q: %w", s, err)
	}
	n, err := strconv.ParseUint(inst, 10, 32)
	if err != nil || n > MaxInstance {
		return ObjectID{}, fmt.Errorf("object %q: instance must be 0..%d", s, MaxInstance)
	}
	return ObjectID{Type: t, Instance: uint32(n)}, nil
}

// DiscoverOptions tune Discover.
type DiscoverOptions struct {
	// Broadcast is where Who-Is goes (default 255.255.255.255:47808).
	Broadcast *net.UDPAddr
	// BBMD, when set, registers the socket there as a foreign device for
	// TTL seconds (default 60) and sends the Who-Is through it, for devices
	// on other subnets.
	BBMD *net.UDPAddr
	TTL  uint16
	// Low and High bound the instances asked when Range is set.
	Range     bool
	Low, High uint32
}

// Discover sends Who-Is on conn and returns the devices that answered
// within timeout, by instance. It takes conn over and closes it. Many
// devices broadcast their I-Am: to hear those, conn must be bound to port
// 47808 (or registered with a BBMD).
func Discover(ctx context.Context, conn net.PacketConn, timeout time.Duration, opt DiscoverOptions) ([]Peer, error) {
	c := NewClient(conn, ClientOptions{Broadcast: opt.Broadcast, BBMD: opt.BBMD, Timeout: min(timeout, 2*time.Second)})
	defer c.Close()
	if opt.BBMD != nil {
		if err := c.RegisterForeignDevice(ctx, opt.BBMD, cmp.Or(opt.TTL, 60)); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	low, high := int64(-1), int64(-1)
	if opt.Range {
		low, high = int64(opt.Low), int64(opt.High)
	}
	return c.WhoIs(ctx, low, high)
}

// ObjectInfo describes one object of a device for commissioning.
type ObjectInfo struct {
	Object ObjectID
	Name   string
	// Units is the BACnet engineering unit (analog objects); Unit its
	// symbol, empty when unknown or none.
	Units    uint32
	HasUnits bool
	Unit     string
	Value    any // present-value as it would be published (nil if unreadable)
	Err      error
}

// Objects walks a device's object list and reads each analog, binary and
// multi-state object's name, units and present-value. A device that cannot
// send its whole list in one answer is read one list entry at a time.
func Objects(ctx context.Context, c *Client, dev Peer) ([]ObjectInfo, error) {
	list, err := c.ReadProperty(ctx, dev.Addr, dev.Device, PropObjectList, NoIndex)
	if IsSegmentation(err) {
		list, err = objectListByIndex(ctx, c, dev)
	}
	if err != nil {
		return nil, fmt.Errorf("object list of device %d: %w", dev.Device.Instance, err)
	}
	var out []ObjectInfo
	for _, v := range list {
		id, ok := v.(ObjectID)
		if !ok || !(id.Type.IsAnalog() || id.Type.IsBinary() || id.Type.IsMultiState()) {
			continue
		}
		out = append(out, describe(ctx, c, dev, id))
	}
	return out, nil
}

func objectListByIndex(ctx context.Context, c *Client, dev Peer) ([]any, error) {
	n, err := c.ReadProperty(ctx, dev.Addr, dev.Device, PropObjectList, 0)
	if err != nil {
		return nil, err
	}
	count, ok := first(n, 0).(uint64)
	if !ok || len(n) != 1 {
		return nil, malformed("object list length %v", n)
	}
	var list []any
	for i := uint64(1); i <= count; i++ {
		v, err := c.ReadProperty(ctx, dev.Addr, dev.Device, PropObjectList, int64(i))
		if err != nil {
			return nil, err
		}
		list = append(list, v...)
	}
	return list, nil
}

func describe(ctx context.Context, c *Client, dev Peer, id ObjectID) ObjectInfo {
	info := ObjectInfo{Object: id}
	refs := []PropertyRef{{PropObjectName, NoIndex}, {PropPresentValue, NoIndex}}
	if id.Type.IsAnalog() {
		refs = append(refs, PropertyRef{PropUnits, NoIndex})
	}
	res := map[PropertyID][]any{}
	rpm, err := c.ReadPropertyMultiple(ctx, dev.Addr, []ReadAccessSpec{{Object: id, Properties: refs}})
	var rej *RejectError
	if errors.As(err, &rej) {
		err = nil
		for _, r := range refs {
			if vals, rerr := c.ReadProperty(ctx, dev.Addr, id, r.Property, NoIndex); rerr == nil {
				res[r.Property] = vals
			}
		}
	}
	if err != nil {
		info.Err = err
		return info
	}
	for _, o := range rpm {
		for _, r := range o.Results {
			if r.Err == nil {
				res[r.Property] = r.Values
			}
		}
	}
	info.Name, _ = first(res[PropObjectName], 0).(string)
	if u, ok := first(res[PropUnits], 0).(Enumerated); ok {
		info.Units, info.HasUnits = uint32(u), true
		info.Unit, _ = UnitSymbol(uint32(u))
	}
	if v := first(res[PropPresentValue], 0); v != nil {
		info.Value, _ = engineering(id.Type, v)
	}
	return info
}

// Snippet renders the config of a device and its objects as YAML that a
// technician can paste under a bacnet bus's devices and edit: point names
// come from object names, every point read-only.
func Snippet(name string, dev Peer, objs []ObjectInfo) string {
	var sb strings.Builder
	if r, ok := dev.Addr.(*RoutedAddr); ok {
		fmt.Fprintf(&sb, "- name: %s\n  address: %q\n  network: %d\n  mac: %q\n", yamlName(name), r.Router.String(), r.Net, fmt.Sprintf("%X", r.MAC))
	} else {
		fmt.Fprintf(&sb, "- name: %s\n  address: %q\n", yamlName(name), dev.Addr.String())
	}
	fmt.Fprintf(&sb, "  instance: %d\n  points:\n", dev.Device.Instance)
	used := map[string]int{}
	for _, o := range objs {
		p := pointName(o.Name, o.Object)
		if used[p]++; used[p] > 1 {
			p = fmt.Sprintf("%s_%d", p, used[p])
		}
		comment := o.Name
		if o.Value != nil {
			comment += fmt.Sprintf(" = %v", o.Value)
		}
		if o.Unit != "" {
			comment += " " + o.Unit
		} else if o.HasUnits && o.Units != UnitNoUnits {
			comment += fmt.Sprintf(" (BACnet unit %d: set unit)", o.Units)
		}
		if o.Err != nil {
			comment += " (unreadable: " + o.Err.Error() + ")"
		}
		fmt.Fprintf(&sb, "    - name: %s\n      object: %s   # %s\n", p, o.Object, strings.ReplaceAll(comment, "\n", " "))
	}
	return sb.String()
}

// pointName turns an object name into a point name (lower case, _ between
// words), or type_instance when the object has no usable name.
func pointName(name string, id ObjectID) string {
	var sb strings.Builder
	gap := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if gap && sb.Len() > 0 {
				sb.WriteByte('_')
			}
			sb.WriteRune(r)
			gap = false
			continue
		}
		gap = true
	}
	if sb.Len() == 0 {
		return strings.ReplaceAll(id.Type.String(), "-", "_") + "_" + strconv.FormatUint(uint64(id.Instance), 10)
	}
	return sb.String()
}

func yamlName(s string) string {
	if s == "" || strings.ContainsAny(s, ":#{}[],&*?|<>=!%@`'\"\\ ") {
		return strconv.Quote(s)
	}
	return s
}

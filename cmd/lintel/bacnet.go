package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lintel-gw/lintel/adapters/bacnet"
)

// cmdBACnet is `lintel bacnet discover|objects`: commissioning of BACnet/IP
// devices, like `lintel modbus scan`.
func cmdBACnet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, commandHelp("bacnet"))
		return nil
	}
	if len(args) == 0 || !slices.Contains([]string{"discover", "objects"}, args[0]) {
		fmt.Fprint(stderr, commandHelp("bacnet"))
		return exitCode(2)
	}
	if args[0] == "discover" {
		return bacnetDiscover(ctx, args[1:], stdout, stderr)
	}
	return bacnetObjects(ctx, args[1:], stdout, stderr)
}

func bacnetDiscover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bacnet discover", stderr)
	listen := fs.String("listen", "0.0.0.0:47808", "local UDP address; port 47808 hears devices that broadcast their I-Am (falls back to a free port when taken)")
	broadcast := fs.String("broadcast", "255.255.255.255:47808", "where the Who-Is goes (a subnet's broadcast address, or one device)")
	bbmd := fs.String("bbmd", "", "host[:port] of a BBMD: register as a foreign device and ask through it (devices on other subnets)")
	ttl := fs.Duration("ttl", time.Minute, "foreign-device registration time to live (with --bbmd)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to collect I-Am answers")
	low := fs.Uint("low", 0, "lowest device instance asked (with --high)")
	high := fs.Uint("high", bacnet.MaxInstance, "highest device instance asked (with --low)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	opt := bacnet.DiscoverOptions{TTL: uint16(min(ttl.Seconds(), 65535))}
	fs.Visit(func(f *flag.Flag) { opt.Range = opt.Range || f.Name == "low" || f.Name == "high" })
	if opt.Range && (*low > *high || *high > bacnet.MaxInstance) {
		fmt.Fprintf(stderr, "lintel bacnet discover: --low %d --high %d: want 0 <= low <= high <= %d\n", *low, *high, bacnet.MaxInstance)
		return exitCode(2)
	}
	opt.Low, opt.High = uint32(*low), uint32(*high)
	var err error
	if opt.Broadcast, err = bacnet.ResolveAddress(*broadcast); err != nil {
		return fmt.Errorf("bacnet: --broadcast: %w", err)
	}
	if *bbmd != "" {
		if opt.BBMD, err = bacnet.ResolveAddress(*bbmd); err != nil {
			return fmt.Errorf("bacnet: --bbmd: %w", err)
		}
	}
	conn, err := net.ListenPacket("udp4", *listen)
	if err != nil && strings.HasSuffix(*listen, fmt.Sprintf(":%d", bacnet.DefaultPort)) {
		// Port 47808 is taken (often by a running gateway): a free port
		// still hears the devices that answer Who-Is by unicast.
		host, _, _ := net.SplitHostPort(*listen)
		fmt.Fprintf(stderr, "note: %s is in use; listening on a free port, so devices that broadcast their I-Am are missed\n", *listen)
		conn, err = net.ListenPacket("udp4", net.JoinHostPort(host, "0"))
	}
	if err != nil {
		return fmt.Errorf("bacnet: listen: %w", err)
	}
	peers, err := bacnet.Discover(ctx, conn, *timeout, opt) // closes conn
	if err != nil {
		return fmt.Errorf("bacnet: discover: %w", err)
	}
	if len(peers) > 0 {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "INSTANCE\tADDRESS\tNETWORK\tMAC\tVENDOR\tMAX APDU\tSEGMENTATION")
		for _, p := range peers {
			addr, network, mac := p.Addr.String(), "-", "-"
			if r, ok := p.Addr.(*bacnet.RoutedAddr); ok {
				addr, network, mac = r.Router.String(), fmt.Sprint(r.Net), fmt.Sprintf("%X", r.MAC)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Device.Instance, addr, network, mac, p.Vendor, p.MaxAPDU, segmentation(p.Segmentation))
		}
		tw.Flush()
	}
	fmt.Fprintf(stdout, "%d device(s) found\n", len(peers))
	if len(peers) > 0 {
		fmt.Fprintln(stdout, "next: lintel bacnet objects --address ADDRESS --instance INSTANCE (with --network and --mac for a routed device)")
	}
	return nil
}

func segmentation(s uint32) string {
	switch s {
	case bacnet.SegmentedBoth:
		return "both"
	case bacnet.SegmentedTransmit:
		return "transmit"
	case bacnet.SegmentedReceive:
		return "receive"
	case bacnet.NoSegmentation:
		return "none"
	}
	return fmt.Sprint(s)
}

func bacnetObjects(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bacnet objects", stderr)
	address := fs.String("address", "", "host[:port] of the device, or of its router (required)")
	instance := fs.Int("instance", -1, "device instance (from discover; required)")
	network := fs.Uint("network", 0, "network number of a device behind a BACnet router")
	mac := fs.String("mac", "", "hex MAC address of a device behind a BACnet router, e.g. 0A")
	listen := fs.String("listen", "0.0.0.0:0", "local UDP address")
	timeout := fs.Duration("timeout", 2*time.Second, "per-request timeout")
	name := fs.String("name", "", "device name in the snippet (default device-INSTANCE)")
	bus := fs.String("bus", "bms", "bus name in the snippet (the bacnet-ip bus of your config)")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	peer, err := objectsPeer(*address, *instance, *network, *mac)
	if err != nil {
		fmt.Fprintf(stderr, "lintel bacnet objects: %v\n", err)
		return exitCode(2)
	}
	conn, err := net.ListenPacket("udp4", *listen)
	if err != nil {
		return fmt.Errorf("bacnet: listen: %w", err)
	}
	c := bacnet.NewClient(conn, bacnet.ClientOptions{Timeout: *timeout})
	defer c.Close()
	objs, err := bacnet.Objects(ctx, c, peer)
	if err != nil {
		return fmt.Errorf("bacnet: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OBJECT\tNAME\tVALUE\tUNIT")
	for _, o := range objs {
		value := "-"
		switch {
		case o.Err != nil:
			value = "error: " + o.Err.Error()
		case o.Value != nil:
			value = fmt.Sprint(o.Value)
		}
		unit := o.Unit
		if unit == "" && o.HasUnits && o.Units != bacnet.UnitNoUnits {
			unit = fmt.Sprintf("(BACnet unit %d)", o.Units)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Object, o.Name, value, unit)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d object(s)\n\n# paste under devices: (rename points; add cov: true, writable: true as needed)\n", len(objs))
	if *name == "" {
		*name = fmt.Sprintf("device-%d", *instance)
	}
	// The snippet's first line is "- name: …"; the bus goes right after it.
	first, rest, _ := strings.Cut(bacnet.Snippet(*name, peer, objs), "\n")
	fmt.Fprintf(stdout, "%s\n  bus: %s\n%s", first, *bus, rest)
	return nil
}

// objectsPeer is the device that `bacnet objects` flags describe.
func objectsPeer(address string, instance int, network uint, mac string) (bacnet.Peer, error) {
	if address == "" || instance < 0 || instance > bacnet.MaxInstance {
		return bacnet.Peer{}, errors.New("give --address host[:port] and --instance N (from lintel bacnet discover)")
	}
	udp, err := bacnet.ResolveAddress(address)
	if err != nil {
		return bacnet.Peer{}, fmt.Errorf("--address: %w", err)
	}
	peer := bacnet.Peer{IAm: bacnet.IAm{Device: bacnet.ObjectID{Type: bacnet.DeviceObject, Instance: uint32(instance)}}, Addr: udp}
	if network != 0 || mac != "" {
		m, err := hex.DecodeString(mac)
		if network == 0 || network >= bacnet.GlobalBroadcast || err != nil || len(m) == 0 || len(m) > 7 {
			return bacnet.Peer{}, errors.New("--network 1..65534 and --mac (1 to 7 octets in hex) go together")
		}
		peer.Addr = &bacnet.RoutedAddr{Router: udp, Route: bacnet.Route{Net: uint16(network), MAC: m}}
	}
	return peer, nil
}

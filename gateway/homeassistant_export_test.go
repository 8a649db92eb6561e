package gateway

// DiscoveryOverflow is how many frame-named points Home Assistant discovery
// left out because their device reached the cap.
func (g *Gateway) DiscoveryOverflow() uint64 {
	if d := g.haLive.Load(); d != nil {
		return d.Overflow()
	}
	return 0
}

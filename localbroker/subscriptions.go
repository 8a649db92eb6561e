package localbroker

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// subLimitHook caps subscription filters per client and in total: mochi has
// no cap, and ~100k filters from one read-only client cost ~150 MB.
//
// mochi lets no hook refuse one filter with a chosen code, so OnSubscribe
// blanks each filter over a cap (mochi refuses an empty filter without
// subscribing it) and OnSubscribed, which shares the SUBACK's reason codes,
// turns those refusals into 0x97 (quota exceeded) for MQTT 5 clients; MQTT
// 3.1.1 has only 0x80 (failure).
type subLimitHook struct {
	mqtt.HookBase
	perClient, total int
	subscribed       func() int // filters in all network sessions
	readable         func(cl *mqtt.Client, filter string) bool
	unsubscribe      func(cl *mqtt.Client)
	log              *slog.Logger
	refused          atomic.Uint64

	mu       sync.Mutex
	reserved int // granted by OnSubscribe, not yet counted by mochi
	pending  map[*mqtt.Client]subDecision
}

// subDecision is what OnSubscribe decided for one SUBSCRIBE packet.
type subDecision struct {
	refused  []int // indexes of filters refused for a cap
	tooDeep  int   // filters refused for having more than maxFilterLevels levels
	reserved int
}

// maxFilterLevels bounds a subscription filter's depth: each level of a new
// filter can add a node of ~2.5 KB to mochi's topic tree, so depth, not
// length, is what makes a filter expensive. Lintel's own topics have at most
// 6 levels after the prefix.
const maxFilterLevels = 16

func (h *subLimitHook) ID() string { return "lintel-subscription-limits" }

func (h *subLimitHook) Provides(b byte) bool {
	return b == mqtt.OnSubscribe || b == mqtt.OnSubscribed || b == mqtt.OnClientExpired
}

// OnSubscribe decides which new filters fit. A filter the client already has
// costs nothing (it is replaced); one the ACL or mochi will refuse anyway is
// not counted.
func (h *subLimitHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	have := cl.State.Subscriptions.Len()
	total := h.subscribed() + h.reserved
	filters := slices.Clone(pk.Filters)
	var d subDecision
	seen := map[string]bool{}
	for i, sub := range filters {
		if _, ok := cl.State.Subscriptions.Get(sub.Filter); ok || seen[sub.Filter] {
			continue
		}
		if strings.Count(sub.Filter, "/") >= maxFilterLevels {
			d.tooDeep++
			filters[i].Filter = "" // refused as an invalid filter (0x8F, or 0x80)
			continue
		}
		if !mqtt.IsValidFilter(sub.Filter, false) || !h.readable(cl, sub.Filter) {
			continue
		}
		if have >= h.perClient || total >= h.total {
			d.refused = append(d.refused, i)
			filters[i].Filter = ""
			continue
		}
		seen[sub.Filter] = true
		have++
		total++
		d.reserved++
	}
	pk.Filters = filters
	h.reserved += d.reserved
	if h.pending == nil {
		h.pending = map[*mqtt.Client]subDecision{}
	}
	h.pending[cl] = d
	return pk
}

// OnSubscribed runs after mochi subscribed the granted filters and before it
// writes the SUBACK with reasonCodes.
func (h *subLimitHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, reasonCodes []byte) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	d := h.pending[cl]
	delete(h.pending, cl)
	h.reserved -= d.reserved
	h.mu.Unlock()
	if len(d.refused)+d.tooDeep == 0 {
		return
	}
	for _, i := range d.refused {
		if cl.Properties.ProtocolVersion == 5 && i < len(reasonCodes) {
			reasonCodes[i] = packets.ErrQuotaExceeded.Code
		}
	}
	h.refused.Add(uint64(len(d.refused) + d.tooDeep))
	h.log.Warn("subscription filters refused: cap reached", "client", cl.ID, "user", string(cl.Properties.Username),
		"refused", len(d.refused), "too_deep", d.tooDeep, "per_client", h.perClient, "total", h.total)
}

// OnClientExpired drops an expired session's filters: mochi deletes the
// session but leaves its filters in the topic tree, where they would count
// against the total cap for good.
func (h *subLimitHook) OnClientExpired(cl *mqtt.Client) { h.unsubscribe(cl) }

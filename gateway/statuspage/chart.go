package statuspage

import (
	"bytes"
	"fmt"
	"sync"
	"time"
)

// sample is one point of the chart.
type sample struct {
	at    time.Time
	depth uint64 // records in the buffer
	acked uint64 // PUBACKs since start
}

// ring keeps the last n samples.
type ring struct {
	mu   sync.Mutex
	buf  []sample
	next int
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]sample, max(n, 2))} }

func (r *ring) add(s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// list returns the samples oldest first.
func (r *ring) list() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]sample(nil), r.buf[:r.next]...)
	}
	return append(append([]sample(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// Chart geometry.
const (
	chartW, chartH = 320, 130
	padL, padB     = 6, 16
)

// chartSVG draws buffer depth (records) and drain rate (records
// acknowledged per second) over the samples, each scaled to its own peak.
// It uses presentation attributes only: the CSP forbids inline styles.
func chartSVG(ss []sample, every time.Duration) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="buffer depth and drain rate, last hour">`, chartW, chartH)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#fbfbfd" stroke="#ccd"/>`, chartW, chartH)
	plotH := float64(chartH - padB - 10)
	var maxDepth, maxRate float64 = 1, 0.001
	rates := make([]float64, len(ss))
	for i, s := range ss {
		maxDepth = max(maxDepth, float64(s.depth))
		if i > 0 && s.at.After(ss[i-1].at) && s.acked >= ss[i-1].acked {
			rates[i] = float64(s.acked-ss[i-1].acked) / s.at.Sub(ss[i-1].at).Seconds()
			maxRate = max(maxRate, rates[i])
		}
	}
	slots := float64(int(time.Hour/every) - 1)
	x := func(i int) float64 {
		// The newest sample is at the right edge; an hour back at the left.
		return padL + float64(chartW-2*padL)*(slots-float64(len(ss)-1-i))/slots
	}
	line := func(color string, y func(i int) float64) {
		if len(ss) == 0 {
			return
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="`, color)
		for i := range ss {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(i))
		}
		b.WriteString(`"/>`)
	}
	line("#2a6fdb", func(i int) float64 { return 10 + plotH*(1-float64(ss[i].depth)/maxDepth) })
	line("#d9822b", func(i int) float64 { return 10 + plotH*(1-rates[i]/maxRate) })
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="9" fill="#2a6fdb">depth (peak %.0f records)</text>`, padL, chartH-4, maxDepth)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="9" fill="#d9822b">drain (peak %.1f/s)</text>`, chartW/2-10, chartH-4, maxRate)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="9" fill="#667" text-anchor="end">last hour</text>`, chartW-padL, chartH-4)
	b.WriteString(`</svg>`)
	return b.Bytes()
}

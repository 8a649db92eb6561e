package uplink

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flapper is a TCP proxy standing in for a cloud that is up only briefly:
// each connection forwards at most limit bytes towards the broker, then
// stops forwarding, lets the broker's replies (PUBACKs) through for grace,
// and closes.
type flapper struct {
	l        net.Listener
	accepted atomic.Int64
}

func newFlapper(t testing.TB, to string, limit int64, grace time.Duration) *flapper {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flapper{l: l}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			wg.Go(func() {
				io.Copy(in, out)
				in.Close()
			})
			wg.Go(func() {
				io.CopyN(out, in, limit)
				time.Sleep(grace) // the outage: replies still drain, then the link dies
				in.Close()
				out.Close()
			})
		}
	})
	return f
}

// staller is a TCP proxy that can stop forwarding in both directions while
// keeping the connections open: a hung cloud or a half-open link.
type staller struct {
	l    net.Listener
	mu   sync.Mutex
	gate chan struct{} // closed while forwarding
}

func newStaller(t testing.TB, to string) *staller {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &staller{l: l, gate: make(chan struct{})}
	close(s.gate)
	var wg sync.WaitGroup
	var conns []net.Conn
	var connsMu sync.Mutex
	t.Cleanup(func() {
		l.Close()
		s.resume()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	pump := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				s.mu.Lock()
				gate := s.gate
				s.mu.Unlock()
				<-gate
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
	}
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			connsMu.Lock()
			conns = append(conns, in, out)
			connsMu.Unlock()
			wg.Go(func() { pump(out, in) })
			wg.Go(func() { pump(in, out) })
		}
	})
	return s
}

// stall stops forwarding; bytes already read are held until resume.
func (s *staller) stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
		s.gate = make(chan struct{})
	default:
	}
}

func (s *staller) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.gate:
	default:
		close(s.gate)
	}
}

package sparkplug

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lintel-gw/lintel/buffer"
	"github.com/lintel-gw/lintel/gateway/pki"
	"github.com/lintel-gw/lintel/gateway/testwait"
	"github.com/lintel-gw/lintel/gateway/uplink"
	"github.com/lintel-gw/lintel/gateway/uplink/cloudtest"
)

// TestSparkplugChild is the gateway process TestKill9 kills; it does
// nothing unless started by it.
func TestSparkplugChild(t *testing.T) {
	dir := os.Getenv("LINTEL_SPB_CHILD_DIR")
	if dir == "" {
		t.Skip("helper process of TestKill9")
	}
	certs := filepath.Join(dir, "certs")
	tlsCfg, err := uplink.LoadTLS(filepath.Join(certs, "gw-ca.pem"), filepath.Join(certs, "gw.pem"), filepath.Join(certs, "gw.key"))
	if err != nil {
		t.Fatal(err)
	}
	q, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{CommitInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{GroupID: "site", EdgeNodeID: "gw1", GatewayID: "gw1", Metrics: testMetrics,
		StateFile: filepath.Join(dir, "sparkplug.db")}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	u, err := uplink.New(uplink.Config{Broker: os.Getenv("LINTEL_SPB_CHILD_BROKER"), TLS: tlsCfg, GatewayID: "gw1",
		Encoder: n, Session: n, MaxInflight: 4}, q, quiet())
	if err != nil {
		t.Fatal(err)
	}
	u.Run(context.Background()) // until SIGKILL
}

// TestKill9: the gateway process is killed with SIGKILL while QoS 0 data
// and fences are in flight. The broker publishes the Will NDEATH with the
// bdSeq of the killed process's NBIRTH; the restarted gateway births with a
// larger bdSeq (read back from sparkplug.db) and delivers every reading the
// buffer held: none lost. Duplicates are the records delivered whose ack
// the buffer had not committed (acks are group-committed, commit_interval)
// and those sent but not yet behind a PUBACK'd fence.
func TestKill9(t *testing.T) {
	ca, err := pki.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := cloudtest.Start(ca, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Stop)
	dir := t.TempDir()
	pair, err := ca.Client("gw1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.WriteFiles(filepath.Join(dir, "certs"), "gw", ca, pair); err != nil {
		t.Fatal(err)
	}
	r := &rig{ca: ca, cloud: cloud, dir: dir}
	if r.queue, err = buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{CommitInterval: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	const total = 3000
	r.appendReadings(t, 0, total)
	if err := r.queue.Close(); err != nil {
		t.Fatal(err)
	}
	h := newHost(t, r, "")

	child := exec.Command(os.Args[0], "-test.run=^TestSparkplugChild$", "-test.count=1")
	child.Env = append(os.Environ(), "LINTEL_SPB_CHILD_DIR="+dir, "LINTEL_SPB_CHILD_BROKER="+cloud.URL())
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	testwait.Until(t, "the child delivering", 20*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) >= 300 })
	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	child.Wait()
	before, _ := h.seen("ahu/t")
	testwait.Until(t, "the Will NDEATH", 10*time.Second, func() bool { return h.count("NDEATH") == 1 })

	if r.queue, err = buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{CommitInterval: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.queue.Close() })
	left := r.queue.Stats().Records
	r.startEdge(t, Config{}, "")
	testwait.Until(t, "every reading", 20*time.Second, func() bool { c, _ := h.seen("ahu/t"); return len(c) == total })
	testwait.Until(t, "buffer empty", 10*time.Second, func() bool { return r.queue.Stats().Records == 0 })
	h.noProblems(t)
	count, _ := h.seen("ahu/t")
	dups := 0
	for v := range total {
		if count[float64(v)] == 0 {
			t.Fatalf("value %d lost", v)
		}
		dups += count[float64(v)] - 1
	}
	h.mu.Lock()
	bd, deaths := append([]int64(nil), h.bdSeqs...), append([]int64(nil), h.deaths...)
	h.mu.Unlock()
	if len(bd) != 2 || bd[1] <= bd[0] || deaths[0] != bd[0] {
		t.Fatalf("bdSeqs %v, NDEATH %v: want the Will to match the first NBIRTH and the restart to go higher", bd, deaths)
	}
	t.Logf("killed after %d distinct readings reached the host; %d records were left unacked; %d duplicates after the restart", len(before), left, dups)
}

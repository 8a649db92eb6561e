package building

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
)

// DoorController is a simulated access controller on a pseudo-terminal. It
// speaks a typical line protocol (CR LF terminated):
//
//	controller → gateway   EVT <door> GRANTED|DENIED|FORCED CARD=<number> NAME=<name>
//	                       DOOR <door> OPEN|CLOSED
//	                       STATUS OK DOORS=<n>      (answer to STATUS?)
//	                       OK UNLOCK <door>         (answer to UNLOCK <door>)
//	gateway → controller   STATUS?   UNLOCK <door>
//
// Path is a stable symlink to the pty, like a /dev/serial/by-id name, so
// Unplug and Replug can simulate a USB adapter coming and going.
type DoorController struct {
	Path string

	mu       sync.Mutex
	master   *os.File
	slave    *os.File // kept open: a pty master gets EIO once no slave is open
	received []string
	silent   bool
	done     chan struct{}
}

// StartDoorController creates the pty and the symlink dir/door-controller.
func StartDoorController(dir string) (*DoorController, error) {
	d := &DoorController{Path: filepath.Join(dir, "door-controller")}
	if err := d.Replug(); err != nil {
		return nil, err
	}
	return d, nil
}

// Replug attaches a new pty behind Path.
func (d *DoorController) Replug() error {
	master, slave, err := pty.Open()
	if err != nil {
		return fmt.Errorf("door controller: %w", err)
	}
	os.Remove(d.Path)
	if err := os.Symlink(slave.Name(), d.Path); err != nil {
		master.Close()
		slave.Close()
		return err
	}
	done := make(chan struct{})
	d.mu.Lock()
	d.master, d.slave, d.done = master, slave, done
	d.mu.Unlock()
	go d.serve(master, done)
	return nil
}

// Unplug closes the pty and removes Path, like pulling the USB adapter.
func (d *DoorController) Unplug() {
	d.mu.Lock()
	master, slave, done := d.master, d.slave, d.done
	d.master, d.slave = nil, nil
	d.mu.Unlock()
	os.Remove(d.Path)
	if master != nil {
		master.Close()
		slave.Close()
		<-done
	}
}

// Close unplugs for good.
func (d *DoorController) Close() { d.Unplug() }

// SetSilent makes the controller stop answering requests.
func (d *DoorController) SetSilent(silent bool) {
	d.mu.Lock()
	d.silent = silent
	d.mu.Unlock()
}

// Received returns the lines the gateway sent, without CR LF.
func (d *DoorController) Received() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.received...)
}

// Send writes raw bytes to the gateway.
func (d *DoorController) Send(b []byte) error {
	d.mu.Lock()
	m := d.master
	d.mu.Unlock()
	if m == nil {
		return os.ErrClosed
	}
	_, err := m.Write(b)
	return err
}

// Emit writes one line (CR LF appended).
func (d *DoorController) Emit(line string) error { return d.Send([]byte(line + "\r\n")) }

// Badge emits an access event.
func (d *DoorController) Badge(door int, result, card, name string) error {
	return d.Emit(fmt.Sprintf("EVT %d %s CARD=%s NAME=%s", door, result, card, name))
}

func (d *DoorController) serve(master *os.File, done chan struct{}) {
	defer close(done)
	sc := bufio.NewScanner(master)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		d.mu.Lock()
		d.received = append(d.received, line)
		silent := d.silent
		d.mu.Unlock()
		if silent {
			continue
		}
		switch {
		case line == "STATUS?":
			d.Emit("STATUS OK DOORS=2")
		case strings.HasPrefix(line, "UNLOCK "):
			door := strings.TrimPrefix(line, "UNLOCK ")
			d.Emit("OK UNLOCK " + door)
			d.Emit("DOOR " + door + " OPEN")
			go func() {
				time.Sleep(3 * time.Second)
				d.Emit("DOOR " + door + " CLOSED")
			}()
		}
	}
}

// people are the demo's badge holders: personal data the gateway must not
// let out.
var people = []struct{ card, name string }{
	{"0012345", "Alice Example"}, {"0023456", "Bob Sample"}, {"0034567", "Carol Test"}, {"0045678", "Dan Placeholder"},
}

// Activity emits badge swipes and door movements every few seconds until
// stop is closed, for the demo.
func (d *DoorController) Activity(stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(2+rng.IntN(4)) * time.Second):
		}
		p := people[rng.IntN(len(people))]
		door := 1 + rng.IntN(2)
		result := "GRANTED"
		if rng.IntN(6) == 0 {
			result = "DENIED"
		}
		d.Badge(door, result, p.card, p.name)
		if result == "GRANTED" {
			d.Emit(fmt.Sprintf("DOOR %d OPEN", door))
			go func() {
				time.Sleep(2 * time.Second)
				d.Emit(fmt.Sprintf("DOOR %d CLOSED", door))
			}()
		}
	}
}

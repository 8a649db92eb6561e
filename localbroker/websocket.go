package localbroker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over websocket on a socket Lintel owns, behind the
// gate. mochi's own websocket listener binds its socket itself, after
// Serve, so its connections could be neither capped nor closed by Close.
type wsListener struct {
	id        string
	sock      net.Listener // gated, and TLS for wss
	tls       bool
	srv       *http.Server
	upgrader  websocket.Upgrader
	establish listeners.EstablishFn
	log       *slog.Logger
}

func newWSListener(id string, sock net.Listener, isTLS bool, g *gate, log *slog.Logger) *wsListener {
	l := &wsListener{id: id, sock: sock, tls: isTLS, upgrader: websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Browsers send Origin; MQTT clients log in, so any origin may try.
		CheckOrigin: func(*http.Request) bool { return true },
	}}
	l.srv = &http.Server{
		Handler: http.HandlerFunc(l.handle),
		// Without it net/http clears the gate's deadline while it waits
		// for the upgrade request.
		ReadHeaderTimeout: g.timeout,
		MaxHeaderBytes:    8 << 10,
		// Handshake errors at debug level: a flood must not flood the log.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return l
}

func (l *wsListener) ID() string      { return l.id }
func (l *wsListener) Address() string { return l.sock.Addr().String() }

func (l *wsListener) Protocol() string {
	if l.tls {
		return "wss"
	}
	return "ws"
}

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

// Serve runs until Close.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish = establish
	if err := l.srv.Serve(l.sock); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "listener", l.id, "err", err)
	}
}

// Close stops accepting; Broker.Close has already closed every gated
// connection, and so ended the clients.
func (l *wsListener) Close(listeners.CloseFn) { l.srv.Close() }

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	nc := c.UnderlyingConn()
	if gc := gatedOf(nc); gc != nil {
		nc.SetDeadline(gc.deadline) // the upgrade cleared it; CONNECT is still due
	}
	if err := l.establish(l.id, &wsConn{Conn: nc, ws: c}); err != nil {
		l.log.Debug("websocket client ended", "listener", l.id, "err", err)
	}
}

// wsConn carries MQTT bytes in binary websocket messages.
type wsConn struct {
	net.Conn // the upgraded connection (deadlines, addresses, Close)
	ws       *websocket.Conn
	r        io.Reader // the message being read, if any
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			op, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

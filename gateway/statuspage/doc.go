// Package statuspage serves the technician's status page: a small,
// read-mostly web UI for the gateway on site.
//
// It shows what Source reports (identity, uplink, buffer, buses and
// devices with each device's last error and circuit, the audit, the last
// commands), a chart of buffer depth and drain
// rate over the last hour sampled every SampleEvery, and live point values
// pushed by server-sent events from an in-process broker subscription: one
// subscription for the whole page, and each browser gets at most one batch
// of changes per half second, so many open pages cause no polling storm.
//
// Security model:
//   - Off unless configured. Without TLS, New refuses any address that is
//     not loopback, and Serve refuses a listener that is not.
//   - Login with the local broker's users (bcrypt) behind the broker's
//     back-off (localbroker.Guard), or with a client certificate from the
//     configured CA (its common name is the user).
//   - A user needs the view role to see the page and the operate role for
//     the three actions (re-run the audit, reconnect the uplink, clear dead
//     letters); Roles decides. Nothing on the page writes to a device.
//   - Sessions are random 256-bit tokens in HttpOnly, SameSite=Strict
//     cookies (Secure under TLS), ending after an idle half hour or 8 hours.
//   - Every POST, the login included, needs a CSRF token bound to the
//     session (or to the login form's cookie) and a same-origin Origin
//     header when the browser sends one.
//   - Every answer carries a strict Content-Security-Policy (default-src
//     'self', no inline script or style), X-Frame-Options DENY, nosniff,
//     same-origin referrers and Cache-Control no-store; assets are embedded.
package statuspage

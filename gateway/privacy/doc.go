// Package privacy minimises personal data before it leaves an adapter: each
// captured field has a rule, keep, pseudonymize or drop. A pseudonym is "p:"
// and the first 16 bytes (32 hex digits) of HMAC-SHA256 over the value with
// the site key, so the same badge gives the same pseudonym at this site (for
// analytics) and a different one at another site, and the raw value cannot
// be recovered without the key. The key is 32 random bytes generated at
// first start into a 0600 file and never leaves the gateway.
package privacy

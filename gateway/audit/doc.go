// Package audit is `lintel audit`: it checks a configuration, and the files
// and directories it names, for the mistakes that leave building brokers open.
// Every finding is PASS, WARN or FAIL with the reason and the fix. `lintel
// run` runs the same audit at start and refuses to start on a FAIL unless the
// operator overrides that one check.
package audit

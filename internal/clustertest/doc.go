// Package clustertest holds the tests of Postrider as a cluster: three
// `postrider serve` processes (the built binary) over one PostgreSQL,
// behind a real HAProxy running the repository's deploy/haproxy.cfg with
// only its addresses and ports rewritten, and the PostgreSQL failover test
// (a primary with a synchronous streaming standby, promoted under load).
// Only tests live here; they skip when HAProxy or the PostgreSQL server
// binaries cannot be found or installed.
package clustertest

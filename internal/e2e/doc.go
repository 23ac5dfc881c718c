// Package e2e holds the tests that run the three frontends together over
// one store: mail received by SMTP on one node, read and deleted over POP3
// on another, seen by IMAP on a third. The frontends never import each
// other, so these tests live here rather than in any of them.
package e2e

// Package e2e holds end-to-end tests of the whole data path: the real
// issuer service and the real agent engine, talking through a real
// mosquitto broker configured with the shipped ACL, and the agent's Unix
// socket read by the Go client. The package has no non-test code.
package e2e

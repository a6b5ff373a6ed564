// Package faults proves the fleet operator's promise through the real
// binaries: no camera ever holds an expired token while the issuer is
// reachable, whatever else fails, and nothing a device or a local process
// sends can crash or wedge either side.
//
// The tests build agora-token-issuer and agora-token-agent once per run,
// start them as processes beside a real mosquitto (or the issuer's
// embedded broker), put a fault proxy between each agent and the broker,
// and read every agent's Unix socket with a watch client that records each
// token it holds. Scenarios then restart, kill, cut and flood; a checker
// replays the record against the timeline of what was up and reports every
// gap. docs/reliability.md states the promise, the definitions the checker
// uses and the figures measured. The package has no non-test code.
package faults

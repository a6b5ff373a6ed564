// Package agent is the device half: it keeps a device's Agora tokens
// fresh. It requests them from the issuer (over MQTT, or HTTP from a token
// server), schedules renewal on the monotonic clock, retries with
// exponential backoff, persists the last good tokens, and publishes events
// that the Unix-socket server (package agent/socket) hands to the local
// media process.
package agent

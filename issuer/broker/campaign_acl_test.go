package broker

import (
	"testing"

	"agoratokens/wire"
)

// TestIssuerOnlyTopics: the campaign, replica and marker topics under
// {root}/issuer/ are the service user's alone.
func TestIssuerOnlyTopics(t *testing.T) {
	tp := wire.NewTopics("agora/v1")
	for _, topic := range []string{tp.Campaign(), tp.ReplicaStatus("issuer-a"), tp.Marker("m1"), tp.AllReplicas()} {
		for _, write := range []bool{true, false} {
			if allowed(tp, "issuer", "dev-1", topic, write) {
				t.Errorf("a device may %s %s", map[bool]string{true: "publish to", false: "subscribe to"}[write], topic)
			}
			if !allowed(tp, "issuer", "issuer", topic, write) {
				t.Errorf("the issuer may not use %s (write %v)", topic, write)
			}
		}
	}
}

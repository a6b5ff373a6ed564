package issuer

import (
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/wire"
)

// The MQTT request path. A worker handles a request and hands its reply
// to paho without waiting for the broker's PUBACK: a worker that waited
// would hold its slot for a broker round trip, and in a boot storm the
// round trips, not the signing, would bound the throughput. The replies
// in flight go to one tracker (ackReplies) that waits for their PUBACKs
// in order and only then acknowledges the requests they answer, so a
// request is still acknowledged to the broker only once its reply is.

// pendingReply is a reply published and not yet acknowledged by the
// broker, with the request it answers.
type pendingReply struct {
	tok      mqtt.Token
	req      mqtt.Message
	device   string
	deadline time.Time
}

// repliesInFlight bounds the replies awaiting their PUBACK; a worker
// publishing more waits for the oldest.
const repliesInFlight = 4096

// onRequest takes one request from paho (a goroutine per message) and
// queues it for the workers, holding a worker slot for it: the workers
// are long-lived goroutines, whose stacks have grown once to what
// decoding and signing need. The request is acknowledged by the worker
// (the client's auto-ack is off).
func (s *Service) onRequest(_ mqtt.Client, m mqtt.Message) {
	select {
	case s.sem <- struct{}{}:
	case <-s.closed:
		// Not acknowledged: a broker keeping the session would hand it
		// to another replica.
		s.log.Warn("request arrived after shutdown; the device will retry", "topic", m.Topic())
		return
	}
	s.work <- m // never blocks: it holds as many places as there are slots
}

// worker handles queued requests until stop is closed.
func (s *Service) worker(stop <-chan struct{}) {
	for {
		select {
		case m := <-s.work:
			s.handle(m)
			<-s.sem
		case <-stop:
			return
		}
	}
}

// handle answers one request. It acknowledges the request at once when
// there is nothing to answer, else once the reply is acknowledged (see
// ackReplies).
func (s *Service) handle(m mqtt.Message) {
	device, err := s.topics.DeviceFromReq(m.Topic())
	if err != nil {
		// No valid device id: there is no topic to answer on.
		s.metrics.request("mqtt", resultInvalid)
		s.log.Warn("request on a malformed topic; no reply possible", "err", err)
		m.Ack()
		return
	}
	s.metrics.sawDevice(device)
	reply, result := s.answerMQTT(device, m.Payload())
	s.metrics.request("mqtt", result)
	if reply == nil {
		m.Ack()
		return
	}
	t := s.client().Publish(s.topics.Token(device), 1, false, reply)
	s.pending.Add(1)
	select {
	case s.replies <- pendingReply{tok: t, req: m, device: device, deadline: time.Now().Add(opTimeout)}:
	case <-s.closed:
		// Shut down after the drain timeout: nobody waits for this
		// PUBACK any more, and blocking here would leak the worker.
		s.pending.Done()
	}
}

// ackReplies waits for each published reply's PUBACK (or its timeout),
// logs the failures and acknowledges the request answered, until stop
// is closed. The broker acknowledges one connection's publishes in
// order, so waiting in order costs nothing.
func (s *Service) ackReplies(stop <-chan struct{}) {
	timer := time.NewTimer(opTimeout)
	defer timer.Stop()
	for {
		select {
		case p := <-s.replies:
			s.confirm(p, timer)
		case <-stop:
			return
		}
	}
}

// confirm waits for one reply's PUBACK until its deadline, then
// acknowledges its request.
func (s *Service) confirm(p pendingReply, timer *time.Timer) {
	defer s.pending.Done()
	defer p.req.Ack()
	select {
	case <-p.tok.Done():
	default:
		timer.Reset(time.Until(p.deadline))
		select {
		case <-p.tok.Done():
			timer.Stop()
		case <-timer.C:
			s.log.Warn("publish reply unconfirmed; the device will retry", "device", p.device,
				"err", fmt.Errorf("no PUBACK within %v", opTimeout))
			return
		}
	}
	if err := p.tok.Error(); err != nil {
		s.log.Warn("publish reply failed; the device will retry", "device", p.device, "err", err)
	}
}

// answerMQTT turns one request payload into the reply to publish.
func (s *Service) answerMQTT(device string, payload []byte) ([]byte, string) {
	st := s.state.Load()
	now := s.now()
	if max := st.cfg.Limits.MaxPayload; len(payload) > max {
		s.log.Warn("request too large", "device", device, "bytes", len(payload), "max", max)
		return s.errorReply("unknown", wire.CodeInvalidRequest,
			fmt.Sprintf("request is %d bytes, max %d", len(payload), max), 0), resultInvalid
	}
	req, err := wire.DecodeRequest(payload)
	if err != nil {
		s.log.Warn("invalid request", "device", device, "err", err)
		return s.errorReply(requestID(payload), wire.CodeInvalidRequest, err.Error(), 0), resultInvalid
	}
	if ok, wait := s.limiter.allow(device, now); !ok {
		s.log.Info("rate limited", "device", device, "id", req.ID, "retry_after", wait)
		return s.errorReply(req.ID, wire.CodeRateLimited, "too many requests",
			int((wait+time.Second-1)/time.Second)), resultRateLimited
	}
	key := replayKey(device, req.ID)
	e, owner := s.replay.begin(key, now)
	if !owner {
		<-e.done
		if e.reply != nil {
			s.log.Debug("replayed the reply to a retried request", "device", device, "id", req.ID)
			return e.reply, resultReplayed
		}
		return s.errorReply(req.ID, wire.CodeUnavailable, "the first attempt failed; retry", 1), resultUnavailable
	}
	reply, result := s.decide(st, device, req.ID, req.Tokens, now)
	b, err := wire.Encode(reply)
	if err != nil {
		s.log.Error("encode reply", "device", device, "id", req.ID, "err", err)
		s.replay.finish(key, e, nil)
		return s.errorReply(req.ID, wire.CodeUnavailable, "reply too large; ask for fewer tokens", 0), resultUnavailable
	}
	if result == resultUnavailable {
		s.replay.finish(key, e, nil)
	} else {
		s.replay.finish(key, e, b)
	}
	return b, result
}

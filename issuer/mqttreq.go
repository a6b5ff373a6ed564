package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"agoratokens/wire"
)

// The MQTT request path. paho hands each request to onRequest on its one
// router goroutine (order matters), so onRequest must never block: it
// decides at the door, before decoding anything, whether the request
// may be worked on. The device id comes from the topic (the broker's ACL
// vouches for it), the rate limit and the size are checked first, and a
// request beyond the rate limit or the queue bounds (admission) is shed:
// acknowledged at once, answered with a small refusal when that is cheap
// (once per retry window, through a bounded queue), counted always. So a
// flooding device costs a map lookup per message, not memory, and paho
// reading the connection at the speed onRequest decides is the
// back-pressure.
//
// A request admitted goes to the workers. A worker hands the reply to
// paho without waiting for the broker's PUBACK: a worker that waited
// would hold its place for a broker round trip, and in a boot storm the
// round trips, not the signing, would bound the throughput. The replies
// in flight go to one tracker (ackReplies) that waits for their PUBACKs
// in order and only then acknowledges the requests they answer, so a
// request is still acknowledged to the broker only once its reply is. A
// request keeps its place in the admission count until then, so the
// count bounds the replies in flight too.

// pendingReply is a reply published and not yet acknowledged by the
// broker, with the request it answers.
type pendingReply struct {
	tok      mqtt.Token
	req      inbound
	device   string
	deadline time.Time
}

// job is one item of the worker queue: a request, or a liveness probe.
type job struct {
	m      inbound
	tr     string // the transport it came by, for the metrics
	device string
	probe  chan struct{} // a probe: closed by the worker that takes it
}

// refusal is an answer decided at the door, published by the refuser.
type refusal struct {
	device, id, code, msg string
	retryAfter            int
}

// onRequest takes one request from paho and, without blocking, sheds it
// or queues it for the workers. The request is acknowledged at once when
// shed, else once its reply is (the client's auto-ack is off).
func (s *Service) onRequest(_ mqtt.Client, m mqtt.Message) {
	s.admit("mqtt", m.Topic(), m)
}

// admit is the door of every transport: topic is the request's MQTT
// topic (a NATS subject mapped back to it), tr the transport's name in
// the metrics. It never blocks.
func (s *Service) admit(tr, topic string, m inbound) {
	device, err := s.topics.DeviceFromReq(topic)
	if err != nil {
		// No valid device id: there is no topic to answer on.
		s.metrics.request(tr, resultInvalid)
		s.dlog.Warn("request on a malformed topic; no reply possible", "err", err)
		m.Ack()
		return
	}
	if s.stopped.Load() {
		// Not acknowledged: a broker keeping the session would hand it
		// to another replica.
		s.dlog.Warn("request arrived after shutdown began; the device will retry", "device", device)
		return
	}
	payload := m.Payload()
	maxPayload := s.state.Load().cfg.Limits.MaxPayload
	if ok, wait, tell := s.limiter.admit(device, s.clk.Now()); !ok {
		s.metrics.request(tr, resultRateLimited)
		secs := int((wait + time.Second - 1) / time.Second)
		s.dlog.Info("rate limited", "device", device, "retry_after", secs)
		if tell {
			id := "unknown"
			if len(payload) <= maxPayload {
				id = requestID(payload) // once per retry window: cheap
			}
			s.refuse(refusal{device: device, id: id, code: wire.CodeRateLimited, msg: "too many requests", retryAfter: secs})
		} else {
			s.metrics.unansweredRate.Inc()
		}
		m.Ack()
		return
	}
	if len(payload) > maxPayload {
		s.metrics.request(tr, resultInvalid)
		s.dlog.Warn("request too large", "device", device, "bytes", len(payload), "max", maxPayload)
		s.refuse(refusal{device: device, id: "unknown", code: wire.CodeInvalidRequest,
			msg: fmt.Sprintf("request is %d bytes, max %d", len(payload), maxPayload)})
		m.Ack()
		return
	}
	switch s.adm.add(device, len(payload)) {
	case admitOK:
		s.work <- job{m: m, tr: tr, device: device} // never blocks: it has a place per request admitted
	case admitDeviceFull:
		s.metrics.request(tr, resultShed)
		s.dlog.Warn("request shed: too many requests of the device in flight", "device", device, "max", s.opts.DeviceQueue)
		s.refuse(refusal{device: device, id: requestID(payload), code: wire.CodeRateLimited,
			msg: "too many requests in flight", retryAfter: 1})
		m.Ack()
	case admitQueueFull:
		s.metrics.request(tr, resultShed)
		s.dlog.Warn("request shed: the request queue is full", "device", device, "max", s.opts.QueueSize, "max_bytes", s.opts.QueueBytes)
		s.refuse(refusal{device: device, id: requestID(payload), code: wire.CodeUnavailable,
			msg: "the issuer is overloaded", retryAfter: 1})
		m.Ack()
	case admitClosed:
		s.dlog.Warn("request arrived after shutdown began; the device will retry", "device", device)
	}
}

// refuse queues a refusal for the refuser, or counts it when the queue
// is full.
func (s *Service) refuse(r refusal) {
	select {
	case s.refusals <- r:
	default:
		s.metrics.refusQd.Inc()
	}
}

// refuser publishes the refusals decided at the door, one at a time,
// until stop is closed. They go at QoS 0: a lost refusal costs the
// device only its own retry, and no PUBACK has to be tracked.
func (s *Service) refuser(stop <-chan struct{}) {
	for {
		select {
		case r := <-s.refusals:
			b := s.errorReply(r.id, r.code, r.msg, r.retryAfter)
			t := s.out().publish(s.topics.Token(r.device), 0, false, b)
			select {
			case <-t.Done():
				if err := t.Error(); err != nil {
					s.dlog.Warn("publish refusal failed", "device", r.device, "err", err)
				}
			case <-stop:
				return
			}
		case <-stop:
			return
		}
	}
}

// worker handles queued jobs until stop is closed.
func (s *Service) worker(stop <-chan struct{}) {
	for {
		select {
		case j := <-s.work:
			if s.opts.WorkerHook != nil {
				s.opts.WorkerHook()
			}
			if j.probe != nil {
				s.probeMu.Lock()
				if s.probing == j.probe {
					s.probing = nil
				}
				s.probeMu.Unlock()
				close(j.probe)
				continue
			}
			s.handle(j)
		case <-stop:
			return
		}
	}
}

// Probe checks that the request path is alive: a no-op goes through the
// worker queue, behind the requests queued, and Probe returns nil once a
// worker took it, or an error when ctx ends first. A probe still queued
// from an earlier call is waited for rather than queued again.
func (s *Service) Probe(ctx context.Context) error {
	s.probeMu.Lock()
	ch := s.probing
	if ch == nil {
		ch = make(chan struct{})
		select {
		case s.work <- job{probe: ch}: // the queue keeps one place for it
			s.probing = ch
		default:
			s.probeMu.Unlock()
			return errors.New("the worker queue has no place for a probe")
		}
	}
	s.probeMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no worker took the probe: %w", context.Cause(ctx))
	}
}

// handle answers one admitted request. It acknowledges the request (and
// releases its place) at once when there is nothing to answer, else once
// the reply is acknowledged (see ackReplies).
func (s *Service) handle(j job) {
	s.metrics.sawDevice(j.device)
	reply, result := s.answerMQTT(j.device, j.m.Payload())
	s.metrics.request(j.tr, result)
	if reply == nil {
		j.m.Ack()
		s.adm.done(j.device, len(j.m.Payload()))
		return
	}
	t := s.out().publish(s.topics.Token(j.device), 1, false, reply)
	// Never blocks: it has a place per request admitted.
	s.replies <- pendingReply{tok: t, req: j.m, device: j.device, deadline: s.clk.Now().Add(opTimeout)}
}

// ackReplies waits for each published reply's PUBACK (or its timeout),
// logs the failures and acknowledges the request answered, until stop
// is closed. The broker acknowledges one connection's publishes in
// order, so waiting in order costs nothing.
func (s *Service) ackReplies(stop <-chan struct{}) {
	for {
		select {
		case p := <-s.replies:
			s.confirm(p)
		case <-stop:
			return
		}
	}
}

// confirm waits for one reply's PUBACK until its deadline, then
// acknowledges its request and releases its place.
func (s *Service) confirm(p pendingReply) {
	defer s.adm.done(p.device, len(p.req.Payload()))
	defer p.req.Ack()
	select {
	case <-p.tok.Done():
	default:
		timer := s.clk.NewTimer(p.deadline.Sub(s.clk.Now()))
		select {
		case <-p.tok.Done():
			timer.Stop()
		case <-timer.C():
			s.dlog.Warn("publish reply unconfirmed; the device will retry", "device", p.device,
				"err", fmt.Errorf("no PUBACK within %v", opTimeout))
			return
		}
	}
	if err := p.tok.Error(); err != nil {
		s.dlog.Warn("publish reply failed; the device will retry", "device", p.device, "err", err)
	}
}

// answerMQTT turns one admitted request payload into the reply to
// publish.
func (s *Service) answerMQTT(device string, payload []byte) ([]byte, string) {
	st := s.state.Load()
	req, err := wire.DecodeRequest(payload)
	if err != nil {
		s.dlog.Warn("invalid request", "device", device, "err", err)
		return s.errorReply(requestID(payload), wire.CodeInvalidRequest, err.Error(), 0), resultInvalid
	}
	key := replayKey(device, req.ID)
	e, owner := s.replay.begin(key, s.clk.Now())
	if !owner {
		<-e.done
		if e.reply != nil {
			s.log.Debug("replayed the reply to a retried request", "device", device, "id", req.ID)
			return e.reply, resultReplayed
		}
		return s.errorReply(req.ID, wire.CodeUnavailable, "the first attempt failed; retry", 1), resultUnavailable
	}
	reply, result := s.decide(st, device, req.ID, req.Tokens, s.clk.Wall())
	b, err := wire.Encode(reply)
	if err != nil {
		s.dlog.Error("encode reply", "device", device, "id", req.ID, "err", err)
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

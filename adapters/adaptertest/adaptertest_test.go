package adaptertest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"herald.dev/adapters/registry"
	"herald.dev/platform/contracts"
	"herald.dev/platform/domain"
)

const refChannel domain.Channel = "adaptertest-reference"

// reference is a minimal correct adapter: it hands deliveries to an
// in-memory receiver, so the suite itself is exercised.
type reference struct{ rx *receiver }

type receiver struct {
	log  Log
	fail Failer
	gate Gate
}

func (r *reference) Channel() domain.Channel { return refChannel }

func (r *reference) Send(ctx context.Context, d *contracts.Delivery) (contracts.Result, error) {
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("reference send: %w", err)
	}
	if d.Address == "" {
		return contracts.Result{}, contracts.Permanent("no address", nil)
	}
	r.rx.gate.Wait(ctx)
	if err := ctx.Err(); err != nil {
		return contracts.Result{}, fmt.Errorf("reference send: %w", err)
	}
	if r.rx.fail.Take() {
		return contracts.Result{}, contracts.Retryable("receiver busy", errors.New("503"), 0)
	}
	r.rx.log.Add(d.ID)
	return contracts.Result{}, nil
}

func init() {
	registry.Register(refChannel, func(registry.Deps) (contracts.Sender, error) { return &reference{rx: &receiver{}}, nil })
}

func TestSuiteAgainstReferenceAdapter(t *testing.T) {
	Run(t, Harness{
		Channel: refChannel,
		Setup: func(t *testing.T) *Env {
			senders, err := registry.Build(registry.Deps{}, refChannel)
			if err != nil {
				t.Fatal(err)
			}
			ref := senders[refChannel].(*reference)
			return &Env{
				Sender:     ref,
				Address:    func(d *contracts.Delivery) { d.Address = "somewhere" },
				Seen:       ref.rx.log.IDs,
				FailNext:   ref.rx.fail.Arm,
				BadAddress: func(d *contracts.Delivery) { d.Address = "" },
				Stall:      ref.rx.gate.Arm,
			}
		},
	})
}

func TestHelpers(t *testing.T) {
	var f Failer
	if f.Take() {
		t.Fatal("unarmed Failer fired")
	}
	f.Arm()
	f.Arm()
	if !f.Take() || !f.Take() || f.Take() {
		t.Fatal("Failer should fire exactly once per Arm")
	}

	var g Gate
	g.Wait(context.Background()) // unarmed: returns at once
	entered, release := g.Arm()
	done := make(chan struct{})
	go func() { g.Wait(context.Background()); close(done) }()
	<-entered
	select {
	case <-done:
		t.Fatal("armed Gate did not block")
	default:
	}
	release()
	release() // idempotent
	<-done
	g.Wait(context.Background()) // disarmed after one use

	ctx, cancel := context.WithCancel(context.Background())
	_, release2 := g.Arm()
	defer release2()
	cancel()
	g.Wait(ctx) // a cancelled request stops waiting

	var l Log
	l.Add("a")
	ids := l.IDs()
	ids[0] = "mutated"
	if l.IDs()[0] != "a" {
		t.Fatal("IDs must return a copy")
	}

	d := Delivery(domain.ChannelEmail, "dlv_x")
	if d.ID != "dlv_x" || d.Channel != domain.ChannelEmail || d.NotificationID == "" || d.Content.Subject == "" || d.Content.HTML == "" {
		t.Fatalf("Delivery = %+v", d)
	}
}

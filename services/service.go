// Package services wires Herald's client-facing services: the simple
// notification API and query API (services/notify), the in-app inbox
// (services/inbox) and its WebSocket gateway (services/ws).
package services

import (
	"crypto/rand"
	"errors"

	"github.com/gofiber/fiber/v2"

	"herald.dev/platform/config"
	"herald.dev/platform/contracts"
	"herald.dev/platform/messages"
	"herald.dev/platform/queue"
	"herald.dev/platform/sqldb"
	"herald.dev/services/inbox"
	"herald.dev/services/notify"
	"herald.dev/services/ws"
)

// Deps are what the services need from the binary.
type Deps struct {
	DB        *sqldb.DB
	Store     *messages.Store
	Queue     queue.Queue
	Renderer  contracts.Renderer
	Directory contracts.Directory
	Tracker   contracts.Tracker
	Config    config.Config
	// TokenSecret signs WebSocket tokens; empty = a random per-process
	// secret (tokens then only work on the instance that issued them).
	TokenSecret []byte
	Logf        func(string, ...any)
	// Broadcaster overrides the in-process WebSocket fan-out (a cluster
	// plugs in a broadcast topic here); nil = ws.NewLocal().
	Broadcaster ws.Broadcaster
}

// Service is the set of client-facing services.
type Service struct {
	notify   *notify.API
	inbox    *inbox.Store
	inboxAPI *inbox.API
	gateway  *ws.Gateway
}

// New builds the services and starts the inbox committer.
func New(d Deps) (*Service, error) {
	if d.DB == nil || d.Store == nil {
		return nil, errors.New("services: a database and a message store are required")
	}
	if d.Tracker == nil {
		d.Tracker = contracts.NopTracker{}
	}
	if d.Logf == nil {
		d.Logf = func(string, ...any) {}
	}
	secret := d.TokenSecret
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		d.Logf("services: no token secret configured: WebSocket tokens only work on this instance until restart")
	}
	gw := ws.New(ws.Options{
		Broadcaster: d.Broadcaster,
		Secret:      secret,
		TokenTTL:    d.Config.Inbox.TokenTTL,
		PublicURL:   d.Config.HTTP.PublicURL,
		Directory:   d.Directory,
		Logf:        d.Logf,
	})
	st := inbox.NewStore(d.DB, inbox.Options{Pusher: gw, Tracker: d.Tracker, CommitWindow: d.Config.Database.CommitWindow})
	gw.SetReplay(st)
	return &Service{
		notify: notify.New(notify.Options{
			Store: d.Store, Queue: d.Queue, Renderer: d.Renderer, Tracker: d.Tracker, Logf: d.Logf,
		}),
		inbox:    st,
		inboxAPI: inbox.NewAPI(st),
		gateway:  gw,
	}, nil
}

// Mount adds the API-key routes to r (already under /v1 behind auth.Middleware).
func (s *Service) Mount(r fiber.Router) {
	s.notify.Mount(r)
	s.inboxAPI.Mount(r)
	s.gateway.Mount(r)
}

// MountPublic adds the routes without API-key auth (/v1/ws, /v1/ws/client.js,
// /inbox-demo). Call it before the /v1 group with auth.Middleware is added,
// or that middleware also guards these paths.
func (s *Service) MountPublic(app *fiber.App) { s.gateway.MountPublic(app) }

// SetHolder makes immediate sends claimed at accept by the outbound
// handler of this process (see notify.Holder).
func (s *Service) SetHolder(h notify.Holder) { s.notify.SetHolder(h) }

// Inbox returns the in-app inbox (for the in-app adapter).
func (s *Service) Inbox() contracts.Inbox { return s.inbox }

// InboxStore returns the inbox store itself.
func (s *Service) InboxStore() *inbox.Store { return s.inbox }

// Gateway returns the WebSocket gateway.
func (s *Service) Gateway() *ws.Gateway { return s.gateway }

// Close disconnects live connections and flushes the inbox committer.
func (s *Service) Close() {
	s.gateway.Close()
	s.inbox.Close()
}

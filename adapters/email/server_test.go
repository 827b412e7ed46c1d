package email

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/mail"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"herald.dev/adapters/adaptertest"
)

// testServer is a real SMTP server (go-smtp's server package) running in the
// test process.
type testServer struct {
	t    *testing.T
	srv  *smtp.Server
	ln   *trackingListener
	addr *net.TCPAddr
	pool *x509.CertPool // trusts the server's self-signed certificate
	user string
	pass string

	mu   sync.Mutex
	msgs []received
	rcpt map[string]*smtp.SMTPError

	seen adaptertest.Log
	fail adaptertest.Failer // next RCPT answers 451
	gate adaptertest.Gate   // next DATA blocks
}

type received struct {
	from   string
	to     []string
	data   []byte
	tls    bool
	authed bool
}

type serverOpts struct {
	startTLS bool // offer STARTTLS
	implicit bool // TLS from the first byte
	auth     bool // require AUTH PLAIN (only offered over TLS unless insecure)
	insecure bool // allow AUTH without TLS
}

func newServer(t *testing.T, o serverOpts) *testServer {
	t.Helper()
	s := &testServer{t: t, rcpt: map[string]*smtp.SMTPError{}}
	if o.auth {
		s.user, s.pass = "herald", "s3cret"
	}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{s: s, c: c}, nil })
	srv := smtp.NewServer(be)
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 1 << 20
	srv.AllowInsecureAuth = o.insecure
	srv.EnableSMTPUTF8 = false
	srv.ErrorLog = log.New(io.Discard, "", 0) // dropped connections are expected here
	var tlsCfg *tls.Config
	if o.startTLS || o.implicit {
		cert, pool := selfSigned(t)
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.pool = pool
		srv.TLSConfig = tlsCfg
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = &trackingListener{Listener: l}
	s.addr = l.Addr().(*net.TCPAddr)
	var serveLn net.Listener = s.ln
	if o.implicit {
		serveLn = tls.NewListener(s.ln, tlsCfg)
	}
	s.srv = srv
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(serveLn) }()
	t.Cleanup(func() {
		s.stop()
		<-done
	})
	return s
}

// stop closes the server; the listener is closed directly too, in case
// Serve has not registered it yet.
func (s *testServer) stop() {
	_ = s.srv.Close()
	_ = s.ln.Close()
}

func (s *testServer) reply(addr string, code int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcpt[addr] = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 1, 1}, Message: msg}
}

func (s *testServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type session struct {
	s      *testServer
	c      *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (se *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (se *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != se.s.user || password != se.s.pass {
			return errors.New("invalid credentials")
		}
		se.authed = true
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.user != "" && !se.authed {
		return smtp.ErrAuthRequired
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if se.s.fail.Take() {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
	}
	se.s.mu.Lock()
	rej := se.s.rcpt[to]
	se.s.mu.Unlock()
	if rej != nil {
		return rej
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	se.s.gate.Wait(context.Background())
	_, isTLS := se.c.TLSConnectionState()
	msg, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "unparsable message: " + err.Error()}
	}
	se.s.mu.Lock()
	se.s.msgs = append(se.s.msgs, received{from: se.from, to: se.to, data: b, tls: isTLS, authed: se.authed})
	se.s.mu.Unlock()
	se.s.seen.Add(msg.Header.Get("X-Herald-Delivery-Id"))
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }

// trackingListener counts accepted connections and can drop them all.
type trackingListener struct {
	net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// dropAll closes every accepted connection, as a server's idle timeout would.
func (l *trackingListener) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "herald test smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

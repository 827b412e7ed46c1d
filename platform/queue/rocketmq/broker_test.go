package rocketmq

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"herald.dev/platform/config"
	"herald.dev/platform/queue"
	"herald.dev/platform/queue/queuetest"
)

// TestBrokerConformance runs the conformance suite against a real RocketMQ
// (name server + broker). Each test gets its own three topics (created
// through the admin API on the broker, deleted afterwards) and its own
// consumer group, so tests never see each other's messages.
func TestBrokerConformance(t *testing.T) {
	if os.Getenv("HERALD_ROCKETMQ_NAMESRV") == "" {
		t.Skip("no RocketMQ: set HERALD_ROCKETMQ_NAMESRV=host:9876 (the name server) to run the queue conformance suite " +
			"against a real broker; HERALD_ROCKETMQ_BROKER=host:10911 names the broker for topic creation " +
			"(default: the name server's host, port 10911); HERALD_ROCKETMQ_ACCESS_KEY/SECRET_KEY if ACL is on")
	}
	cfg, err := config.Load("", os.Environ())
	if err != nil {
		t.Fatalf("load config from the environment: %v", err)
	}
	rc := cfg.Queue.RocketMQ
	brokerAddr := os.Getenv("HERALD_ROCKETMQ_BROKER")
	if brokerAddr == "" {
		host, _, err := net.SplitHostPort(rc.NameServers[0])
		if err != nil {
			t.Fatalf("HERALD_ROCKETMQ_NAMESRV %q: %v", rc.NameServers[0], err)
		}
		brokerAddr = net.JoinHostPort(host, "10911")
	}
	adminOpts := []admin.AdminOption{admin.WithResolver(primitive.NewPassthroughResolver(rc.NameServers))}
	if rc.AccessKey != "" {
		adminOpts = append(adminOpts, admin.WithCredentials(primitive.Credentials{AccessKey: rc.AccessKey, SecretKey: rc.SecretKey}))
	}
	adm, err := admin.NewAdmin(adminOpts...)
	if err != nil {
		t.Fatalf("rocketmq admin: %v", err)
	}
	t.Cleanup(func() { _ = adm.Close() })

	var seq atomic.Int64
	run := time.Now().UnixMilli()
	queuetest.Run(t, func(t *testing.T, ageLimit time.Duration) queue.Queue {
		c := rc
		c.TopicPrefix = fmt.Sprintf("herald_qt_%d_%d", run, seq.Add(1))
		c.Group = c.TopicPrefix + "_group"
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, topic := range Topics(c.TopicPrefix) {
			if err := adm.CreateTopic(ctx, admin.WithTopicCreate(topic), admin.WithBrokerAddrCreate(brokerAddr)); err != nil {
				t.Fatalf("create topic %s on %s: %v", topic, brokerAddr, err)
			}
			t.Cleanup(func() {
				_ = adm.DeleteTopic(context.Background(), admin.WithTopicDelete(topic), admin.WithBrokerAddrDelete(brokerAddr))
			})
		}
		// The broker registers new topics with the name server at once, but
		// allow the route a few seconds to appear.
		var q *Queue
		for {
			q, err = NewWithOptions(c, Options{AgeLimit: ageLimit, Visibility: time.Second})
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("connect to RocketMQ: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Cleanup(func() { _ = q.Close() })
		return q
	})
}

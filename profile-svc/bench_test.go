package profilesvc_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	profilesvc "herald.dev/profile-svc"

	"herald.dev/platform/contracts"
	"herald.dev/platform/sqldb"
	"herald.dev/platform/sqldb/sqldbtest"
)

// benchDB opens SQLite, or MySQL when HERALD_BENCH_MYSQL=1 (and HERALD_TEST_MYSQL_URL is set).
func benchDB(b *testing.B) *sqldb.DB {
	if v := getenv("HERALD_BENCH_MYSQL"); v == "1" {
		return sqldbtest.MySQL(b, sources...)
	}
	return sqldbtest.SQLite(b, sources...)
}

// generated yields n users u0000000.. with an email, a phone, a locale and a
// time zone, all in group.
func generated(n int, group string) func() (profilesvc.UserInput, bool, error) {
	i := 0
	groups := []string{group}
	return func() (profilesvc.UserInput, bool, error) {
		if i >= n {
			return profilesvc.UserInput{}, false, nil
		}
		id := fmt.Sprintf("u%07d", i)
		i++
		return profilesvc.UserInput{
			ID: id, Name: "User " + id, Email: id + "@example.com", Phone: "+86138" + fmt.Sprintf("%08d", i),
			Locale: "zh-CN", Timezone: "Asia/Shanghai", Identities: profilesvc.Identities{WeCom: "wc" + id}, Groups: groups,
		}, true, nil
	}
}

func importN(b *testing.B, s *profilesvc.Service, app string, n int) {
	if _, err := s.CreateGroup(context.Background(), app, profilesvc.GroupInput{ID: "everyone"}); err != nil {
		b.Fatal(err)
	}
	res, err := s.ImportUsers(context.Background(), app, generated(n, "everyone"))
	if err != nil || res.Imported != n {
		b.Fatalf("import: %+v %v", res, err)
	}
}

// BenchmarkImportUsers1M imports 1,000,000 users, each a member of one group,
// into a fresh database per iteration (run with -benchtime=1x).
func BenchmarkImportUsers1M(b *testing.B) {
	n := 1_000_000
	if v := getenv("HERALD_BENCH_USERS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db := benchDB(b)
		s := profilesvc.New(db, profilesvc.Options{})
		b.StartTimer()
		start, cpu := time.Now(), cpuTime()
		importN(b, s, "bench", n)
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "users/s")
		b.ReportMetric((cpuTime() - cpu).Seconds(), "cpu-s")
	}
}

// BenchmarkGroupMembers streams a 100,000-member group as full profiles in
// batches of 1000; members/s is the figure to compare with the 100k/s target.
func BenchmarkGroupMembers(b *testing.B) {
	const n = 100_000
	db := benchDB(b)
	s := profilesvc.New(db, profilesvc.Options{})
	importN(b, s, "bench", n)
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for i := 0; i < b.N; i++ {
		got := 0
		err := s.GroupMembers(context.Background(), "bench", "everyone", 1000, func(ps []*contracts.Profile) error {
			got += len(ps)
			return nil
		})
		if err != nil || got != n {
			b.Fatalf("streamed %d: %v", got, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "members/s")
	b.ReportMetric(float64(n*b.N)/(cpuTime()-cpu).Seconds(), "members/cpu-s")
}

// BenchmarkGroupMembersNested streams 100,000 members spread over 10
// overlapping subgroups (every user in two of them).
func BenchmarkGroupMembersNested(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	db := benchDB(b)
	s := profilesvc.New(db, profilesvc.Options{})
	if _, err := s.CreateGroup(ctx, "bench", profilesvc.GroupInput{ID: "root"}); err != nil {
		b.Fatal(err)
	}
	for g := 0; g < 10; g++ {
		if _, err := s.CreateGroup(ctx, "bench", profilesvc.GroupInput{ID: fmt.Sprintf("sub%d", g), Parent: "root"}); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	res, err := s.ImportUsers(ctx, "bench", func() (profilesvc.UserInput, bool, error) {
		if i >= n {
			return profilesvc.UserInput{}, false, nil
		}
		i++
		return profilesvc.UserInput{ID: fmt.Sprintf("u%07d", i), Email: fmt.Sprintf("u%d@example.com", i),
			Groups: []string{fmt.Sprintf("sub%d", i%10), fmt.Sprintf("sub%d", (i+3)%10)}}, true, nil
	})
	if err != nil || res.Imported != n {
		b.Fatalf("import: %+v %v", res, err)
	}
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for it := 0; it < b.N; it++ {
		got := 0
		err := s.GroupMembers(ctx, "bench", "root", 1000, func(ps []*contracts.Profile) error {
			got += len(ps)
			return nil
		})
		if err != nil || got != n {
			b.Fatalf("streamed %d: %v", got, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "members/s")
	b.ReportMetric(float64(n*b.N)/(cpuTime()-cpu).Seconds(), "members/cpu-s")
}

// BenchmarkProfilesCached measures Profiles for 100 recipients served from the cache.
func BenchmarkProfilesCached(b *testing.B) {
	db := benchDB(b)
	s := profilesvc.New(db, profilesvc.Options{})
	importN(b, s, "bench", 1000)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%07d", i*7)
	}
	if _, err := s.Profiles(context.Background(), "bench", ids); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ps, err := s.Profiles(context.Background(), "bench", ids)
		if err != nil || len(ps) != 100 {
			b.Fatalf("%d %v", len(ps), err)
		}
	}
}

func getenv(k string) string { return os.Getenv(k) }

// cpuTime is the process's user+system CPU time: on a machine shared with
// other work, rates per CPU second are steadier than rates per wall second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

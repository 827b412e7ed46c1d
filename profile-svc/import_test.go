package profilesvc_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	profilesvc "herald.dev/profile-svc"

	"herald.dev/platform/sqldb"
)

func TestImportCSV(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		for _, g := range []string{"ops", "dev"} {
			_, err := s.CreateGroup(ctx, "a", profilesvc.GroupInput{ID: g})
			must(t, err)
		}
		csv := strings.Join([]string{
			"id,name,email,phone,locale,timezone,wechat,wecom,dingtalk,qq,groups",               // 1
			"u1,Ann,ann@example.com,+8613800138000,zh-CN,Asia/Shanghai,wx1,wc1,dt1,qq1,ops|dev", // 2
			"u2,Bob,not-an-email,,,,,,,,",                       // 3 bad email
			"u3,Cat,,12345,,,,,,,",                              // 4 bad phone
			"u4,Dan,,,,Mars/Base,,,,,",                          // 5 bad tz
			"u5,Eve,eve@example.com,,,,,,,,ops|ghost",           // 6 unknown group: nothing written
			"u6,\"Quoted, Name\",,,en-US,UTC,,,,,",              // 7
			"u7,too,few",                                        // 8 field count
			"bad id,X,,,,,,,,,",                                 // 9 bad id
			"u8,Fay,fay@example.com,,xx_not_a_locale!,,,,,,dev", // 10 bad locale
			"u9,Gus,gus@example.com,,,,,,,, dev ",               // 11
			"u1,Ann Again,ann2@example.com,,,,,,,,",             // 12 replaces u1, keeps groups
		}, "\n") + "\n"
		res, err := s.ImportCSV(ctx, "a", strings.NewReader(csv))
		must(t, err)
		if res.Imported != 4 || res.Failed != 7 {
			t.Fatalf("result %+v", res)
		}
		wantErrs := map[int]string{3: "email", 4: "phone", 5: "timezone", 6: "groups[1]", 8: "", 9: "id", 10: "locale"}
		if len(res.Errors) != len(wantErrs) {
			t.Fatalf("errors %+v", res.Errors)
		}
		for _, e := range res.Errors {
			if f, ok := wantErrs[e.Line]; !ok || f != e.Field || e.Reason == "" {
				t.Errorf("unexpected error %+v", e)
			}
		}
		for _, id := range []string{"u2", "u3", "u4", "u5", "u7", "u8"} {
			if _, err := s.GetUser(ctx, "a", id); err == nil {
				t.Errorf("%s was written", id)
			}
		}
		if n := count(t, db, `SELECT COUNT(*) FROM profile_group_members WHERE user_id = 'u5'`); n != 0 {
			t.Fatalf("half-written u5: %d memberships", n)
		}
		u1, err := s.GetUser(ctx, "a", "u1")
		must(t, err)
		if u1.Name != "Ann Again" || u1.Email != "ann2@example.com" || strings.Join(u1.Groups, ",") != "dev,ops" {
			t.Fatalf("u1 %+v", u1)
		}
		u6, err := s.GetUser(ctx, "a", "u6")
		must(t, err)
		if u6.Name != "Quoted, Name" || u6.Locale != "en-US" {
			t.Fatalf("u6 %+v", u6)
		}
		u9, err := s.GetUser(ctx, "a", "u9")
		must(t, err)
		if strings.Join(u9.Groups, ",") != "dev" {
			t.Fatalf("u9 %+v", u9)
		}
		// header problems reject the whole body
		for _, body := range []string{"", "name,email\nx,y\n", "id,shoe_size\nu,42\n", "id,id\nu,u\n"} {
			res, err := s.ImportCSV(ctx, "a", strings.NewReader(body))
			if err == nil || res.Imported != 0 {
				t.Errorf("header %q: %+v %v", body, res, err)
			}
		}
		// a subset of columns in any order
		res, err = s.ImportCSV(ctx, "a", strings.NewReader("email,id\r\nz@example.com,z1\r\n"))
		must(t, err)
		if res.Imported != 1 {
			t.Fatalf("subset: %+v", res)
		}
	})
}

func TestImportNDJSON(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		_, err := s.CreateGroup(ctx, "a", profilesvc.GroupInput{ID: "ops"})
		must(t, err)
		body := strings.Join([]string{
			`{"id":"n1","name":"One","email":"one@example.com","identities":{"wechat":"w1"},"groups":["ops"]}`, // 1
			`{"id":"n2","email":"nope"}`,          // 2
			`{"id":"n3","phone":"+8613800138000"`, // 3 malformed
			``,                                    // 4 blank: skipped
			`{"id":"n4","shoe":"42"}`,             // 5 unknown field
			`{"id":"n5","groups":["ghost"]}`,      // 6 unknown group
			`{"id":"n6","timezone":"Local"}`,      // 7
			`{"id":"n7","webhook_url":"https://h.example.com/x","locale":"fr"}`, // 8
			`{"id":"n8","identities":{"skype":"x"}}`,                            // 9 unknown identity
			`{"name":"no id"}`,                                                  // 10
			`{"id":"n9","name":5}`,                                              // 11 wrong type
		}, "\n") // no trailing newline: the last line still counts
		res, err := s.ImportNDJSON(ctx, "a", strings.NewReader(body))
		must(t, err)
		if res.Imported != 2 || res.Failed != 8 {
			t.Fatalf("result %+v", res)
		}
		want := map[int]string{2: "email", 3: "", 5: "shoe", 6: "groups[0]", 7: "timezone", 9: "skype", 10: "id", 11: "name"}
		for _, e := range res.Errors {
			f, ok := want[e.Line]
			if !ok || (f != "" && !strings.HasSuffix(e.Field, f)) {
				t.Errorf("unexpected error %+v", e)
			}
			delete(want, e.Line)
		}
		if len(want) != 0 {
			t.Fatalf("missing errors for %v: %+v", want, res.Errors)
		}
		n1, err := s.GetUser(ctx, "a", "n1")
		must(t, err)
		if n1.Identities.WeChat != "w1" || strings.Join(n1.Groups, ",") != "ops" {
			t.Fatalf("n1 %+v", n1)
		}
		if _, err := s.GetUser(ctx, "a", "n5"); err == nil {
			t.Fatal("n5 written despite unknown group")
		}
		if _, err := s.ImportNDJSON(ctx, "a", strings.NewReader("\n\n")); err == nil {
			t.Fatal("empty body accepted")
		}
	})
}

func TestImportUsersGoAPI(t *testing.T) {
	each(t, func(t *testing.T, db *sqldb.DB, s *profilesvc.Service) {
		_, err := s.CreateGroup(ctx, "a", profilesvc.GroupInput{ID: "all"})
		must(t, err)
		s = profilesvc.New(db, profilesvc.Options{ImportBatch: 7, MaxImportErrors: 3})
		groups := []string{"all"} // shared between rows, as a caller would
		var in []profilesvc.UserInput
		for i := 0; i < 50; i++ {
			u := profilesvc.UserInput{ID: fmt.Sprintf("u%03d", i), Groups: groups}
			if i%10 == 9 {
				u.Email = "broken"
			}
			in = append(in, u)
		}
		res, err := s.ImportUsers(ctx, "a", sliceSource(in))
		must(t, err)
		if res.Imported != 45 || res.Failed != 5 || len(res.Errors) != 3 || res.Errors[0].Line != 10 {
			t.Fatalf("result %+v", res)
		}
		if n := count(t, db, `SELECT COUNT(*) FROM profile_group_members WHERE app_id = 'a' AND group_id = 'all'`); n != 45 {
			t.Fatalf("members %d", n)
		}
		ids, _ := collect(t, s, "a", "all", 10)
		if len(ids) != 45 {
			t.Fatalf("streamed %d", len(ids))
		}
		// a source error stops the import, keeping what was committed
		i := 0
		boom := errors.New("boom")
		res, err = s.ImportUsers(ctx, "b", func() (profilesvc.UserInput, bool, error) {
			i++
			if i > 20 {
				return profilesvc.UserInput{}, false, boom
			}
			return profilesvc.UserInput{ID: fmt.Sprintf("x%d", i)}, true, nil
		})
		if !errors.Is(err, boom) || res.Imported != 20 {
			t.Fatalf("source error: %+v %v", res, err)
		}
	})
}

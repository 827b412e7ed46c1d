module herald.dev/profile-svc

go 1.26

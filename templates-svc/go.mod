module herald.dev/templates-svc

go 1.26

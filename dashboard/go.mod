module herald.dev/dashboard

go 1.26

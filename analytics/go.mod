module herald.dev/analytics

go 1.26

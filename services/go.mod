module herald.dev/services

go 1.26

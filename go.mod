module herald.dev

go 1.26

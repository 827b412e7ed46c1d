module herald.dev/adapters

go 1.26

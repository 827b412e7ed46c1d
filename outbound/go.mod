module herald.dev/outbound

go 1.26

module herald.dev/outbound

go 1.26.0

require herald.dev/platform v0.0.0

replace herald.dev/platform => ../platform

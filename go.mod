module herald.dev

go 1.26.0

require (
	herald.dev/adapters v0.0.0
	herald.dev/analytics v0.0.0
	herald.dev/dashboard v0.0.0
	herald.dev/outbound v0.0.0
	herald.dev/platform v0.0.0
	herald.dev/profile-svc v0.0.0
	herald.dev/services v0.0.0
	herald.dev/templates-svc v0.0.0
)

replace (
	herald.dev/adapters => ./adapters
	herald.dev/analytics => ./analytics
	herald.dev/dashboard => ./dashboard
	herald.dev/outbound => ./outbound
	herald.dev/platform => ./platform
	herald.dev/profile-svc => ./profile-svc
	herald.dev/services => ./services
	herald.dev/templates-svc => ./templates-svc
)

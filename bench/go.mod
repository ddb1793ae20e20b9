module github.com/wsgate/wsgate/bench

go 1.26

replace github.com/wsgate/wsgate => ../

require (
	github.com/coder/websocket v1.8.15
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	github.com/wsgate/wsgate v0.0.0-00010101000000-000000000000
)

require github.com/gobwas/httphead v0.1.0 // indirect

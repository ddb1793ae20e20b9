module github.com/wsgate/wsgate/e2e

go 1.26

replace github.com/wsgate/wsgate => ../

require (
	github.com/chromedp/cdproto v0.159.0
	github.com/chromedp/chromedp v0.23.0
	github.com/coder/websocket v1.8.15
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
	github.com/wsgate/wsgate v0.0.0-00010101000000-000000000000
	golang.org/x/net v0.56.0
)

require (
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	golang.org/x/text v0.38.0 // indirect
)

package main

import (
	_ "embed"
	"net/http"
)

// openAPI describes the whole local API. TestOpenAPIMatchesRoutes keeps it true:
// every registered route is documented and every documented one exists.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

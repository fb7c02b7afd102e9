package main

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/localapi"
)

// TestOpenAPIMatchesRoutes keeps /v1/openapi.json true: every route the agent
// serves is documented, every documented one is served, and the error codes
// listed are exactly the API's.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	r := newRig(t, rigOptions{})
	log := newLogger(r.cfg.Log, true, r.logs)
	a, err := openApp(t.Context(), r.cfg, log)
	require.NoError(t, err)
	defer a.close()

	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas struct {
				ErrorBody struct {
					Properties struct {
						Error struct {
							Properties struct {
								Code struct {
									Enum []string `json:"enum"`
								} `json:"code"`
							} `json:"properties"`
						} `json:"error"`
					} `json:"properties"`
				} `json:"ErrorBody"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(openAPI, &doc))
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	served := a.api.Routes()
	sort.Strings(documented)
	sort.Strings(served)
	assert.Equal(t, served, documented)

	var codes []string
	for _, c := range localapi.Codes {
		codes = append(codes, c.Code)
	}
	assert.Equal(t, codes, doc.Components.Schemas.ErrorBody.Properties.Error.Properties.Code.Enum)
}

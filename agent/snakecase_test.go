package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// jsonKeys collects every object key in v with its path, so a failure names
// where the bad key sits.
func jsonKeys(v any, at string, keys map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			keys[at+"."+k] = k
			jsonKeys(e, at+"."+k, keys)
		}
	case []any:
		for i, e := range v {
			jsonKeys(e, fmt.Sprintf("%s[%d]", at, i), keys)
		}
	}
}

func notSnake(keys map[string]string) []string {
	var bad []string
	for at, k := range keys {
		if !snakeCase.MatchString(k) {
			bad = append(bad, at)
		}
	}
	sort.Strings(bad)
	return bad
}

// schemaFields collects the field names an OpenAPI document declares: the
// keys of every "properties" object and the names in every "required" list.
// The document's own keys (operationId, requestBody) are OpenAPI's, not ours.
func schemaFields(v any, at string, fields map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			switch k {
			case "properties":
				if props, ok := e.(map[string]any); ok {
					for name := range props {
						fields[at+".properties."+name] = name
					}
				}
			case "required":
				if names, ok := e.([]any); ok {
					for _, n := range names {
						if s, ok := n.(string); ok {
							fields[at+".required."+s] = s
						}
					}
				}
			}
			schemaFields(e, at+"."+k, fields)
		}
	case []any:
		for i, e := range v {
			schemaFields(e, fmt.Sprintf("%s[%d]", at, i), fields)
		}
	}
}

func TestOpenAPIFieldsAreSnakeCase(t *testing.T) {
	var doc any
	require.NoError(t, json.Unmarshal(openAPI, &doc))
	fields := map[string]string{}
	schemaFields(doc, "openapi", fields)
	require.Contains(t, fields, "openapi.components.schemas.Status.properties.uptime_seconds", "the walk missed the schemas")
	assert.Empty(t, notSnake(fields), "OpenAPI fields that are not snake_case")
}

// TestAPIAnswersAreSnakeCase reads every read endpoint of a running agent on
// the simulated till after a sale, so the nested parts (fiscal document,
// certificate, devices, events) are there too.
func TestAPIAnswersAreSnakeCase(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.startInProcess()
	events := r.subscribe()
	p := r.create("snake-1", saleBody(20480, milkReceipt))
	r.showCode()
	p = r.waitState(p.ID, "completed", 10*time.Second)
	require.NotNil(t, p.Fiscal.Document)
	require.Eventually(t, func() bool { return slices.Contains(events.statesOf(p.ID), "completed") }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		var st struct {
			Devices struct {
				Register struct {
					Status *registerReport `json:"status"`
				} `json:"register"`
			} `json:"devices"`
		}
		r.call("GET", "/v1/status", "", "", &st)
		return st.Devices.Register.Status != nil
	}, 10*time.Second, 20*time.Millisecond)

	keys := map[string]string{}
	for _, path := range []string{"/v1/health", "/v1/status", "/v1/payments", "/v1/payments/" + p.ID,
		"/v1/outbox", "/v1/outbox?filter=parked", "/v1/outbox?filter=all"} {
		var v any
		require.Equal(t, 200, r.call("GET", path, "", "", &v), path)
		jsonKeys(v, path, keys)
	}
	for i, e := range events.raw() {
		for line := range strings.SplitSeq(e, "\n") {
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var v any
				require.NoError(t, json.Unmarshal([]byte(data), &v), "%s", data)
				jsonKeys(v, fmt.Sprintf("/v1/events#%d", i), keys)
			}
		}
	}
	require.Contains(t, keys, "/v1/status.providers.smartpay.certificate", "the walk missed the certificate")
	assert.Empty(t, notSnake(keys), "API answer keys that are not snake_case")
}

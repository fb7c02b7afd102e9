package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kassa-agent/agent/internal/localapi"
)

// The README's error table is what POS integrators code against: it must list
// exactly the codes the API can answer with.
func TestREADMEListsEveryErrorCode(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	readme := string(raw)
	begin := strings.Index(readme, "<!-- codes:begin -->")
	end := strings.Index(readme, "<!-- codes:end -->")
	require.True(t, begin >= 0 && end > begin, "README lacks the codes markers")
	table := readme[begin:end]
	for _, c := range localapi.Codes {
		retry := "no"
		if c.Retryable {
			retry = "yes"
		}
		row := fmt.Sprintf("| `%s` | %d | %s | %s |", c.Code, c.Status, retry, c.Meaning)
		assert.Contains(t, table, row)
	}
	assert.Equal(t, len(localapi.Codes), strings.Count(table, "\n| `"), "README lists codes the API does not have")
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExamplePassesCheck(t *testing.T) {
	c, err := Parse("example.toml", Example)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8717", c.API.Listen)
	assert.Equal(t, 50*time.Millisecond, c.Scanner.IdleGap.D())
	assert.Equal(t, "refuse", c.Store.OnCorrupt)
}

func TestExampleHasEveryKey(t *testing.T) {
	// Every key the program reads must appear in the example, or technicians
	// will never learn it exists.
	c := Default()
	_ = c
	for _, key := range []string{
		"api.listen", "api.allow_remote", "api.token_file", "api.max_connections",
		"store.dir", "store.on_corrupt", "store.open_timeout",
		"outbox.base_delay", "outbox.max_delay", "outbox.max_attempts", "outbox.max_age",
		"log.level", "log.format",
		"scanner.enabled", "scanner.driver", "scanner.port", "scanner.vid", "scanner.pid", "scanner.serial",
		"scanner.baud", "scanner.suffix", "scanner.idle_gap", "scanner.prefix", "scanner.max_length", "scanner.double_read_window",
		"register.enabled", "register.protocol", "register.transport", "register.address", "register.password",
		"register.cashier", "register.tax_system", "register.auto_open_shift", "register.auto_close_expired_shift",
		"register.byte_timeout", "register.baud", "register.timezone", "register.vat_rows",
		"smartpay.enabled", "smartpay.base_url", "smartpay.cert_file", "smartpay.key_file", "smartpay.ca_file",
		"smartpay.code_pattern", "smartpay.request_timeout", "smartpay.poll_deadline", "smartpay.abandon_after",
		"alif.enabled", "alif.token_file", "alikassa.enabled", "alikassa.account",
		"metrics.listen", "metrics.token_file", "marking.unchecked", "marking.industry",
	} {
		assert.NotZero(t, lineOf(Example, strings.Split(key, ".")), "example lacks %s", key)
	}
}

func problems(t *testing.T, src string) []Problem {
	t.Helper()
	_, err := Parse("/etc/kassa-agent/config.toml", []byte(src))
	require.Error(t, err)
	var ce *Error
	require.True(t, errors.As(err, &ce), "want *config.Error, got %T: %v", err, err)
	return ce.Problems
}

func TestErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct {
		name, src, key string
		line           int
		msg            string
	}{
		{"unknown key", "[api]\nlisten = \"127.0.0.1:8717\"\nlisen = \"x\"\n", "api.lisen", 3, "unknown key"},
		{"unknown section", "[scaner]\nenabled = true\n", "scaner.enabled", 2, "unknown key"},
		{"wrong type", "[scanner]\n\nmax_length = \"big\"\n", "scanner.max_length", 3, "wrong type"},
		{"bad duration", "[scanner]\nidle_gap = \"fast\"\n", "scanner.idle_gap", 2, "not a duration"},
		{"missing required", "[smartpay]\nenabled = true\nbase_url = \"https://x\"\nkey_file = \"k\"\n", "smartpay.cert_file", 0, "client certificate"},
		{"impossible combination", "[scanner]\nenabled = true\nport = \"/dev/ttyACM0\"\nvid = \"0c2e\"\npid = \"0b61\"\n", "scanner.vid", 4, "not both"},
		{"remote without allow", "[api]\nlisten = \"0.0.0.0:8717\"\n", "api.listen", 2, "allow_remote"},
		{"too few connections", "[api]\nmax_connections = 3\n", "api.max_connections", 2, "16 to 4096"},
		{"bad enum", "[store]\non_corrupt = \"ignore\"\n", "store.on_corrupt", 2, "refuse"},
		{"tcp needs address", "[register]\nenabled = true\ntransport = \"tcp\"\n", "register.address", 0, "host:port"},
		{"bad pattern", "[smartpay]\nenabled = true\nbase_url = \"https://x\"\ncert_file = \"c\"\nkey_file = \"k\"\ncode_pattern = \"([\"\n", "smartpay.code_pattern", 6, "regular expression"},
		{"syntax", "[api]\nlisten = \n", "api.listen", 2, ""},
		{"alif without its token", "[alif]\nenabled = true\nepos = \"t\"\n", "alif.token_file", 0, "token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.src)
			var found *Problem
			for i := range ps {
				if ps[i].Key == tc.key {
					found = &ps[i]
				}
			}
			require.NotNil(t, found, "no problem for %s in %v", tc.key, ps)
			assert.Equal(t, tc.line, found.Line, "line of %s", tc.key)
			assert.Contains(t, found.Msg, tc.msg)
			_, err := Parse("/etc/kassa-agent/config.toml", []byte(tc.src))
			if tc.line > 0 {
				assert.Contains(t, err.Error(), "line ")
			}
			assert.Contains(t, err.Error(), tc.key)
		})
	}
}

func TestDisabledSectionsAreValid(t *testing.T) {
	// A disabled device keeps whatever half-filled values it has.
	c, err := Parse("c.toml", []byte("[scanner]\nenabled = false\nport = \"\"\nbaud = 1\n[smartpay]\nenabled = false\n"))
	require.NoError(t, err)
	assert.False(t, c.Scanner.Enabled)
}

func TestRelativePathsFollowTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.toml")
	require.NoError(t, os.WriteFile(p, []byte("[store]\ndir = \"data\"\n"), 0o600))
	c, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "data"), c.Store.Dir)
	assert.Equal(t, filepath.Join(dir, "data", "api-token"), c.API.TokenFile)
	assert.Equal(t, filepath.Join(dir, "data", "kassa.db"), c.StorePath())
}

func TestMissingFileSaysHowToCreateIt(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "config example")
}

func FuzzParse(f *testing.F) {
	f.Add(Example)
	f.Add([]byte("[api]\nlisten = \"127.0.0.1:1\"\n"))
	f.Add([]byte("[[x]]\na=1\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := Parse("f.toml", src)
		if err == nil && c.API.Listen == "" {
			t.Fatal("accepted a config without api.listen")
		}
	})
}

// TestRegisterTimezoneAndShiftDefaults: the Z report after 24 h is on by default (a
// receipt owed after payment must not wait for a person), and register.timezone
// is an IANA zone checked at load.
func TestRegisterTimezoneAndShiftDefaults(t *testing.T) {
	c, err := Parse("example.toml", Example)
	require.NoError(t, err)
	assert.True(t, Default().Register.AutoCloseExpiredShift)
	assert.True(t, c.Register.AutoCloseExpiredShift)
	assert.Equal(t, "", c.Register.Timezone)

	c, err = Parse("c.toml", []byte("[register]\nenabled = true\nport = \"/dev/ttyACM1\"\ntimezone = \"Asia/Vladivostok\"\n"))
	require.NoError(t, err)
	loc, err := c.Register.Location()
	require.NoError(t, err)
	assert.Equal(t, "Asia/Vladivostok", loc.String())

	ps := problems(t, "[register]\nenabled = true\nport = \"/dev/ttyACM1\"\ntimezone = \"Europe/Atlantis\"\n")
	require.Len(t, ps, 1)
	assert.Equal(t, "register.timezone", ps[0].Key)
	assert.Equal(t, 4, ps[0].Line)
	assert.Contains(t, ps[0].Msg, "IANA")
}

func TestMetricsListen(t *testing.T) {
	// Off by default: no second address unless asked for.
	c, err := Parse("/etc/kassa-agent/config.toml", nil)
	require.NoError(t, err)
	assert.Empty(t, c.Metrics.Listen)

	// A non-loopback address is the point (the chain's Prometheus is on
	// another host), and the token file is relative to the config file.
	c, err = Parse("/etc/kassa-agent/config.toml", []byte("[metrics]\nlisten = \"0.0.0.0:9717\"\ntoken_file = \"metrics-token\"\n"))
	require.NoError(t, err)
	assert.Equal(t, "0.0.0.0:9717", c.Metrics.Listen)
	assert.Equal(t, filepath.Join("/etc/kassa-agent", "metrics-token"), c.Metrics.TokenFile)

	for _, tc := range []struct{ src, key, msg string }{
		{"[metrics]\nlisten = \"9717\"\n", "metrics.listen", "not host:port"},
		{"[metrics]\nlisten = \"0.0.0.0:99999\"\n", "metrics.listen", "from 1 to 65535"},
		{"[metrics]\nlisten = \"127.0.0.1:8717\"\n", "metrics.listen", "must differ from api.listen"},
		{"[metrics]\ntoken_file = \"metrics-token\"\n", "metrics.token_file", "set metrics.listen too"},
	} {
		ps := problems(t, tc.src)
		require.Len(t, ps, 1, "%s: %v", tc.src, ps)
		assert.Equal(t, tc.key, ps[0].Key)
		assert.Contains(t, ps[0].Msg, tc.msg)
		assert.Equal(t, 2, ps[0].Line)
	}
}

// TestMarkingPolicy: the [marking] section's policy words and industry
// requisites are checked at load, each problem naming its key.
func TestMarkingPolicy(t *testing.T) {
	c, err := Parse("c.toml", []byte("[marking]\nunchecked = \"refuse\"\nindustry = [{ foiv = \"030\", date = \"2023-11-21\", number = \"1944\", value = \"UUID=x&Time=1\" }]\n[marking.groups.beer]\nunchecked = \"sell\"\n"))
	require.NoError(t, err)
	assert.Equal(t, "refuse", c.Marking.Unchecked)
	assert.Equal(t, "sell", c.Marking.Groups["beer"].Unchecked)
	require.Len(t, c.Marking.Industry, 1)
	assert.Equal(t, "030", c.Marking.Industry[0].FOIV)
	assert.Equal(t, "sell", Default().Marking.Unchecked, "the default sells a code the OISM did not answer for")

	for _, tc := range []struct{ name, src, key string }{
		{"policy word", "[marking]\nunchecked = \"maybe\"\n", "marking.unchecked"},
		{"group policy", "[marking.groups.beer]\nunchecked = \"never\"\n", "marking.groups.beer.unchecked"},
		{"foiv", "[marking]\nindustry = [{ foiv = \"30\", date = \"2023-11-21\", number = \"1\", value = \"v\" }]\n", "marking.industry[0].foiv"},
		{"date", "[marking]\nindustry = [{ foiv = \"030\", date = \"21.11.2023\", number = \"1\", value = \"v\" }]\n", "marking.industry[0].date"},
		{"value", "[marking]\nindustry = [{ foiv = \"030\", date = \"2023-11-21\", number = \"1\", value = \"\" }]\n", "marking.industry[0].value"},
	} {
		ps := problems(t, tc.src)
		require.Len(t, ps, 1, tc.name)
		assert.Equal(t, tc.key, ps[0].Key, tc.name)
	}
}

package servicectl

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Known service SIDs, as `sc showsid NAME` prints them on Windows.
func TestServiceSID(t *testing.T) {
	assert.Equal(t, "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464", ServiceSID("TrustedInstaller"))
	assert.Equal(t, ServiceSID("trustedinstaller"), ServiceSID("TrustedInstaller"), "the name is case-insensitive")
}

func TestDataDirSDDLGrantsTheServiceAccount(t *testing.T) {
	assert.Equal(t, "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;"+ServiceSID(Name)+")", DataDirSDDL())
	assert.Equal(t, `NT SERVICE\kassa-agent`, WindowsAccount)
}

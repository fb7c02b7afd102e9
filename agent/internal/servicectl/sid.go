package servicectl

import (
	"crypto/sha1"
	"encoding/binary"
	"strconv"
	"strings"
	"unicode/utf16"
)

// WindowsAccount is the virtual service account the Windows service runs as:
// created by the service manager with the service, no password, no rights
// beyond a standard user's plus what the data directory's ACL grants its SID.
const WindowsAccount = `NT SERVICE\` + Name

// ServiceSID is the SID Windows gives a service's virtual account: S-1-5-80
// followed by the SHA-1 of the upper-cased service name in UTF-16LE, read as
// five little-endian 32-bit numbers. Computed rather than looked up so the data
// directory's ACL can name it before (and without) the service existing.
func ServiceSID(name string) string {
	u := utf16.Encode([]rune(strings.ToUpper(name)))
	buf := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(buf[2*i:], c)
	}
	sum := sha1.Sum(buf)
	var b strings.Builder
	b.WriteString("S-1-5-80")
	for i := 0; i < len(sum); i += 4 {
		b.WriteByte('-')
		b.WriteString(strconv.FormatUint(uint64(binary.LittleEndian.Uint32(sum[i:])), 10))
	}
	return b.String()
}

// DataDirSDDL is the data directory's DACL on Windows: full control to SYSTEM,
// Administrators and the service's own account, inherited by everything inside,
// and inheritance from %ProgramData% cut (it lets every user read): whoever reads
// the API token can take payments at this till.
func DataDirSDDL() string {
	return "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;" + ServiceSID(Name) + ")"
}

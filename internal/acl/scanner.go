package acl

// IsScanner reports whether the SIP User-Agent ua belongs to a known SIP
// scanner. It is an ASCII case-insensitive substring match against:
//
//	friendly-scanner, sipvicious, sipcli, vaxsipuseragent, pplsip,
//	sundayddr, iwar, sip-scan, sivus, smap/
//
// Legitimate tools such as sipsak are deliberately not listed. IsScanner
// does not allocate.
func IsScanner(ua string) bool {
	for i := 0; i < len(ua); i++ {
		switch lowerASCII(ua[i]) {
		case 'f':
			if hasFoldAt(ua, i, "friendly-scanner") {
				return true
			}
		case 's':
			if hasFoldAt(ua, i, "sipvicious") || hasFoldAt(ua, i, "sipcli") ||
				hasFoldAt(ua, i, "sundayddr") || hasFoldAt(ua, i, "sip-scan") ||
				hasFoldAt(ua, i, "sivus") || hasFoldAt(ua, i, "smap/") {
				return true
			}
		case 'v':
			if hasFoldAt(ua, i, "vaxsipuseragent") {
				return true
			}
		case 'p':
			if hasFoldAt(ua, i, "pplsip") {
				return true
			}
		case 'i':
			if hasFoldAt(ua, i, "iwar") {
				return true
			}
		}
	}
	return false
}

// hasFoldAt reports whether s[i:] starts with the lowercase ASCII pattern p,
// ignoring ASCII case.
func hasFoldAt(s string, i int, p string) bool {
	if len(s)-i < len(p) {
		return false
	}
	for j := 0; j < len(p); j++ {
		if lowerASCII(s[i+j]) != p[j] {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// Package tlscert holds the certificate that the TLS and WSS listeners
// serve: an admin's PEM files (--tls-cert, --tls-key), reloaded without a
// restart when they change on disk (Run polls their modification times;
// Reload is what SIGHUP calls), or, with none given, a self-signed
// certificate created once in the data directory.
//
// Listeners take Config: its GetCertificate returns the certificate loaded
// last, so a renewed certificate is served from the next handshake on.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/privfile"
)

// Self-signed certificate files, in the data directory.
const (
	SelfCertFile = "tls-cert.pem"
	SelfKeyFile  = "tls-key.pem"
)

// selfValidity is how long a self-signed certificate is valid.
const selfValidity = 5 * 365 * 24 * time.Hour

// Info describes the certificate in force (for status, the doctor and the
// start message).
type Info struct {
	CertFile    string    `json:"cert_file"`
	KeyFile     string    `json:"key_file"`
	SelfSigned  bool      `json:"self_signed"`
	Subject     string    `json:"subject"`
	Names       []string  `json:"names"` // DNS and IP SANs
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"sha256_fingerprint"` // AA:BB:... of the leaf's DER
	LoadedAt    time.Time `json:"loaded_at"`
}

// Covers reports whether the certificate names host (a DNS name, with one
// leading wildcard label allowed, or an IP address).
func (i Info) Covers(host string) bool { return NamesCover(i.Names, host) }

// NamesCover reports whether a certificate with these subject alternative
// names covers host: an exact name or IP address (case and a trailing dot
// ignored), or a name under one leading wildcard label ("*.example.com"
// covers "pbx.example.com", not "example.com", "a.b.example.com" nor
// an IP address).
func NamesCover(names []string, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, n := range names {
		n = strings.ToLower(n)
		if n == host {
			return true
		}
		if strings.HasPrefix(n, "*.") && net.ParseIP(host) == nil {
			if j := strings.IndexByte(host, '.'); j > 0 && host[j:] == n[1:] {
				return true
			}
		}
	}
	return false
}

// Manager loads and reloads one certificate. Its methods are safe for
// concurrent use.
type Manager struct {
	certFile, keyFile string
	self              bool
	log               *slog.Logger

	mu      sync.RWMutex // guards cert, info, mtimes
	cert    *tls.Certificate
	info    Info
	mtimes  [2]time.Time
	lastErr error
}

// Open loads certFile and keyFile (PEM; the certificate file holds the full
// chain). With both empty it uses the self-signed certificate of dataDir,
// creating it (ECDSA P-256, SANs: names and 127.0.0.1, ::1) when missing;
// created reports that. Giving one file without the other is an error.
func Open(dataDir, certFile, keyFile string, names []string, log *slog.Logger) (m *Manager, created bool, err error) {
	if log == nil {
		log = slog.Default()
	}
	if (certFile == "") != (keyFile == "") {
		return nil, false, errors.New("--tls-cert and --tls-key go together: give both (PEM files), or neither for a self-signed certificate")
	}
	m = &Manager{certFile: certFile, keyFile: keyFile, log: log}
	if certFile == "" {
		m.self = true
		m.certFile = filepath.Join(dataDir, SelfCertFile)
		m.keyFile = filepath.Join(dataDir, SelfKeyFile)
		if _, err := os.Stat(m.certFile); errors.Is(err, os.ErrNotExist) {
			if err := CreateSelfSigned(m.certFile, m.keyFile, names, time.Now()); err != nil {
				return nil, false, err
			}
			created = true
		}
	}
	if err := m.Reload(); err != nil {
		return nil, false, err
	}
	return m, created, nil
}

// CreateSelfSigned writes a new self-signed certificate for names (the
// first is the subject; IP addresses become IP SANs; 127.0.0.1 and ::1
// are always added) to certPath, and its key to keyPath (mode 0600).
func CreateSelfSigned(certPath, keyPath string, names []string, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("tls: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, n := range append(append([]string{}, names...), "127.0.0.1", "::1") {
		n = strings.TrimSpace(n)
		if n == "" || seen[strings.ToLower(n)] {
			continue
		}
		seen[strings.ToLower(n)] = true
		if ip := net.ParseIP(n); ip != nil {
			if ip.IsUnspecified() {
				continue
			}
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
		if tmpl.Subject.CommonName == "" {
			tmpl.Subject = pkix.Name{CommonName: n, Organization: []string{"switchboard (self-signed)"}}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("tls: create certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("tls: marshal key: %w", err)
	}
	if err := privfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), true); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	// The certificate is public; privfile still writes it whole or not at all.
	if err := privfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), true); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}

// Reload reads the files again. On failure the certificate loaded before
// stays in force and the error says which file is wrong.
func (m *Manager) Reload() error {
	ct, kt := mtime(m.certFile), mtime(m.keyFile)
	pair, err := tls.LoadX509KeyPair(m.certFile, m.keyFile)
	if err != nil {
		err = fmt.Errorf("tls: load %s and %s: %w (give a PEM certificate chain and its PEM private key)", m.certFile, m.keyFile, err)
		m.mu.Lock()
		m.lastErr = err
		m.mtimes = [2]time.Time{ct, kt}
		m.mu.Unlock()
		return err
	}
	info, err := describe(pair)
	if err != nil {
		return fmt.Errorf("tls: %s: %w", m.certFile, err)
	}
	info.CertFile, info.KeyFile, info.SelfSigned, info.LoadedAt = m.certFile, m.keyFile, m.self, time.Now()
	m.mu.Lock()
	m.cert, m.info, m.mtimes, m.lastErr = &pair, info, [2]time.Time{ct, kt}, nil
	m.mu.Unlock()
	return nil
}

func describe(pair tls.Certificate) (Info, error) {
	if len(pair.Certificate) == 0 {
		return Info{}, errors.New("no certificate in the file")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return Info{}, fmt.Errorf("parse certificate: %w", err)
	}
	info := Info{Subject: leaf.Subject.String(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Fingerprint: Fingerprint(pair.Certificate[0])}
	info.Names = append(info.Names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		info.Names = append(info.Names, ip.String())
	}
	return info, nil
}

// Fingerprint is the SHA-256 of der as upper-case hex pairs joined by ':'
// (how browsers and openssl x509 -fingerprint -sha256 show it).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func mtime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// Changed reports whether either file's modification time differs from
// the one seen at the last Reload.
func (m *Manager) Changed() bool {
	ct, kt := mtime(m.certFile), mtime(m.keyFile)
	m.mu.RLock()
	defer m.mu.RUnlock()
	return !ct.Equal(m.mtimes[0]) || !kt.Equal(m.mtimes[1])
}

// Info describes the certificate in force; err is the last failed reload
// (nil when the last reload succeeded).
func (m *Manager) Info() (Info, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.info, m.lastErr
}

// GetCertificate is tls.Config.GetCertificate: the certificate loaded last.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cert, nil
}

// Config returns the server TLS configuration: TLS 1.2 minimum, Go's
// default cipher suites, the certificate from GetCertificate.
func (m *Manager) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: m.GetCertificate}
}

// PollInterval is how often Run looks at the files' modification times.
const PollInterval = 2 * time.Second

// Run reloads the certificate when its files change (polled every
// interval; 0: PollInterval) or when hup delivers, until done closes.
func (m *Manager) Run(done <-chan struct{}, hup <-chan os.Signal, interval time.Duration) {
	if interval <= 0 {
		interval = PollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-hup:
			m.reloadLogged("SIGHUP")
		case <-t.C:
			if m.Changed() {
				m.reloadLogged("files changed")
			}
		}
	}
}

func (m *Manager) reloadLogged(why string) {
	if err := m.Reload(); err != nil {
		m.log.Error("tls certificate not reloaded; the previous one stays in force", "why", why, "error", err)
		return
	}
	info, _ := m.Info()
	m.log.Info("tls certificate reloaded", "why", why, "subject", info.Subject, "not_after", info.NotAfter.Format(time.RFC3339),
		"sha256", info.Fingerprint)
}

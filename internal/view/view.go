// Package view holds the JSON shapes that switchboard shows to people and
// scripts: the CLI's --json output and the HTTP API under /api/v1/ write
// the very same objects with the same snake_case field names, made here
// from the store's records. Field names are a stable interface: add,
// never rename.
package view

import (
	"context"
	"encoding/json"
	"math"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/acl"
	"github.com/switchboard-pbx/switchboard/internal/calls"
	"github.com/switchboard-pbx/switchboard/internal/control"
	"github.com/switchboard-pbx/switchboard/internal/security"
	"github.com/switchboard-pbx/switchboard/internal/store"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
	"github.com/switchboard-pbx/switchboard/internal/version"
)

// Extension is an extension (no secrets). Its names are the extension
// vocabulary shared by ext show, ext list, ext export (JSON keys and CSV
// columns), ext import and the API. Password is set only in the answer
// that made a new one (shown once).
type Extension struct {
	Extension        string `json:"extension"`
	Domain           string `json:"domain"`
	Enabled          bool   `json:"enabled"`
	Name             string `json:"name"`
	CallerIDNumber   string `json:"caller_id_number"`
	Description      string `json:"description"`
	MaxRegistrations int    `json:"max_registrations"`
	CallTimeout      int    `json:"call_timeout_s"`
	ACL              string `json:"acl"`
	CreatedAt        string `json:"created_at"`
	UpdatedAt        string `json:"updated_at"`
	Password         string `json:"password,omitempty"`
}

// ExtensionOf makes the view of e.
func ExtensionOf(e store.Extension) Extension {
	return Extension{Extension: e.Number, Domain: e.Domain, Enabled: e.Enabled, Name: e.CallerIDName,
		CallerIDNumber: e.CallerIDNumber, Description: e.Description, MaxRegistrations: e.MaxRegistrations,
		CallTimeout: e.CallTimeout, ACL: e.ACL, CreatedAt: e.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"),
		UpdatedAt: e.UpdatedAt.UTC().Format("2006-01-02T15:04:05Z")}
}

// Registration is one registered contact.
type Registration struct {
	Extension    string  `json:"extension"`
	Domain       string  `json:"domain"`
	User         string  `json:"user"`
	Contact      string  `json:"contact"`
	Source       string  `json:"source"`
	Transport    string  `json:"transport"`
	UserAgent    string  `json:"user_agent"`
	CallID       string  `json:"call_id"`
	RegisteredAt string  `json:"registered_at"`
	ExpiresAt    string  `json:"expires_at"`
	ExpiresIn    int     `json:"expires_in"`
	AuthUser     string  `json:"auth_user"`
	AuthRealm    string  `json:"auth_realm"`
	PingStatus   string  `json:"ping_status"`
	PingRTTms    float64 `json:"ping_rtt_ms"` // 0 unless pinged
	// Pinged is false while the server has not sent the binding an
	// OPTIONS ping (TCP bindings, or not yet): ping_status is "" then.
	Pinged bool `json:"pinged"`
	// Node is the node the phone registered on (serve --node).
	Node string `json:"node"`
	// Connection is the state of the connection a TCP, TLS, WS or WSS
	// binding is reached through: "open", or "closed" (it closed, the
	// phone stopped answering over it, or serve is not running; calls get
	// 480 until it registers again); "" for UDP.
	Connection string `json:"connection"`
}

// RegistrationOf makes the view of b at now.
func RegistrationOf(b store.Binding, now time.Time) Registration {
	return Registration{Extension: b.Extension, Domain: b.Domain, User: b.Extension + "@" + b.Domain,
		Contact: b.Contact, Source: b.Source, Transport: b.Transport, UserAgent: b.UserAgent, CallID: b.CallID,
		RegisteredAt: b.RegisteredAt.UTC().Format(time.RFC3339), ExpiresAt: b.ExpiresAt.UTC().Format(time.RFC3339),
		ExpiresIn: int(b.ExpiresAt.Sub(now).Seconds()), AuthUser: b.AuthUser, AuthRealm: b.Realm,
		PingStatus: b.PingStatus, PingRTTms: b.PingRTT, Pinged: b.PingStatus != "" || !b.PingAt.IsZero(), Node: b.Node}
}

// Call is a call record.
type Call struct {
	ID           int64    `json:"id"`
	CallID       string   `json:"call_id"`
	From         string   `json:"from"`
	To           string   `json:"to"`
	Domain       string   `json:"domain"`
	CallerSource string   `json:"caller_source"`
	Transport    string   `json:"transport"`
	UserAgent    string   `json:"user_agent"`
	Start        string   `json:"start"`
	Answer       string   `json:"answer"`
	End          string   `json:"end"`
	DurationS    float64  `json:"duration_s"`
	Active       bool     `json:"active"`
	State        string   `json:"state"`
	SIPStatus    int      `json:"sip_status"`
	Cause        string   `json:"cause"`
	HangupBy     string   `json:"hangup_by"`
	Branches     []Branch `json:"branches"`
	Detail       string   `json:"detail"`
	// Media is what the media relay counted per leg (caller, then
	// callee): the final counters of an ended call, live ones of a call
	// in progress when the server reported them; empty when the media was
	// not relayed.
	Media []MediaLeg `json:"media"`
}

// MediaLeg is one leg of a relayed call: "in" is from the party to the
// relay, "out" from the relay to the party. Addresses are "ip:port" ("" when
// unknown), times as Stamp ("" when nothing arrived).
type MediaLeg struct {
	Side          string  `json:"side"` // "caller" | "callee"
	Relayed       bool    `json:"relayed"`
	WebRTC        bool    `json:"webrtc"`
	DTLS          string  `json:"dtls"` // the WebRTC bridge's state, "" for plain RTP
	Codec         string  `json:"codec"`
	SignalledAddr string  `json:"signalled_addr"` // from the party's SDP
	SIPSource     string  `json:"sip_source"`     // where its SIP came from
	LatchedAddr   string  `json:"latched_addr"`   // where its packets came from (and the relay sends)
	PacketsIn     uint64  `json:"packets_in"`
	BytesIn       uint64  `json:"bytes_in"`
	PacketsOut    uint64  `json:"packets_out"`
	BytesOut      uint64  `json:"bytes_out"`
	FirstPacketIn string  `json:"first_packet_in"`
	LastPacketIn  string  `json:"last_packet_in"`
	Lost          int64   `json:"lost"`
	LossPct       float64 `json:"loss_pct"` // lost / (lost + received), in %
	JitterMS      float64 `json:"jitter_ms"`
	MOS           float64 `json:"mos"` // estimated (E-model); 0 when nothing arrived
	Stray         uint64  `json:"stray"`
	StraySource   string  `json:"stray_source"`
	Malformed     uint64  `json:"malformed"`
}

// MediaOf makes the views of a call's media legs (never nil).
func MediaOf(legs []store.MediaLeg) []MediaLeg {
	out := make([]MediaLeg, 0, len(legs))
	for _, l := range legs {
		loss := 0.0
		if l.Lost > 0 {
			loss = math.Round(1000*float64(l.Lost)/float64(uint64(l.Lost)+l.PacketsIn)) / 10
		}
		out = append(out, MediaLeg{Side: l.Side, Relayed: l.Relayed, WebRTC: l.WebRTC, DTLS: l.DTLS, Codec: l.Codec,
			SignalledAddr: l.SignalledAddr, SIPSource: l.SIPSource, LatchedAddr: l.LatchedAddr,
			PacketsIn: l.PacketsIn, BytesIn: l.BytesIn, PacketsOut: l.PacketsOut, BytesOut: l.BytesOut,
			FirstPacketIn: Stamp(l.FirstPacketIn), LastPacketIn: Stamp(l.LastPacketIn), Lost: l.Lost, LossPct: loss,
			JitterMS: math.Round(l.JitterMS*100) / 100, MOS: math.Round(l.MOS*100) / 100,
			Stray: l.Stray, StraySource: l.StraySource, Malformed: l.Malformed})
	}
	return out
}

// Branch is one fork of a call.
type Branch struct {
	Contact     string `json:"contact"`
	Destination string `json:"destination"`
	Transport   string `json:"transport"`
	UserAgent   string `json:"user_agent"`
	SIPStatus   int    `json:"sip_status"`
	Reason      string `json:"reason"`
	Ringing     bool   `json:"ringing"`
}

// Stamp writes a time to the millisecond in UTC, "" for none.
func Stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// CallOf makes the view of r at now.
func CallOf(r calls.Record, now time.Time) Call {
	v := Call{ID: r.ID, CallID: r.CallID, From: r.From, To: r.To, Domain: r.Domain, CallerSource: r.Source,
		Transport: r.Transport, UserAgent: r.UserAgent, Start: Stamp(r.Start), Answer: Stamp(r.Answer),
		End: Stamp(r.End), DurationS: float64(r.Duration(now).Milliseconds()) / 1000, Active: r.Active(),
		SIPStatus: r.SIPStatus, Cause: string(r.Cause), HangupBy: r.HangupBy, Detail: r.Detail,
		Branches: []Branch{}, Media: MediaOf(r.Media)}
	switch {
	case !r.Active():
		v.State = "ended"
	case r.Answer.IsZero():
		v.State = "ringing"
	default:
		v.State = "up"
	}
	for _, b := range r.Branches {
		v.Branches = append(v.Branches, Branch{Contact: b.Contact, Destination: b.Destination,
			Transport: b.Transport, UserAgent: b.UserAgent, SIPStatus: b.Status, Reason: b.Reason, Ringing: b.Ringing})
	}
	return v
}

// ACLNode is one node of an access-control list.
type ACLNode struct {
	Position int    `json:"position"`
	Action   string `json:"action"`
	CIDR     string `json:"cidr"`
}

// ACL is an access-control list and who uses it.
type ACL struct {
	Name    string    `json:"name"`
	Default string    `json:"default"`
	Nodes   []ACLNode `json:"nodes"`
	UsedBy  []string  `json:"used_by"`
}

// Action names an ACL action: "allow" or "deny".
func Action(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// ACLOf makes the view of l.
func ACLOf(l acl.List, usedBy []string) ACL {
	v := ACL{Name: l.Name, Default: Action(l.DefaultAllow), Nodes: []ACLNode{}, UsedBy: usedBy}
	if v.UsedBy == nil {
		v.UsedBy = []string{}
	}
	for i, n := range l.Nodes {
		v.Nodes = append(v.Nodes, ACLNode{Position: i + 1, Action: Action(n.Allow), CIDR: n.Prefix.String()})
	}
	return v
}

// Ban is a brute-force ban.
type Ban struct {
	IP         string `json:"ip"`
	Reason     string `json:"reason"`
	Failures   int    `json:"failures"`
	Since      string `json:"since"`
	Until      string `json:"until"` // "" when permanent
	Permanent  bool   `json:"permanent"`
	ExpiresInS int64  `json:"expires_in_s"` // 0 when permanent
}

// BanOf makes the view of b at now.
func BanOf(b acl.Ban, now time.Time) Ban {
	v := Ban{IP: b.IP.String(), Reason: b.Reason, Failures: b.Failures, Since: b.Since.UTC().Format(time.RFC3339),
		Permanent: b.Until.IsZero()}
	if !v.Permanent {
		v.Until = b.Until.UTC().Format(time.RFC3339)
		v.ExpiresInS = int64(b.Until.Sub(now).Round(time.Second) / time.Second)
	}
	return v
}

// Status is what `switchboard status` shows.
type Status struct {
	State         string    `json:"state"`
	PID           int       `json:"pid,omitempty"`
	Version       string    `json:"version"`
	DataDir       string    `json:"data_dir"`
	Database      string    `json:"database"` // SQLite file or PostgreSQL URL (password redacted)
	DefaultDomain string    `json:"default_domain"`
	StartedAt     string    `json:"started_at,omitempty"`
	UptimeS       int64     `json:"uptime_s"`
	Profiles      []Profile `json:"profiles"`
	Domains       int       `json:"domains"`
	Extensions    int       `json:"extensions"`
	Registrations int       `json:"registrations"`
	Nodes         []Node    `json:"nodes"`
}

// Node is one node sharing the database, in Status and ProfileShow.
type Node struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	State     string `json:"state"` // "up" or "down" (lease ran out)
	StartedAt string `json:"started_at"`
	RenewedAt string `json:"renewed_at"`
	// LeaseS is how long a lease lasts after a renewal (serve --node-lease).
	LeaseS float64 `json:"lease_s"`
}

// NodeLease is the lease time serve recorded (serve --node-lease), 15 s
// when none did.
func NodeLease(ctx context.Context, meta store.Meta) time.Duration {
	if v, ok, _ := meta.Meta(ctx, "node_lease"); ok {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return 15 * time.Second
}

// NodesOf lists the nodes of the database with their state now.
func NodesOf(ctx context.Context, db interface {
	store.Nodes
	store.Meta
}) ([]Node, error) {
	nodes, err := db.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	lease := NodeLease(ctx, db)
	now := time.Now()
	out := []Node{}
	for _, n := range nodes {
		st := "up"
		if now.Sub(n.RenewedAt) >= lease {
			st = "down"
		}
		out = append(out, Node{Name: n.Name, Address: n.Address, State: st,
			StartedAt: n.StartedAt.UTC().Format(time.RFC3339), RenewedAt: n.RenewedAt.UTC().Format(time.RFC3339),
			LeaseS: lease.Seconds()})
	}
	return out, nil
}

// Profile is a SIP profile's state in Status.
type Profile struct {
	Name      string     `json:"name"`
	State     string     `json:"state"`
	Listeners []Listener `json:"listeners"`
}

// Listener is a SIP listener in Status.
type Listener struct {
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	State    string `json:"state"`
}

// StatusOf makes the status of the data directory dataDir: rt describes
// the server (running tells whether it runs); registrations is the live
// count.
func StatusOf(ctx context.Context, db storeopen.Backend, dataDir string, rt control.Runtime, running bool, registrations int) (Status, error) {
	v := Status{State: "stopped", Version: version.Get().String(), DataDir: dataDir, Database: db.Path(), Profiles: []Profile{},
		Registrations: registrations}
	v.DefaultDomain, _, _ = db.Meta(ctx, "default_domain")
	var err error
	if v.Domains, v.Extensions, err = db.Counts(ctx); err != nil {
		return v, err
	}
	prof := Profile{Name: "internal", State: "STOPPED", Listeners: []Listener{}}
	if running {
		v.State, v.PID = "running", rt.PID
		v.Version = rt.Version
		v.StartedAt = rt.StartedAt.UTC().Format(time.RFC3339)
		v.UptimeS = int64(time.Since(rt.StartedAt).Seconds())
		prof.State = "RUNNING"
	}
	for _, l := range rt.Listeners {
		st := "stopped"
		if running {
			st = "listening"
		}
		prof.Listeners = append(prof.Listeners, Listener{Protocol: l.Proto, Address: l.Addr, State: st})
	}
	v.Profiles = append(v.Profiles, prof)
	if v.Nodes, err = NodesOf(ctx, db); err != nil {
		return v, err
	}
	return v, nil
}

// ProfileShow is what `switchboard profile show` shows.
type ProfileShow struct {
	Name          string              `json:"name"`
	State         string              `json:"state"`
	PID           int                 `json:"pid,omitempty"`
	Domain        string              `json:"domain"`
	Listeners     []SIPListener       `json:"listeners"`
	RegisterACL   string              `json:"register_acl"`
	InboundACL    string              `json:"inbound_acl"`
	TrustedACL    string              `json:"trusted_acl"`
	Security      *security.Settings  `json:"security"`
	Registrations int                 `json:"registrations"`
	Extensions    int                 `json:"extensions"`
	Domains       int                 `json:"domains"`
	ActiveBans    int                 `json:"active_bans"`
	ActiveCalls   int                 `json:"active_calls"`
	Nodes         []Node              `json:"nodes"`
	ACLs          map[string]ACLBrief `json:"acls"`
}

// SIPListener is a listener in ProfileShow.
type SIPListener struct {
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
}

// ACLBrief summarises a list the profile uses.
type ACLBrief struct {
	Default string `json:"default"`
	Nodes   int    `json:"nodes"`
}

// ProfileShowOf makes the view of profile name; rt and running describe
// the server, domain is the default domain.
func ProfileShowOf(ctx context.Context, db storeopen.Backend, name, domain string, rt control.Runtime, running bool) (ProfileShow, error) {
	st := security.NewStore(db)
	p, err := st.Profile(ctx, name)
	if err != nil {
		return ProfileShow{}, err
	}
	v := ProfileShow{Name: p.Name, State: "STOPPED", Domain: domain, Listeners: []SIPListener{}, RegisterACL: p.RegisterACL,
		InboundACL: p.InboundACL, TrustedACL: p.TrustedACL, ACLs: map[string]ACLBrief{}}
	if running {
		v.State, v.PID = "RUNNING", rt.PID
	}
	for _, l := range rt.Listeners {
		v.Listeners = append(v.Listeners, SIPListener{Protocol: l.Proto, Address: l.Addr})
	}
	if s, ok, _ := db.Meta(ctx, security.MetaKey); ok {
		var set security.Settings
		if json.Unmarshal([]byte(s), &set) == nil {
			v.Security = &set
		}
	}
	if v.Domains, v.Extensions, err = db.Counts(ctx); err != nil {
		return v, err
	}
	now := time.Now()
	if v.Registrations, err = db.CountRegistrations(ctx, now); err != nil {
		return v, err
	}
	bans, err := st.Bans(ctx, now)
	if err != nil {
		return v, err
	}
	v.ActiveBans = len(bans)
	if v.ActiveCalls, err = db.CountActiveCalls(ctx); err != nil {
		return v, err
	}
	for _, n := range []string{p.RegisterACL, p.InboundACL, p.TrustedACL} {
		if n == "" {
			continue
		}
		if l, err := st.ACL(ctx, n); err == nil {
			v.ACLs[n] = ACLBrief{Default: Action(l.DefaultAllow), Nodes: len(l.Nodes)}
		}
	}
	if v.Nodes, err = NodesOf(ctx, db); err != nil {
		return v, err
	}
	return v, nil
}

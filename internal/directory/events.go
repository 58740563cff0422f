package directory

import "net/netip"

// Event is a change the cache applied from the store's change feed,
// delivered to the functions registered with Subscribe. The concrete
// types below are the only events; a subscriber switches on them and
// ignores the kinds it does not care about.
type Event interface{ isEvent() }

// ExtensionChanged: an extension was added or changed; Lookup returns its
// new entry.
type ExtensionChanged struct{ Domain, Number string }

// ExtensionRemoved: an extension no longer exists (removed, or gone with a
// full reload). Its registrations should go.
type ExtensionRemoved struct{ Domain, Number string }

// DomainChanged: a domain was added, changed or removed.
type DomainChanged struct{ Name string }

// DomainRenamed: domain Old is now New, with its extensions; delivered
// before any ExtensionRemoved of the same poll, so registrations can move
// before the old names are reported gone.
type DomainRenamed struct{ Old, New string }

// DefaultDomainChanged: the default domain is now Name.
type DefaultDomainChanged struct{ Name string }

// ACLChanged: the named ACL (or one of its entries) changed.
type ACLChanged struct{ Name string }

// ProfileChanged: the named profile changed.
type ProfileChanged struct{ Name string }

// BanChanged: the ban of IP was added, changed or lifted.
type BanChanged struct{ IP netip.Addr }

// Reloaded: the cache reloaded the whole directory because the feed held
// too many changes to apply one by one (more than 1,000). The changes in
// between are not delivered one by one (except DomainRenamed,
// DefaultDomainChanged and ExtensionRemoved, delivered before it):
// whatever else a subscriber derives from the feed (ACLs, profiles, bans)
// must be read again whole, once.
type Reloaded struct{}

func (ExtensionChanged) isEvent()     {}
func (ExtensionRemoved) isEvent()     {}
func (DomainChanged) isEvent()        {}
func (DomainRenamed) isEvent()        {}
func (DefaultDomainChanged) isEvent() {}
func (ACLChanged) isEvent()           {}
func (ProfileChanged) isEvent()       {}
func (BanChanged) isEvent()           {}
func (Reloaded) isEvent()             {}

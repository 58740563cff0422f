package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/console"
	"github.com/switchboard-pbx/switchboard/internal/store"
	"github.com/switchboard-pbx/switchboard/internal/webauth"
)

// consoleAdmins is the console's Admins page's view of the admins and
// their sessions (console.AdminService), with the rules of `switchboard
// admin`: names and passwords checked by webauth, bcrypt hashes, the last
// admin cannot be removed, a password change ends the admin's other
// sessions and a removal all of them. Each change is journaled (Audit).
type consoleAdmins struct{ s *Server }

var _ console.AdminService = consoleAdmins{}

func (a consoleAdmins) Admins(ctx context.Context) ([]store.Admin, error) {
	return a.s.deps.DB.Admins(ctx)
}

func (a consoleAdmins) Sessions(r *http.Request) []console.AdminSession {
	cur, _ := SessionFrom(r.Context())
	var out []console.AdminSession
	for _, s := range a.s.Sessions() {
		out = append(out, console.AdminSession{ID: s.ID, Admin: s.Admin, Created: s.Created, LastSeen: s.LastSeen,
			RemoteIP: s.RemoteIP, UserAgent: s.UserAgent, Current: s.ID != "" && s.ID == cur.ID})
	}
	return out
}

func (a consoleAdmins) Add(r *http.Request, name, password string) error {
	if err := webauth.ValidName("admin", name); err != nil {
		return err
	}
	if err := webauth.CheckPassword(name, password); err != nil {
		return err
	}
	hash, err := webauth.HashPassword(password)
	if err != nil {
		return err
	}
	now := a.s.now()
	err = a.s.deps.DB.AddAdmin(r.Context(), store.Admin{Name: name, PasswordHash: hash, CreatedAt: now, PasswordChangedAt: now})
	if errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("there is already an admin named %s", name)
	} else if err != nil {
		return err
	}
	a.s.Audit(r, cause.AdminChanged, "admin "+name+" added")
	return nil
}

func (a consoleAdmins) Remove(r *http.Request, name string) error {
	n, err := a.s.deps.DB.CountAdmins(r.Context())
	if err != nil {
		return err
	}
	if n <= 1 {
		return errors.New("the last admin cannot be removed: add another one first")
	}
	if err := a.s.deps.DB.RemoveAdmin(r.Context(), name); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("there is no admin named %s", name)
	} else if err != nil {
		return err
	}
	a.s.EndSessionsOf(name, "")
	a.s.Audit(r, cause.AdminChanged, "admin "+name+" removed")
	return nil
}

func (a consoleAdmins) ChangeOwnPassword(r *http.Request, current, password string) error {
	sess, ok := SessionFrom(r.Context())
	if !ok || sess.Token != "" {
		return errors.New("only a signed-in admin can change a password here")
	}
	ad, err := a.s.deps.DB.Admin(r.Context(), sess.Admin)
	if err != nil {
		return err
	}
	if !webauth.VerifyPassword(ad.PasswordHash, current) {
		return errors.New("the current password is wrong")
	}
	if err := webauth.CheckPassword(sess.Admin, password); err != nil {
		return err
	}
	hash, err := webauth.HashPassword(password)
	if err != nil {
		return err
	}
	if err := a.s.deps.DB.SetAdminPassword(r.Context(), sess.Admin, hash, a.s.now()); err != nil {
		return err
	}
	a.s.EndSessionsOf(sess.Admin, sess.ID)
	a.s.Audit(r, cause.AdminChanged, "password of admin "+sess.Admin+" changed")
	return nil
}

func (a consoleAdmins) Revoke(r *http.Request, id string) bool {
	if !a.s.RevokeSession(id) {
		return false
	}
	a.s.Audit(r, cause.AdminChanged, "a console session was revoked")
	return true
}

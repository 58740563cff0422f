package console

import (
	"context"
	"net/http"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/store"
)

// AdminService is what the Admins page asks of package web, which owns
// the admins' credentials and sessions. Errors of Add, Remove and
// ChangeOwnPassword are shown to the admin as they are, so they say what
// to do.
type AdminService interface {
	Admins(ctx context.Context) ([]store.Admin, error)
	// Sessions returns the console sessions in force, marking the
	// request's own.
	Sessions(r *http.Request) []AdminSession
	Add(r *http.Request, name, password string) error
	Remove(r *http.Request, name string) error
	ChangeOwnPassword(r *http.Request, current, password string) error
	// Revoke ends the session with public handle id.
	Revoke(r *http.Request, id string) bool
}

// AdminSession is one console session as the Admins page lists it.
type AdminSession struct {
	ID, Admin, RemoteIP, UserAgent string
	Created, LastSeen              time.Time
	Current                        bool
}

type adminsData struct {
	Admins   []store.Admin
	Sessions []AdminSession
	Me       string
}

func (c *Console) admins(w http.ResponseWriter, r *http.Request) {
	c.showAdmins(w, r, http.StatusOK, "", "")
}

func (c *Console) showAdmins(w http.ResponseWriter, r *http.Request, status int, flash, errMsg string) {
	if c.d.Admins == nil {
		http.Error(w, "admins are managed with `switchboard admin` on this server", http.StatusNotFound)
		return
	}
	list, err := c.d.Admins.Admins(r.Context())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := adminsData{Admins: list, Sessions: c.d.Admins.Sessions(r), Me: c.admin(r)}
	c.render(w, r, status, "admins", page{Title: "Admins", Flash: flash, Error: errMsg, Data: d})
}

func (c *Console) adminAction(w http.ResponseWriter, r *http.Request) {
	if c.d.Admins == nil {
		http.NotFound(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	f := r.PostFormValue
	var err error
	var done string
	switch f("action") {
	case "add":
		if f("password") != f("password2") {
			c.showAdmins(w, r, http.StatusBadRequest, "", "the two passwords differ")
			return
		}
		err, done = c.d.Admins.Add(r, f("name"), f("password")), "admin "+f("name")+" added"
	case "remove":
		err, done = c.d.Admins.Remove(r, f("name")), "admin "+f("name")+" removed"
	case "password":
		if f("password") != f("password2") {
			c.showAdmins(w, r, http.StatusBadRequest, "", "the two new passwords differ")
			return
		}
		err, done = c.d.Admins.ChangeOwnPassword(r, f("current"), f("password")), "your password is changed; your other sessions are ended"
	case "revoke":
		if !c.d.Admins.Revoke(r, f("id")) {
			c.showAdmins(w, r, http.StatusNotFound, "", "that session has already ended")
			return
		}
		done = "session ended"
	default:
		c.showAdmins(w, r, http.StatusBadRequest, "", "unknown action")
		return
	}
	if err != nil {
		c.showAdmins(w, r, http.StatusBadRequest, "", err.Error())
		return
	}
	c.showAdmins(w, r, http.StatusOK, done, "")
}

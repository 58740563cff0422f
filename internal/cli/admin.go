package cli

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/switchboard-pbx/switchboard/internal/cause"
	"github.com/switchboard-pbx/switchboard/internal/journal"
	storeopen "github.com/switchboard-pbx/switchboard/internal/store/open"
)

// operator names who runs the CLI, for the journal: $SUDO_USER when the
// command runs through sudo, else the OS user (its name, or its uid when
// the name cannot be looked up).
func operator() string {
	if os.Geteuid() == 0 {
		if s := os.Getenv("SUDO_USER"); s != "" {
			return s
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// journalAdmin records an operator's change (ban, ACL, profile) in the
// journal as a KindAdmin event: c is its cause, source the address a ban
// names ("" for other changes), what the change in words; " by USER" is
// appended and USER also goes in the event's auth_user. The row is written
// at once, straight to the database (a running server's writer shares it
// through WAL), so `journal` and the doctor see it when the command
// returns. The change itself is already made: a failure to journal it is
// a warning on stderr, not an error.
func journalAdmin(ctx context.Context, env Env, db storeopen.Backend, c cause.Code, source, what string) {
	who := operator()
	e := journal.Event{Time: time.Now(), Kind: journal.KindAdmin, Cause: c, AuthUser: who, Source: source, Detail: what + " by " + who}
	if err := journal.Insert(ctx, db, []journal.Event{e}); err != nil {
		fmt.Fprintf(env.Stderr, "switchboard: warning: the change is made but could not be journaled: %v\n", err)
	}
}

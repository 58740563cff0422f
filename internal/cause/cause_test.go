package cause

import "testing"

func TestCallAnswers(t *testing.T) {
	tests := []struct {
		c      Code
		status int
		reason string
	}{
		{UserNotRegistered, 480, `Q.850;cause=20;text="USER_NOT_REGISTERED"`},
		{UnallocatedNumber, 404, `Q.850;cause=1;text="UNALLOCATED_NUMBER"`},
		{UserBusy, 486, `Q.850;cause=17;text="USER_BUSY"`},
		{NoAnswer, 480, `Q.850;cause=19;text="NO_ANSWER"`},
		{CallRejected, 603, `Q.850;cause=21;text="CALL_REJECTED"`},
		{OriginatorCancel, 487, `Q.850;cause=127;text="ORIGINATOR_CANCEL"`},
		{RecoveryOnTimerExpire, 408, `Q.850;cause=102;text="RECOVERY_ON_TIMER_EXPIRE"`},
		{TooManyHops, 483, `Q.850;cause=25;text="EXCHANGE_ROUTING_ERROR"`},
		{NormalClearing, 200, `Q.850;cause=16;text="NORMAL_CLEARING"`},
	}
	for _, tc := range tests {
		a, ok := AnswerFor(tc.c)
		if !ok || a.Status != tc.status {
			t.Errorf("%s: answer %+v (ok=%v), want status %d", tc.c, a, ok, tc.status)
		}
		if got := ReasonHeader(tc.c); got != tc.reason {
			t.Errorf("%s: Reason %q, want %q", tc.c, got, tc.reason)
		}
	}
}

func TestRegistrationFailuresLookAlike(t *testing.T) {
	// A scanner must not tell a missing user from a wrong password.
	want, _ := AnswerFor(WrongPassword)
	for _, c := range []Code{ExtensionMissing, ExtensionDisabled, WrongDomain, AuthUserMismatch} {
		if a, _ := AnswerFor(c); a != want {
			t.Errorf("%s answers %+v, wrong_password answers %+v", c, a, want)
		}
		if ReasonHeader(c) != "" {
			t.Errorf("%s has a Q.850 Reason", c)
		}
	}
}

func TestNoWireAnswer(t *testing.T) {
	for _, c := range []Code{Registered, SystemShutdown, Reachable, Unreachable} {
		if _, ok := AnswerFor(c); ok {
			t.Errorf("%s should not end a request", c)
		}
		if ReasonHeader(c) != "" {
			t.Errorf("%s should have no Reason header", c)
		}
	}
}

func TestFromCalleeStatus(t *testing.T) {
	tests := map[int]Code{
		200: NormalClearing, 202: NormalClearing,
		486: UserBusy, 600: UserBusy,
		603: CallRejected, 401: CallRejected, 403: CallRejected, 407: CallRejected,
		404: UnallocatedNumber, 604: UnallocatedNumber,
		480: NoUserResponse,
		408: RecoveryOnTimerExpire, 504: RecoveryOnTimerExpire,
		487: OriginatorCancel,
		500: TemporaryFailure, 503: TemporaryFailure, 488: TemporaryFailure,
	}
	for status, want := range tests {
		if got := FromCalleeStatus(status); got != want {
			t.Errorf("FromCalleeStatus(%d) = %s, want %s", status, got, want)
		}
	}
}

package pipeline

import (
	"errors"
	"testing"
	"time"
)

func TestDeriveApproval(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	pol := ApprovalPolicy{Required: 2, Groups: []string{"ops"}, Members: map[string][]string{"ops": {"alice", "bob", "carol", "pete"}},
		ForbidSelf: true, Deadline: time.Hour}
	v := func(who string, ok bool, min int) Vote {
		return Vote{Voter: who, Approve: ok, At: t0.Add(time.Duration(min) * time.Minute)}
	}
	for _, tc := range []struct {
		name               string
		votes              []Vote
		now                int
		approved, rejected bool
		expired            bool
		n                  int
	}{
		{"none", nil, 1, false, false, false, 0},
		{"one", []Vote{v("alice", true, 1)}, 2, false, false, false, 1},
		{"same voter twice counts once", []Vote{v("alice", true, 1), v("alice", true, 2)}, 3, false, false, false, 1},
		{"two distinct", []Vote{v("alice", true, 1), v("bob", true, 2)}, 3, true, false, false, 2},
		{"pusher does not count", []Vote{v("alice", true, 1), v("pete", true, 2)}, 3, false, false, false, 1},
		{"outsider does not count", []Vote{v("alice", true, 1), v("mallory", true, 2)}, 3, false, false, false, 1},
		{"rejection wins", []Vote{v("alice", true, 1), v("bob", true, 2), v("carol", false, 3)}, 4, false, true, false, 2},
		{"late vote ignored, expired", []Vote{v("alice", true, 1), v("bob", true, 61)}, 62, false, false, true, 1},
		{"not yet expired", []Vote{v("alice", true, 1)}, 59, false, false, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := DeriveApproval(pol, t0, tc.votes, t0.Add(time.Duration(tc.now)*time.Minute), "pete")
			if st.Approved != tc.approved || st.Rejected != tc.rejected || st.Expired != tc.expired || st.Approvals != tc.n {
				t.Errorf("status = %+v", st)
			}
		})
	}
	if err := pol.Eligible("pete", "pete"); !errors.Is(err, ErrSelfApprove) {
		t.Errorf("self: %v", err)
	}
	if err := pol.Eligible("mallory"); !errors.Is(err, ErrNotEligible) {
		t.Errorf("outsider: %v", err)
	}
	if err := (ApprovalPolicy{}).Eligible(""); !errors.Is(err, ErrNotEligible) {
		t.Errorf("anonymous: %v", err)
	}
}

package pipeline

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Approval stages: before a deploy, and to finish a held upgrade.
const (
	ApprovalDeploy = "deploy"
	ApprovalFinish = "finish"
)

// Errors of voting. The approvals code only records and counts; the
// Deploys manager decides what an approved status sets off.
var (
	ErrNotEligible  = errors.New("not an eligible approver")
	ErrSelfApprove  = errors.New("approving one's own push is not allowed here")
	ErrAlreadyVoted = errors.New("already voted")
	ErrDecided      = errors.New("already decided")
)

// ApprovalPolicy says who must agree before something happens.
type ApprovalPolicy struct {
	// Required distinct approvers; 0 means no approval is needed.
	Required int
	// Groups name the groups approvers must belong to (empty: anyone
	// holding the approve permission on the environment).
	Groups []string
	// Members resolves group names to user names (from the config).
	Members map[string][]string
	// ForbidSelf refuses votes by the ticket's pusher or creator.
	ForbidSelf bool
	// Deadline after the request opens; 0 means none.
	Deadline time.Duration
}

// Vote is one recorded decision. Voter comes from the authenticated
// session or key, never from a request body.
type Vote struct {
	Ticket  string    `json:"ticket"`
	Stage   string    `json:"stage"` // deploy or finish
	Voter   string    `json:"voter"`
	Approve bool      `json:"approve"`
	Comment string    `json:"comment,omitempty"`
	Source  string    `json:"source,omitempty"` // client address
	At      time.Time `json:"at"`
}

// ApprovalStatus is derived from the votes; it is never stored.
type ApprovalStatus struct {
	Required   int       `json:"required"`
	Approvals  int       `json:"approvals"`
	Voters     []string  `json:"voters,omitempty"`
	Rejected   bool      `json:"rejected"`
	RejectedBy string    `json:"rejected_by,omitempty"`
	Deadline   time.Time `json:"deadline,omitzero"`
	Expired    bool      `json:"expired"`
	Approved   bool      `json:"approved"`
}

// String is the human summary, e.g. "1/2 approvals (alice)".
func (s ApprovalStatus) String() string {
	switch {
	case s.Rejected:
		return "rejected by " + s.RejectedBy
	case s.Approved:
		return fmt.Sprintf("approved (%d/%d)", s.Approvals, s.Required)
	case s.Expired:
		return fmt.Sprintf("expired with %d/%d approvals", s.Approvals, s.Required)
	}
	return fmt.Sprintf("%d/%d approvals %v", s.Approvals, s.Required, s.Voters)
}

// Eligible says whether voter may vote under p for a ticket pushed (or
// created) by the people in self.
func (p ApprovalPolicy) Eligible(voter string, self ...string) error {
	if voter == "" {
		return fmt.Errorf("%w: anonymous", ErrNotEligible)
	}
	if p.ForbidSelf {
		for _, s := range self {
			if s != "" && s == voter {
				return fmt.Errorf("%w (%s)", ErrSelfApprove, voter)
			}
		}
	}
	if len(p.Groups) == 0 {
		return nil
	}
	for _, g := range p.Groups {
		for _, m := range p.Members[g] {
			if m == voter {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s is in none of the groups %v", ErrNotEligible, voter, p.Groups)
}

// DeriveApproval counts votes under p for a request opened at opened, as
// seen at now. Votes are deduplicated by voter (the first counts), votes
// after the deadline and votes by ineligible voters are ignored, and one
// rejection rejects.
func DeriveApproval(p ApprovalPolicy, opened time.Time, votes []Vote, now time.Time, self ...string) ApprovalStatus {
	st := ApprovalStatus{Required: p.Required}
	if p.Deadline > 0 {
		st.Deadline = opened.Add(p.Deadline)
	}
	sorted := append([]Vote(nil), votes...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.Before(sorted[j].At) })
	seen := map[string]bool{}
	for _, v := range sorted {
		if seen[v.Voter] || p.Eligible(v.Voter, self...) != nil {
			continue
		}
		if !st.Deadline.IsZero() && v.At.After(st.Deadline) {
			continue
		}
		seen[v.Voter] = true
		if !v.Approve {
			st.Rejected, st.RejectedBy = true, v.Voter
			continue
		}
		st.Approvals++
		st.Voters = append(st.Voters, v.Voter)
	}
	st.Approved = !st.Rejected && st.Approvals >= p.Required
	st.Expired = !st.Approved && !st.Rejected && !st.Deadline.IsZero() && now.After(st.Deadline)
	return st
}

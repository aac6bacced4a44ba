// Package notify announces held upgrades and their outcome: a
// Slack-compatible incoming webhook, a generic JSON webhook and email over
// SMTP, each optional per environment.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"strings"
	"time"
)

// Message kinds.
const (
	KindHeld       = "held"        // an upgrade waits for finish or rollback
	KindReminder   = "reminder"    // still waiting
	KindFinished   = "finished"    // upgrade finished
	KindRolledBack = "rolled-back" // upgrade rolled back
)

// Message is one announcement.
type Message struct {
	Kind        string `json:"kind"`
	Ticket      string `json:"ticket"`
	App         string `json:"app"`
	Environment string `json:"environment"`
	FromVersion string `json:"from_version,omitempty"`
	ToVersion   string `json:"to_version"`
	Pusher      string `json:"pusher,omitempty"`
	Actor       string `json:"actor,omitempty"`
	FinishURL   string `json:"finish_url,omitempty"`
	RollbackURL string `json:"rollback_url,omitempty"`
	Detail      string `json:"detail,omitempty"`
}

// Text is the one-paragraph human version.
func (m Message) Text() string {
	var b strings.Builder
	switch m.Kind {
	case KindHeld:
		fmt.Fprintf(&b, "%s: %s on %s upgraded %s -> %s and is held for confirmation.", m.Ticket, m.App, m.Environment, orNone(m.FromVersion), m.ToVersion)
	case KindReminder:
		fmt.Fprintf(&b, "Reminder: %s: %s on %s (%s -> %s) still waits for finish or rollback.", m.Ticket, m.App, m.Environment, orNone(m.FromVersion), m.ToVersion)
	case KindFinished:
		fmt.Fprintf(&b, "%s: %s %s finished on %s", m.Ticket, m.App, m.ToVersion, m.Environment)
	case KindRolledBack:
		fmt.Fprintf(&b, "%s: %s %s rolled back on %s", m.Ticket, m.App, m.ToVersion, m.Environment)
	default:
		fmt.Fprintf(&b, "%s: %s %s on %s: %s", m.Ticket, m.App, m.ToVersion, m.Environment, m.Kind)
	}
	if m.Pusher != "" {
		fmt.Fprintf(&b, " Pushed by %s.", m.Pusher)
	}
	if m.Actor != "" {
		fmt.Fprintf(&b, " By %s.", m.Actor)
	}
	if m.Detail != "" {
		b.WriteString(" " + m.Detail)
	}
	if m.FinishURL != "" {
		b.WriteString("\nFinish upgrade: " + m.FinishURL)
	}
	if m.RollbackURL != "" {
		b.WriteString("\nRoll back: " + m.RollbackURL)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Channels are where one environment's messages go; empty fields are off.
type Channels struct {
	SlackURL   string
	WebhookURL string
	Email      *Email
}

// Email is an SMTP destination.
type Email struct {
	Addr     string // host:port
	From     string
	To       []string
	Username string
	Password string
}

// Notifier sends messages. Safe for concurrent use.
type Notifier struct {
	HTTP *http.Client
	// SendMail is net/smtp.SendMail unless a test replaces it.
	SendMail func(addr string, a smtp.Auth, from string, to []string, msg []byte) error
}

// New returns a Notifier with a 10s HTTP timeout.
func New() *Notifier {
	return &Notifier{HTTP: &http.Client{Timeout: 10 * time.Second}, SendMail: smtp.SendMail}
}

// Send delivers m to every configured channel and returns every failure
// joined, each naming its channel; one failing channel does not stop the others.
func (n *Notifier) Send(ctx context.Context, ch Channels, m Message) error {
	var errs []error
	if ch.SlackURL != "" {
		if err := n.post(ctx, ch.SlackURL, slackPayload(m)); err != nil {
			errs = append(errs, fmt.Errorf("notify slack: %w", err))
		}
	}
	if ch.WebhookURL != "" {
		if err := n.post(ctx, ch.WebhookURL, m); err != nil {
			errs = append(errs, fmt.Errorf("notify webhook: %w", err))
		}
	}
	if ch.Email != nil && ch.Email.Addr != "" && len(ch.Email.To) > 0 {
		if err := n.mail(*ch.Email, m); err != nil {
			errs = append(errs, fmt.Errorf("notify email %s: %w", ch.Email.Addr, err))
		}
	}
	return errors.Join(errs...)
}

// slackPayload is an incoming-webhook message: text for every client,
// plus blocks with the two link buttons for Slack itself.
func slackPayload(m Message) any {
	type text struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type element struct {
		Type  string `json:"type"`
		Text  text   `json:"text"`
		URL   string `json:"url"`
		Style string `json:"style,omitempty"`
	}
	blocks := []any{map[string]any{"type": "section", "text": text{"mrkdwn", m.Text()}}}
	var els []element
	if m.FinishURL != "" {
		els = append(els, element{"button", text{"plain_text", "Finish upgrade"}, m.FinishURL, "primary"})
	}
	if m.RollbackURL != "" {
		els = append(els, element{"button", text{"plain_text", "Roll back"}, m.RollbackURL, "danger"})
	}
	if len(els) > 0 {
		blocks = append(blocks, map[string]any{"type": "actions", "elements": els})
	}
	return map[string]any{"text": m.Text(), "blocks": blocks}
}

func (n *Notifier) post(ctx context.Context, url string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

func (n *Notifier) mail(e Email, m Message) error {
	var auth smtp.Auth
	if e.Username != "" {
		host, _, _ := strings.Cut(e.Addr, ":")
		auth = smtp.PlainAuth("", e.Username, e.Password, host)
	}
	subject := fmt.Sprintf("[dockmaster] %s %s %s on %s: %s", m.Ticket, m.App, m.ToVersion, m.Environment, m.Kind)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		e.From, strings.Join(e.To, ", "), subject)
	b.WriteString(strings.ReplaceAll(m.Text(), "\n", "\r\n"))
	b.WriteString("\r\n")
	send := n.SendMail
	if send == nil {
		send = smtp.SendMail
	}
	return send(e.Addr, auth, e.From, e.To, b.Bytes())
}

package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"strings"
	"testing"
)

func TestSlackMessageCarriesLinks(t *testing.T) {
	got := make(chan map[string]any, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &v); err != nil {
			t.Errorf("slack body: %v", err)
		}
		got <- v
	}))
	defer srv.Close()
	m := Message{Kind: KindHeld, Ticket: "DEPLOY-7", App: "web", Environment: "prod", FromVersion: "1.0", ToVersion: "1.1",
		FinishURL: "https://dm/approvals/F", RollbackURL: "https://dm/approvals/R"}
	if err := New().Send(context.Background(), Channels{SlackURL: srv.URL}, m); err != nil {
		t.Fatal(err)
	}
	v := <-got
	text, _ := v["text"].(string)
	for _, want := range []string{"DEPLOY-7", "1.0 -> 1.1", "Finish upgrade: https://dm/approvals/F", "Roll back: https://dm/approvals/R"} {
		if !strings.Contains(text, want) {
			t.Errorf("text %q lacks %q", text, want)
		}
	}
	raw, _ := json.Marshal(v["blocks"])
	if !strings.Contains(string(raw), `"url":"https://dm/approvals/F"`) || !strings.Contains(string(raw), `"url":"https://dm/approvals/R"`) {
		t.Errorf("blocks lack the link buttons: %s", raw)
	}
}

func TestWebhookErrorNamesChannelAndOthersStillSent(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusBadGateway)
	}))
	defer bad.Close()
	var mailed []byte
	n := New()
	n.SendMail = func(addr string, a smtp.Auth, from string, to []string, msg []byte) error {
		mailed = msg
		return nil
	}
	err := n.Send(context.Background(), Channels{WebhookURL: bad.URL, Email: &Email{Addr: "mx:25", From: "dm@x", To: []string{"ops@x"}}},
		Message{Kind: KindReminder, Ticket: "DEPLOY-8", App: "a", Environment: "e", ToVersion: "2", FinishURL: "http://f"})
	if err == nil || !strings.Contains(err.Error(), "notify webhook: HTTP 502") {
		t.Fatalf("err = %v, want the webhook failure", err)
	}
	if !strings.Contains(string(mailed), "Subject: [dockmaster] DEPLOY-8") || !strings.Contains(string(mailed), "http://f") {
		t.Errorf("mail = %q", mailed)
	}
	mailErr := errors.New("smtp down")
	n.SendMail = func(string, smtp.Auth, string, []string, []byte) error { return mailErr }
	if err := n.Send(context.Background(), Channels{Email: &Email{Addr: "mx:25", To: []string{"x"}}}, Message{}); !errors.Is(err, mailErr) {
		t.Errorf("err = %v, want wrapping the smtp error", err)
	}
}

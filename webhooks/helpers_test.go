package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

func hmacHex(secret string, msg []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(msg)
	return hex.EncodeToString(m.Sum(nil))
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// resign returns a well-formed signature of req made with secret, for the
// providers that sign; ok=false for token providers.
func resign(provider string, req Request, secret string) (string, bool) {
	switch provider {
	case "github":
		return "sha256=" + hmacHex(secret, req.Body), true
	case "gitea", "gogs", "forgejo":
		payload, err := formPayload(provider, req)
		if err != nil {
			panic(err)
		}
		return hmacHex(secret, payload), true
	}
	return "", false
}
